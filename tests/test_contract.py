"""The published contract: the OpenAPI document matches the app, and schemathesis
fuzzes every operation against the real service (gunicorn, InfluxDB, Redis)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import falcon.inspect
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis import checks as sc

from screenaware.app import create_app
from screenaware.config import Config
from screenaware.web.openapi import build_spec
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, SECRET_KEY
from tests.service import Service, run_service


def app_routes(config: Config) -> set[tuple[str, str]]:
    info = falcon.inspect.inspect_app(create_app(config))
    routes = set()
    for route in info.routes:
        path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", route.path)
        for method in route.methods:
            if not method.internal:
                verb = "get" if method.method == "WEBSOCKET" else method.method.lower()
                routes.add((path, verb))
    return routes


def test_every_route_is_documented_and_nothing_else(config: Config) -> None:
    spec = build_spec()
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    actual = app_routes(config)
    assert actual - documented == set(), "routes missing from the document"
    assert documented - actual == set(), "documented routes the app does not have"


def test_the_document_is_openapi_3_1_with_errors_and_security(config: Config) -> None:
    spec = build_spec()
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


async def test_served_document_and_reference_page(client: Any) -> None:
    served = await client.simulate_get("/api/openapi.json")
    assert served.json == build_spec()
    page = await client.simulate_get("/api/docs")
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "<script" not in page.text
    for path in build_spec()["paths"]:
        assert f"<code>{path}</code>" in page.text
    assert "id='schema-Snapshot'" in page.text


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
        login_max_failures_per_address=1_000_000,
    )
    with run_service(config, base, workers=1) as svc:
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


# Operations are known without a server: the document is built in-process.
SCHEMA = schemathesis.openapi.from_dict(build_spec())
OPERATIONS = {
    result.ok().label: result.ok()  # type: ignore[union-attr]  # an Err fails at import
    for result in SCHEMA.get_all_operations()
}
CHECKS = [
    sc.not_a_server_error,
    sc.status_code_conformance,
    sc.content_type_conformance,
    sc.response_schema_conformance,
]


def json_error_body(response: Any) -> None:
    """Every 4xx/5xx answer carries ``{"message": ...}``."""
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body.get("message"), str) and body["message"], body


def _has_input(label: str) -> bool:
    raw = OPERATIONS[label].definition.raw
    binary = "multipart/form-data" in raw.get("requestBody", {}).get("content", {})
    has_body = "requestBody" in raw and not binary  # any bytes are a valid dump
    return has_body or any(p["in"] == "query" for p in raw.get("parameters", []))


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
    """Valid input (positive) and invalid input (negative): never a 5xx, always
    a documented answer, every error with its JSON message."""
    svc, credentials = fuzz_service
    operation = OPERATIONS[label]
    security = operation.definition.raw.get("security") or []
    names = [name for requirement in security for name in requirement]
    headers = {"Authorization": credentials[names[0]]} if names else {}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=12,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        response = case.call_and_validate(base_url=svc.url, headers=headers, checks=CHECKS)
        json_error_body(response)

    run()
