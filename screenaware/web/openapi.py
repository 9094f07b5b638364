"""The published contract: an OpenAPI 3.1 document built from the marshmallow schemas.

Every route of both APIs is listed in :data:`OPERATIONS`; a test compares it with
the routes the app really has, in both directions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema

from schemas import activity as act
from schemas import heartbeat as hb
from schemas import identity as idn
from schemas import logs as lg
from schemas import portability as pt
from screenaware import __version__

# Operations a user's token is not enough for.
ADMIN_ONLY = {
    ("/api/users", "get"),
    ("/api/users", "post"),
    ("/api/users", "put"),
    ("/api/users/{user_id}", "get"),
    ("/api/users/{user_id}", "delete"),
    ("/api/users/{user_id}/password", "put"),
    ("/api/logs", "get"),
    ("/api/logs/{log_type}", "get"),
    ("/api/logs/point/{point_uuid}", "get"),
    ("/api/logs/crash/{point_uuid}", "get"),
}

Security = list[dict[str, list[str]]]
BEARER: Security = [{"bearerAuth": []}]
SECRET: Security = [{"secretKey": []}]
DEVICE: Security = [{"deviceToken": []}]
OPTIONAL_BEARER: Security = [{}, {"bearerAuth": []}]
METRICS: Security = [{}, {"metricsToken": []}]


@dataclass
class Operation:
    """One method of one route."""

    path: str
    method: str
    summary: str
    tag: str
    security: list[dict[str, list[str]]] = field(default_factory=list)
    body: Any = None
    body_types: tuple[str, ...] = ("application/json",)
    query: Any = None
    path_params: dict[str, str] = field(default_factory=dict)
    status: int = 200
    response: Any = None
    response_type: str = "application/json"
    description: str = ""

    @property
    def required_role(self) -> str:
        """What the caller must be: all, user, admin, secret-key or device-token."""
        names = {name for requirement in self.security for name in requirement}
        if {} in self.security or not names:
            return "all"
        if "secretKey" in names:
            return "secret-key"
        if "deviceToken" in names:
            return "device-token"
        return "admin" if (self.path, self.method) in ADMIN_ONLY else "user"


def _one_or_many(schema: type[Schema]) -> dict[str, Any]:
    return {"oneOf": [schema, {"type": "array", "items": schema}]}


def act_ref(name: str) -> dict[str, str]:
    """A reference to a component schema by its class name."""
    return {"$ref": f"#/components/schemas/{_component(name)}"}


def _component(name: str) -> str:
    return name.removesuffix("Schema")


UUID = "string"
OPERATIONS = [
    # --- Heartbeat ----------------------------------------------------------
    Operation(
        "/api/devices",
        "post",
        "Register a device",
        "heartbeat",
        SECRET,
        body=hb.DeviceCreateSchema,
        response=hb.DeviceSchema,
        description="Exists only when a secret key is configured.",
    ),
    Operation(
        "/api/devices/{device_id}/token/generate",
        "post",
        "Generate a new token for a device (the old one stops working)",
        "heartbeat",
        SECRET,
        path_params={"device_id": "integer"},
        response=hb.DeviceSchema,
    ),
    Operation(
        "/api/beat",
        "post",
        "Send a beat",
        "heartbeat",
        DEVICE,
        response={"type": "string", "description": "Unix seconds of the acknowledgement"},
        response_type="text/plain",
    ),
    Operation("/api/stats", "get", "Presence statistics", "heartbeat", response=hb.StatsSchema),
    Operation(
        "/api/stats/ws",
        "get",
        "Statistics over a WebSocket, once a second",
        "heartbeat",
        status=101,
        response=None,
        description="Upgrade to a WebSocket; every message is the stats object.",
    ),
    Operation(
        "/", "get", "Presence page", "pages", response_type="text/html", response={"type": "string"}
    ),
    Operation(
        "/stats",
        "get",
        "Statistics page",
        "pages",
        response_type="text/html",
        response={"type": "string"},
    ),
    Operation(
        "/privacy",
        "get",
        "Privacy page",
        "pages",
        response_type="text/html",
        response={"type": "string"},
    ),
    Operation(
        "/badge/{name}",
        "get",
        "SVG badge: last-seen or total-beats",
        "pages",
        path_params={"name": "string"},
        response_type="image/svg+xml",
        response={"type": "string"},
    ),
    Operation(
        "/.well-known/health",
        "get",
        "Are InfluxDB and Redis answering?",
        "pages",
        response=hb.HealthSchema,
    ),
    Operation("/api/openapi.json", "get", "This document", "pages", response={"type": "object"}),
    Operation(
        "/api/docs",
        "get",
        "This document as a page",
        "pages",
        response_type="text/html",
        response={"type": "string"},
    ),
    Operation(
        "/metrics",
        "get",
        "Prometheus metrics of every worker",
        "pages",
        METRICS,
        response={"type": "string"},
        response_type="text/plain",
        description="Needs the metrics token as a bearer token when one is configured.",
    ),
    # --- Identity -----------------------------------------------------------
    Operation(
        "/api/auth/local",
        "post",
        "Log in: a bearer token",
        "auth",
        body=idn.LoginSchema,
        body_types=("application/json", "application/x-www-form-urlencoded"),
        response=idn.TokenSchema,
    ),
    Operation(
        "/api/users", "get", "All users", "users", BEARER, response=idn.UserSchema(many=True)
    ),
    Operation(
        "/api/users",
        "post",
        "Create a user",
        "users",
        BEARER,
        body=idn.UserCreateSchema,
        status=201,
        response=idn.TokenSchema,
    ),
    Operation(
        "/api/users",
        "put",
        "Update a user found by email",
        "users",
        BEARER,
        body=idn.UserUpdateSchema,
        response=idn.PasswordSetSchema,
        description=(
            "A password change voids every token of that user; admins changing their own "
            "must send `currentPassword` (401 if wrong) and get a fresh token."
        ),
    ),
    Operation("/api/users/me", "get", "Your user", "users", BEARER, response=idn.UserSchema),
    Operation(
        "/api/users/me",
        "put",
        "Update your names and time zone",
        "users",
        BEARER,
        body=idn.OwnProfileSchema,
        response=idn.UserSchema,
    ),
    Operation(
        "/api/users/me/password",
        "put",
        "Change your password",
        "users",
        BEARER,
        body=idn.OwnPasswordSchema,
        response=idn.TokenOkSchema,
        description=(
            "Needs the current password (401 if wrong); voids every earlier token, the one "
            "used included, and answers a fresh one."
        ),
    ),
    Operation(
        "/api/users/{user_id}",
        "get",
        "A user",
        "users",
        BEARER,
        path_params={"user_id": UUID},
        response=idn.UserSchema,
    ),
    Operation(
        "/api/users/{user_id}",
        "delete",
        "Delete a user",
        "users",
        BEARER,
        path_params={"user_id": UUID},
        response=idn.UserSchema,
    ),
    Operation(
        "/api/users/{user_id}/password",
        "put",
        "Set a user's password",
        "users",
        BEARER,
        path_params={"user_id": UUID},
        body=idn.PasswordSchema,
        response=idn.PasswordSetSchema,
        description=(
            "Voids every token of that user; admins setting their own password must send "
            "`currentPassword` (401 if wrong) and get a fresh token."
        ),
    ),
    Operation(
        "/api/projects",
        "get",
        "Your projects",
        "projects",
        BEARER,
        response=idn.ProjectSchema(many=True),
    ),
    Operation(
        "/api/projects",
        "post",
        "Create a project",
        "projects",
        BEARER,
        body=idn.ProjectInSchema,
        status=201,
        response=idn.OkSchema,
    ),
    Operation(
        "/api/projects/{project_id}",
        "get",
        "A project",
        "projects",
        BEARER,
        path_params={"project_id": UUID},
        response=idn.ProjectSchema,
    ),
    Operation(
        "/api/projects/{project_id}",
        "put",
        "Change a project",
        "projects",
        BEARER,
        path_params={"project_id": UUID},
        body=idn.ProjectInSchema(partial=True),
        response=idn.OkSchema,
    ),
    Operation(
        "/api/projects/{project_id}",
        "delete",
        "Delete a project",
        "projects",
        BEARER,
        path_params={"project_id": UUID},
        response=idn.ProjectSchema,
    ),
    Operation(
        "/api/projects/{project_id}/associations",
        "get",
        "What corrections taught about a project",
        "projects",
        BEARER,
        path_params={"project_id": UUID},
        response=act.AssociationSchema(many=True),
    ),
    Operation(
        "/api/projects/{project_id}/associations",
        "delete",
        "Forget what corrections taught about a project",
        "projects",
        BEARER,
        path_params={"project_id": UUID},
        response=act.ForgetSchema,
    ),
    Operation(
        "/api/tasks", "get", "Your tasks", "tasks", BEARER, response=idn.TaskSchema(many=True)
    ),
    Operation(
        "/api/tasks",
        "post",
        "Create a task",
        "tasks",
        BEARER,
        body=idn.TaskInSchema,
        status=201,
        response=idn.TaskSchema,
    ),
    Operation(
        "/api/tasks/{task_id}",
        "get",
        "A task",
        "tasks",
        BEARER,
        path_params={"task_id": UUID},
        response=idn.TaskSchema,
    ),
    Operation(
        "/api/tasks/{task_id}",
        "put",
        "Change a task",
        "tasks",
        BEARER,
        path_params={"task_id": UUID},
        body=idn.TaskInSchema(partial=True),
        response=idn.TaskSchema,
    ),
    Operation(
        "/api/tasks/{task_id}",
        "delete",
        "Delete a task",
        "tasks",
        BEARER,
        path_params={"task_id": UUID},
        response=idn.TaskSchema,
    ),
    Operation(
        "/api/integrations",
        "get",
        "Third-party integrations",
        "users",
        BEARER,
        response={"type": "object", "additionalProperties": act_ref("IntegrationSchema")},
    ),
    # --- Portability --------------------------------------------------------
    Operation(
        "/api/export",
        "get",
        "Everything of yours as JSON Lines (an admin: of ?user=<uuid>)",
        "portability",
        BEARER,
        query=pt.ExportQuerySchema,
        response={"type": "string", "description": "JSON Lines: a header, then one item a line"},
        response_type="application/x-ndjson",
    ),
    Operation(
        "/api/import/screenaware",
        "post",
        "Restore a ScreenAware export into your account",
        "portability",
        BEARER,
        body={"type": "string", "format": "binary"},
        body_types=("application/x-ndjson", "multipart/form-data"),
        response=pt.ImportSummarySchema,
    ),
    Operation(
        "/api/import/activitywatch",
        "post",
        "Import an aw-server export file (GET /api/0/export)",
        "portability",
        BEARER,
        body={"type": "string", "format": "binary"},
        body_types=("application/json", "multipart/form-data"),
        response=pt.ImportSummarySchema,
    ),
    Operation(
        "/api/import/wakatime",
        "post",
        "Import a WakaTime heartbeats data dump",
        "portability",
        BEARER,
        body={"type": "string", "format": "binary"},
        body_types=("application/json", "multipart/form-data"),
        response=pt.ImportSummarySchema,
    ),
    # --- Activity -----------------------------------------------------------
    Operation(
        "/api/snapshots",
        "post",
        "Send one snapshot or an array",
        "activity",
        BEARER,
        body=_one_or_many(act.SnapshotSchema),
        response=idn.OkSchema,
    ),
    Operation(
        "/api/times",
        "get",
        "Time by group and bucket",
        "activity",
        BEARER,
        query=act.TimesQuerySchema,
        response=act.TimeBucketSchema,
    ),
    Operation(
        "/api/applications",
        "get",
        "Your applications",
        "activity",
        BEARER,
        response=act.ApplicationSchema(many=True),
    ),
    Operation(
        "/api/categories",
        "get",
        "Your categories, then the built-in ones",
        "activity",
        BEARER,
        response=act.CategorySchema(many=True),
    ),
    Operation(
        "/api/categories",
        "post",
        "Create a category",
        "activity",
        BEARER,
        body=act.CategoryInSchema,
        status=201,
        response=act.CategorySchema,
    ),
    Operation(
        "/api/categories/{category_id}",
        "put",
        "Change one of your categories",
        "activity",
        BEARER,
        path_params={"category_id": UUID},
        body=act.CategoryInSchema(partial=True),
        response=act.CategorySchema,
    ),
    Operation(
        "/api/categories/{category_id}",
        "delete",
        "Delete one of your categories",
        "activity",
        BEARER,
        path_params={"category_id": UUID},
        response=act.CategorySchema,
    ),
    Operation(
        "/api/streams",
        "get",
        "Streams (and gap streams)",
        "streams",
        BEARER,
        query=act.StreamsQuerySchema,
        response={
            "oneOf": [
                {"type": "array", "items": act_ref("StreamSchema")},
                {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": act_ref("StreamSchema")},
                },
            ]
        },
    ),
    Operation(
        "/api/substreams",
        "get",
        "Substreams",
        "streams",
        BEARER,
        query=act.SubstreamsQuerySchema,
        response=act.SubstreamSchema(many=True),
    ),
    Operation(
        "/api/stream/{stream_uuid}/project",
        "put",
        "Correct the project of a stream (teaches the attribution)",
        "streams",
        BEARER,
        path_params={"stream_uuid": UUID},
        body=act.StreamProjectSchema,
        response=idn.OkSchema,
    ),
    Operation(
        "/api/streams/{stream_uuid}/project",
        "put",
        "Correct the project of a stream (same as /api/stream/…)",
        "streams",
        BEARER,
        path_params={"stream_uuid": UUID},
        body=act.StreamProjectSchema,
        response=idn.OkSchema,
    ),
    # --- Logs ---------------------------------------------------------------
    Operation(
        "/api/logs",
        "post",
        "Send one log point or an array",
        "logs",
        OPTIONAL_BEARER,
        body=_one_or_many(lg.LogPointInSchema),
        response=idn.OkSchema,
    ),
    Operation(
        "/api/logs",
        "get",
        "Log series with their counts",
        "logs",
        BEARER,
        query=lg.LogRangeSchema,
        response=lg.LogSeriesSchema(many=True),
    ),
    Operation(
        "/api/logs/{log_type}",
        "get",
        "Points of a series, counts, or 5-minute counts",
        "logs",
        BEARER,
        path_params={"log_type": "string"},
        query=lg.LogQuerySchema,
        response={
            "anyOf": [
                {"type": "array", "items": act_ref("LogPointSchema")},
                {"type": "array", "items": act_ref("LogBucketSchema")},
                act_ref("CountSchema"),
            ]
        },
    ),
    Operation(
        "/api/logs/point/{point_uuid}",
        "get",
        "One log point",
        "logs",
        BEARER,
        path_params={"point_uuid": UUID},
        response=lg.LogPointSchema,
    ),
    Operation(
        "/api/logs/crash/sensor",
        "post",
        "Upload a Breakpad crash dump",
        "logs",
        OPTIONAL_BEARER,
        body={"type": "string", "format": "binary"},
        body_types=("multipart/form-data", "application/octet-stream"),
        response={"type": "string", "description": "the crash point's uuid"},
        response_type="text/plain",
    ),
    Operation(
        "/api/logs/crash/{point_uuid}",
        "get",
        "Download a crash dump",
        "logs",
        BEARER,
        path_params={"point_uuid": UUID},
        response={"type": "string", "format": "binary"},
        response_type="application/octet-stream",
    ),
]


def _content(schema: Any, media_types: tuple[str, ...]) -> dict[str, Any]:
    return {media: {"schema": schema} for media in media_types}


def build_spec() -> dict[str, Any]:
    """The OpenAPI document as a dict."""
    spec = APISpec(
        title="ScreenAware",
        version=__version__,
        openapi_version="3.1.0",
        plugins=[MarshmallowPlugin(schema_name_resolver=_resolver)],
        info={"description": "Heartbeat API and ScreenAware API of one self-hosted service."},
    )
    spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    spec.components.security_scheme(
        "metricsToken",
        {"type": "http", "scheme": "bearer", "description": "SCREENAWARE_METRICS_TOKEN"},
    )
    spec.components.security_scheme(
        "secretKey",
        {"type": "apiKey", "in": "header", "name": "Authorization",
         "description": "The server's secret key, raw (no scheme)."},
    )  # fmt: skip
    spec.components.security_scheme(
        "deviceToken",
        {"type": "apiKey", "in": "header", "name": "Authorization",
         "description": "A device token, raw (no scheme)."},
    )  # fmt: skip
    for schema in (idn.ErrorSchema, idn.IntegrationSchema, act.StreamSchema, lg.LogPointSchema,
                   lg.LogBucketSchema, lg.CountSchema):  # fmt: skip
        spec.components.schema(_component(schema.__name__), schema=schema)
    error = {"application/json": {"schema": idn.ErrorSchema}}
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        operation: dict[str, Any] = {
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": f"{op.method}_{re.sub(r'[^a-zA-Z0-9]+', '_', op.path).strip('_')}",
            "responses": {
                str(op.status): {"description": "Success"},
                "default": {"description": "Error (4xx, 503)", "content": error},
            },
        }
        if op.description:
            operation["description"] = op.description
        if op.response is not None:
            operation["responses"][str(op.status)]["content"] = _content(
                op.response, (op.response_type,)
            )
        operation["security"] = op.security
        operation["x-required-role"] = op.required_role
        parameters: list[dict[str, Any]] = [
            {"in": "path", "name": name, "required": True, "schema": {"type": kind}}
            for name, kind in op.path_params.items()
        ]
        if op.query is not None:
            parameters.append({"in": "query", "schema": op.query})
        if parameters:
            operation["parameters"] = parameters
        if op.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": _content(op.body, op.body_types),
            }
        paths.setdefault(op.path, {})[op.method] = operation
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def _resolver(schema: Any) -> str:
    cls = schema if isinstance(schema, type) else type(schema)
    name = _component(cls.__name__)
    partial = not isinstance(schema, type) and getattr(schema, "partial", False)
    return f"{name}Partial" if partial else name
