"""The published contract: an OpenAPI 3.1 document built from the app's own routes.

Nothing here lists the operations. :func:`build_spec` walks the app's router; for
each responder it reads what :func:`~screenaware.web.validation.load_body` and
:func:`~screenaware.web.validation.load_query` recorded (the very schemas that
validate the request) and what :func:`operation` adds beside it (summary, tag,
answers); the roles come from the resource's ``auth_roles``, the table
:class:`~screenaware.web.auth.AuthMiddleware` enforces. A route, its validator and
its documentation therefore cannot disagree, and a responder without
:func:`operation` stops the app from being built.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import falcon
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, fields

from schemas.common import Moment, TimeZone
from schemas.identity import ErrorSchema
from screenaware import __version__
from screenaware.timeutil import zone_names
from screenaware.web.validation import DOC_ATTRIBUTE, record

F = TypeVar("F", bound=Callable[..., Any])

# What a responder answers: a schema (JSON), or (media type, schema) for anything else.
Answer = Any

# Credentials other than a bearer token, for resources that check their own
# (the Heartbeat API's raw keys, the metrics token): name -> security requirement.
SECURITY: dict[str, tuple[list[dict[str, list[str]]], str]] = {
    "secretKey": ([{"secretKey": []}], "secret-key"),
    "deviceToken": ([{"deviceToken": []}], "device-token"),
    "metricsToken": ([{}, {"metricsToken": []}], "all"),
}

SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "A login token (a JWT from /api/auth/local) or an API key (a UUID v4 string "
            "from POST /api/keys). A browser may send the sa_session cookie of "
            "POST /api/auth/session instead, with the sa_csrf cookie's value in "
            "X-CSRF-Token on every request other than GET, HEAD and OPTIONS (else 403)."
        ),
    },
    "metricsToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "SCREENAWARE_METRICS_TOKEN",
    },
    "secretKey": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "The server's secret key, raw (no scheme).",
    },
    "deviceToken": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "A device token, raw (no scheme).",
    },
}


def operation(
    summary: str,
    tag: str,
    *,
    responses: Mapping[int, Answer] | None = None,
    description: str = "",
    security: str | None = None,
    body_types: tuple[str, ...] = ("application/json",),
    request_body: Mapping[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
) -> Callable[[F], F]:
    """Decorate a responder with what its documentation needs besides its schemas.

    Args:
        summary: one line.
        tag: the group in the reference.
        responses: status -> answer: a marshmallow schema (class or instance, JSON),
            ``(media type or types, schema)`` for anything else (a schema may be an OpenAPI
            dict holding marshmallow schemas), or None for no body. Default: 200
            with no body described.
        description: more text.
        security: for a resource without ``auth_roles``, the credential it checks
            itself: ``secretKey``, ``deviceToken`` or ``metricsToken``.
        body_types: the media types the body schema of ``load_body`` accepts.
        request_body: the ``content`` of a body not loaded by ``load_body``
            (media type -> OpenAPI media type object).
        parameters: OpenAPI parameters the responder reads without ``load_query``.
    """
    if security is not None and security not in SECURITY:
        raise ValueError(f"unknown security {security!r}")

    def decorator(responder: F) -> F:
        record(
            responder,
            summary=summary,
            tag=tag,
            responses=dict(responses or {200: None}),
            description=description,
            security=security,
            body_types=body_types,
            request_body=request_body,
            parameters=list(parameters or []),
        )
        return responder

    return decorator


def one_or_many(schema: Any, max_items: int) -> dict[str, Any]:
    """A body of one object or an array of them (``load_body(..., batch=...)``)."""
    return {"oneOf": [schema, {"type": "array", "items": schema, "maxItems": max_items}]}


# --- walking the app ----------------------------------------------------------

_PARAM = re.compile(r"\{(\w+)(?::(\w+)(?:\(([^)]*)\))?)?\}")


def _routes(app: falcon.App[Any, Any]) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """(URI template, resource, method map) of every route, in the order added."""
    router: Any = app._router
    stack = list(reversed(router._roots))
    while stack:
        node = stack.pop()
        if node.resource is not None:
            yield node.uri_template, node.resource, dict(node.method_map)
        stack.extend(reversed(node.children or []))


def _is_internal(responder: Any) -> bool:
    """Falcon's own default responders (405, OPTIONS)."""
    return bool(getattr(responder, "__module__", "").startswith("falcon"))


def _path(template: str) -> tuple[str, list[dict[str, Any]]]:
    """``/a/{id:int(min=0)}`` -> ``/a/{id}`` and its path parameters."""
    parameters = []
    for name, converter, args in _PARAM.findall(template):
        schema: dict[str, Any] = {"type": "string"}
        if converter == "int":
            schema = {"type": "integer"}
            for arg in filter(None, (a.strip() for a in args.split(","))):
                key, _, value = arg.partition("=")
                if key in ("min", "max"):
                    schema["minimum" if key == "min" else "maximum"] = int(value)
        elif converter == "uuid":
            schema = {"type": "string", "format": "uuid"}
        elif converter:
            raise ValueError(f"{template}: document the {converter!r} converter")
        parameters.append({"in": "path", "name": name, "required": True, "schema": schema})
    return _PARAM.sub(lambda m: "{" + m.group(1) + "}", template), parameters


def _security(resource: Any, method: str, doc: Mapping[str, Any]) -> tuple[Any, str]:
    """The security requirement and the role (``x-required-role``) of an operation."""
    role = getattr(resource, "auth_roles", {}).get(method)
    if role is not None:
        if doc["security"] is not None:
            raise ValueError(f"{type(resource).__name__}.{method}: auth_roles and security")
        if role == "all":
            return [{}, {"bearerAuth": []}], "all"
        return [{"bearerAuth": []}], role
    if doc["security"] is not None:
        return SECURITY[doc["security"]]
    return [], "all"


class _Resolver:
    """Replaces marshmallow schemas inside OpenAPI dicts by component references."""

    def __init__(self, plugin: MarshmallowPlugin) -> None:
        self._plugin = plugin

    def __call__(self, value: Any) -> Any:
        if isinstance(value, Schema) or (isinstance(value, type) and issubclass(value, Schema)):
            return self._plugin.converter.resolve_nested_schema(value)  # type: ignore[union-attr]
        if isinstance(value, dict):
            return {key: self(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self(item) for item in value]
        return value


def _operation(
    path: str,
    method: str,
    resource: Any,
    responder: Any,
    path_params: list[dict[str, Any]],
    resolve: _Resolver,
) -> dict[str, Any]:
    doc = getattr(responder, DOC_ATTRIBUTE, {})
    name = f"{type(resource).__name__}.{responder.__name__}"
    if "summary" not in doc:
        raise ValueError(f"{name} ({method} {path}) has no @operation")
    verb = "get" if method == "WEBSOCKET" else method.lower()
    security, role = _security(resource, method, doc)
    responses: dict[str, Any] = {}
    for status, answer in doc["responses"].items():
        response: dict[str, Any] = {"description": "Success"}
        if answer is not None:
            media, schema = answer if isinstance(answer, tuple) else ("application/json", answer)
            types = (media,) if isinstance(media, str) else media
            response["content"] = {kind: {"schema": resolve(schema)} for kind in types}
        responses[str(status)] = response
    responses["default"] = {
        "description": "Error (4xx, 503)",
        "content": {"application/json": {"schema": resolve(ErrorSchema)}},
    }
    op: dict[str, Any] = {
        "summary": doc["summary"],
        "tags": [doc["tag"]],
        "operationId": f"{verb}_{re.sub(r'[^a-zA-Z0-9]+', '_', path).strip('_')}",
        "responses": responses,
        "security": security,
        "x-required-role": role,
    }
    if doc["description"]:
        op["description"] = doc["description"]
    parameters = list(path_params) + doc["parameters"]
    if doc.get("query") is not None:
        parameters.append({"in": "query", "schema": doc["query"]})
    if parameters:
        op["parameters"] = parameters
    if doc.get("body") is not None:
        batch = doc["batch"]
        if isinstance(batch, str):
            batch = getattr(resource, batch)  # a configured limit, as load_body reads it
        body = doc["body"] if batch is None else one_or_many(doc["body"], batch)
        content = {media: {"schema": resolve(body)} for media in doc["body_types"]}
        op["requestBody"] = {"required": True, "content": content}
    elif doc["request_body"] is not None:
        op["requestBody"] = {"required": True, "content": resolve(doc["request_body"])}
    return {verb: op}


def _time_zone(
    converter: Any, field: fields.Field[Any], ret: dict[str, Any], **kwargs: Any
) -> dict[str, Any]:
    """Attribute function: a :class:`TimeZone` field refers to the list of zone names."""
    if not isinstance(field, TimeZone):
        return {}
    # The reference replaces the plain (maybe nullable) string the converter gave.
    for key in ("type", "anyOf"):
        ret.pop(key, None)
    ref = {"$ref": "#/components/schemas/TimeZone"}
    return {"anyOf": [ref, {"type": "null"}]} if field.allow_none else ref


def _dict_keys(
    converter: Any, field: fields.Field[Any], ret: dict[str, Any], **kwargs: Any
) -> dict[str, Any]:
    """Attribute function: a Dict's key rule as ``propertyNames``, its size in properties.

    (apispec writes a Length validator as ``maxLength``, which no object has.)
    """
    if not isinstance(field, fields.Dict):
        return {}
    found: dict[str, Any] = {}
    for length, properties in (("minLength", "minProperties"), ("maxLength", "maxProperties")):
        if length in ret:
            found[properties] = ret.pop(length)
    if field.key_field is not None:
        names = converter.field2property(field.key_field)
        names.pop("type", None)
        if names:
            found["propertyNames"] = names
    return found


def build_spec(app: falcon.App[Any, Any]) -> dict[str, Any]:
    """The OpenAPI document of every route of ``app``, as a dict.

    Raises:
        ValueError: a responder is not documented, or a route uses a path
            converter this function cannot describe.
    """
    plugin = MarshmallowPlugin(schema_name_resolver=_schema_name)
    spec = APISpec(
        title="ScreenAware",
        version=__version__,
        openapi_version="3.1.0",
        plugins=[plugin],
        info={"description": "Heartbeat API and ScreenAware API of one self-hosted service."},
    )
    # Moment's pattern is its whole rule (it takes no offset as UTC, which the
    # date-time format would not allow).
    plugin.map_to_openapi_type(Moment, "string", None)  # type: ignore[no-untyped-call]
    plugin.converter.add_attribute_function(_time_zone)  # type: ignore[union-attr]
    plugin.converter.add_attribute_function(_dict_keys)  # type: ignore[union-attr]
    for name, scheme in SECURITY_SCHEMES.items():
        spec.components.security_scheme(name, scheme)
    spec.components.schema(
        "TimeZone",
        {
            "type": "string",
            "enum": sorted(zone_names()),
            "description": "An IANA time zone name.",
        },
    )
    resolve = _Resolver(plugin)
    paths: dict[str, dict[str, Any]] = {}
    for template, resource, method_map in _routes(app):
        path, path_params = _path(template)
        for method, responder in method_map.items():
            if _is_internal(responder):
                continue
            operation_ = _operation(path, method, resource, responder, path_params, resolve)
            paths.setdefault(path, {}).update(operation_)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def _schema_name(schema: Any) -> str:
    cls = schema if isinstance(schema, type) else type(schema)
    name = cls.__name__.removesuffix("Schema")
    partial = not isinstance(schema, type) and getattr(schema, "partial", False)
    return f"{name}Partial" if partial else name
