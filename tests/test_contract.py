"""The published contract: the OpenAPI document is generated from the app's routes,
the reference page serves it from the service, and schemathesis fuzzes every
operation against the real service (gunicorn, InfluxDB, Redis) with all its checks."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import falcon.inspect
import httpx
import marshmallow
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.config._checks import (
    POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES,
    PositiveDataAcceptanceConfig,
)

from schemas.common import MOMENT_PATTERN, Moment
from screenaware.app import create_app
from screenaware.config import Config
from screenaware.timeutil import zone_names
from screenaware.web import openapi
from screenaware.web.openapi import build_spec
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, SECRET_KEY
from tests.service import Service, run_service


def app_routes(app: Any) -> set[tuple[str, str]]:
    info = falcon.inspect.inspect_app(app)
    routes = set()
    for route in info.routes:
        path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", route.path)
        for method in route.methods:
            if not method.internal:
                verb = "get" if method.method == "WEBSOCKET" else method.method.lower()
                routes.add((path, verb))
    return routes


def test_every_route_is_documented_and_nothing_else(config: Config) -> None:
    app = create_app(config)
    spec = build_spec(app)
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    actual = app_routes(app)
    assert actual - documented == set(), "routes missing from the document"
    assert documented - actual == set(), "documented routes the app does not have"


def test_a_route_without_documentation_stops_the_build(config: Config) -> None:
    class Undocumented:
        async def on_get(self, req: Any, resp: Any) -> None:
            resp.media = {}

    app = create_app(config)
    app.add_route("/api/undocumented", Undocumented())
    with pytest.raises(ValueError, match=r"Undocumented\.on_get .*has no @operation"):
        build_spec(app)


def test_the_document_holds_the_validators_schemas(config: Config) -> None:
    """What load_body/load_query validate is what the document says, by construction."""
    spec = build_spec(create_app(config))
    assert spec["openapi"] == "3.1.0"
    assert set(spec["components"]["securitySchemes"]) == {
        "bearerAuth",
        "secretKey",
        "deviceToken",
        "metricsToken",
    }
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            error = op["responses"]["default"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Error"}, (path, method)
    times = spec["paths"]["/api/times"]["get"]
    assert {p["name"] for p in times["parameters"]} >= {"start", "end", "groupBy", "resolution"}
    snapshot = spec["components"]["schemas"]["Snapshot"]
    assert snapshot["properties"]["durationMs"]["maximum"] == 10000
    # A parameter read outside the JSON body is documented too (it was not: issue 11.2).
    correction = spec["paths"]["/api/stream/{stream_uuid}/project"]["put"]
    tz = {p["name"]: p for p in correction["parameters"]}["tz"]
    assert tz["in"] == "query" and tz["schema"] == {"$ref": "#/components/schemas/TimeZone"}
    assert set(spec["components"]["schemas"]["TimeZone"]["enum"]) == zone_names()
    assert "America" not in zone_names() and "UTC" in zone_names()
    crash = spec["paths"]["/api/logs/crash/sensor"]["post"]["requestBody"]["content"]
    assert crash["multipart/form-data"]["schema"]["required"] == ["upload_file_minidump"]


def test_roles_come_from_auth_roles(config: Config) -> None:
    """x-required-role is the resource's auth_roles entry: change one, the document follows."""
    app = create_app(config)
    found = app._router.find("/api/tasks")
    assert found is not None
    resource: Any = found[0]
    resource.auth_roles = {**resource.auth_roles, "GET": "admin"}
    assert build_spec(app)["paths"]["/api/tasks"]["get"]["x-required-role"] == "admin"
    assert build_spec(app)["paths"]["/api/tasks"]["post"]["x-required-role"] == "user"


def test_no_hand_kept_operation_table() -> None:
    assert not hasattr(openapi, "OPERATIONS") and not hasattr(openapi, "ADMIN_ONLY")


async def test_served_document(client: Any, config: Config) -> None:
    served = await client.simulate_get("/api/openapi.json")
    assert served.json == build_spec(create_app(config))


async def test_reference_page_is_swagger_ui_from_the_service(client: Any) -> None:
    """The page and everything it loads come from the service; it loads the document."""
    page = await client.simulate_get("/api/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "connect-src 'self';" in csp
    assert "unsafe" not in csp and "default-src 'none'" in csp
    assert not re.search(r"(https?:)?//", page.text), "an external URL in the page"
    # No inline script: every <script> has a src on the service.
    scripts = re.findall(r"<script([^>]*)>", page.text)
    assert scripts and all(re.search(r'src="/api/docs/[\w.-]+"', attrs) for attrs in scripts)
    assets = re.findall(r'(?:src|href)="(/api/docs/[\w.-]+)"', page.text)
    assert {
        "/api/docs/swagger-ui-bundle.js",
        "/api/docs/swagger-ui.css",
        "/api/docs/docs.js",
    } <= set(assets)
    types = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    for asset in assets:
        got = await client.simulate_get(asset)
        assert got.status_code == 200, asset
        assert got.headers["content-type"] == types[asset[asset.rindex(".") :]], asset
        assert len(got.content) > 0
    bundle = (await client.simulate_get("/api/docs/swagger-ui-bundle.js")).text
    assert "SwaggerUIBundle" in bundle
    init = (await client.simulate_get("/api/docs/docs.js")).text
    assert 'url: "/api/openapi.json"' in init and "validatorUrl: null" in init
    missing = await client.simulate_get("/api/docs/..%2Fopenapi.py")
    assert missing.status_code == 404
    assert (await client.simulate_get("/api/docs/index.html")).status_code == 404


@given(st.from_regex(MOMENT_PATTERN, fullmatch=True))
@settings(max_examples=300, deadline=None, database=None)
def test_every_moment_the_document_allows_is_taken(text: str) -> None:
    """The pattern is the whole rule: nothing it allows fails to parse."""
    moment = Moment().deserialize(text)
    assert 1969 <= moment.astimezone(dt.UTC).year <= 2200


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("2024-02-29T00:00:00Z", True),
        ("2000-02-29T12:00:00.123456789+05:30", True),
        ("2015-05-17T05:52:22.907", True),  # no offset: UTC
        ("1970-01-01T00:00:00Z", True),
        ("2199-12-31T23:59:59Z", True),
        ("2023-02-29T00:00:00Z", False),
        ("2100-02-29T00:00:00Z", False),
        ("2023-04-31T00:00:00Z", False),
        ("0199-01-01T00:00:00Z", False),
        ("1969-12-31T23:59:59Z", False),
        ("2200-01-01T00:00:00Z", False),
        ("2023-01-01T00:00:60Z", False),
        ("2023-01-01 00:00:00Z", False),
        ("2023-01-01T00:00:00Z\n", False),
        ("2023-01-01", False),
    ],
)
def test_moments_pattern_and_parser_agree(text: str, valid: bool) -> None:
    assert bool(re.fullmatch(MOMENT_PATTERN, text)) is valid
    if valid:
        Moment().deserialize(text)
    else:
        with pytest.raises(marshmallow.ValidationError):
            Moment().deserialize(text)


# --- fuzzing ----------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_service(
    servers: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Service, dict[str, str]]]:
    base = tmp_path_factory.mktemp("fuzz")
    config = Config.load(
        environ={},
        influx_url=servers.influx_url,
        influx_db="fuzz",
        redis_url=servers.redis_url.replace("/0", "/1"),
        secret_key=SECRET_KEY,
        admin_email=ADMIN_EMAIL,
        admin_password=ADMIN_PASSWORD,
        data_dir=str(base / "var"),
        log_rate_anonymous=1_000_000,
        log_rate_user=1_000_000,
        login_max_failures_per_address=1_000_000,
    )
    with run_service(config, base, workers=1) as svc:
        assert httpx.get(f"{svc.url}/api/openapi.json").json() == SPEC
        token = httpx.post(
            f"{svc.url}/api/auth/local", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        ).json()["token"]
        device = httpx.post(
            f"{svc.url}/api/devices", json={"name": "fuzz"}, headers={"Authorization": SECRET_KEY}
        ).json()["token"]
        headers = {
            "bearerAuth": f"Bearer {token}",
            "secretKey": SECRET_KEY,
            "deviceToken": device,
            "metricsToken": "Bearer not-configured",
        }
        yield svc, headers
    httpx.post(f"{servers.influx_url}/query", data={"q": 'DROP DATABASE "fuzz"'})


# Operations are known without a server: the document is built in-process, from
# an app configured like the fuzzed one (a secret key: the device routes exist).
SPEC = build_spec(create_app(Config.load(environ={}, secret_key=SECRET_KEY)))
SCHEMA = schemathesis.openapi.from_dict(SPEC)
# Credentials are the test's to send (below), not part of the generated input.
SCHEMA.config.generation.update(with_security_parameters=False)
# A 422 is the refusal of a request the document allows, for its content (a
# reference to an unknown project, start after end): JSON Schema cannot say it.
# Any 400 (what the schema does not allow) of valid input still fails the test.
SCHEMA.config.checks.positive_data_acceptance = PositiveDataAcceptanceConfig(
    expected_statuses=[*POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES, "422"]
)
OPERATIONS = {
    result.ok().label: result.ok()  # type: ignore[union-attr]  # an Err fails at import
    for result in SCHEMA.get_all_operations()
}


def json_error_body(ctx: Any, response: Any, case: Any) -> bool:
    """Every 4xx/5xx answer carries ``{"message": ...}``."""
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body.get("message"), str) and body["message"], body
    return True


def _has_input(label: str) -> bool:
    raw = OPERATIONS[label].definition.raw
    return "requestBody" in raw or any(p["in"] != "path" for p in raw.get("parameters", []))


# A WebSocket is not HTTP request/answer; everything else is fuzzed.
FUZZED = sorted(label for label in OPERATIONS if not label.endswith("/api/stats/ws"))
CASES = [(label, GenerationMode.POSITIVE) for label in FUZZED] + [
    # Only an operation with a body or query parameters has invalid input to send.
    (label, GenerationMode.NEGATIVE)
    for label in FUZZED
    if _has_input(label)
]


@pytest.mark.parametrize(("label", "mode"), CASES)
def test_fuzz_every_operation(
    label: str, mode: GenerationMode, fuzz_service: tuple[Service, dict[str, str]]
) -> None:
    """Schemathesis' default checks, i.e. all of them (no 5xx, documented status,
    content type, answer schema and headers; valid input accepted, invalid input
    refused; unsupported methods, missing credentials...), and every error with
    its JSON message."""
    svc, credentials = fuzz_service
    operation = OPERATIONS[label]
    security = operation.definition.raw.get("security") or []
    names = [name for requirement in security for name in requirement]
    headers = {"Authorization": credentials[names[0]]} if names else {}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=15,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(
            base_url=svc.url, headers=headers, additional_checks=[json_error_body], timeout=30
        )

    run()
