"""The InfluxDB connection as configured: HTTPS with a custom CA and a client certificate,
credentials in ``SCREENAWARE_INFLUX_URL``, and the cap on answer size, against the
real influxd (behind a local TLS proxy for HTTPS, with authentication on for the
credentials)."""

from __future__ import annotations

import datetime as dt
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from falcon import testing

from screenaware.app import create_app
from screenaware.config import Config, ConfigError
from screenaware.errors import InfluxAnswerTooLarge, StorageUnavailable
from screenaware.storage.influx import InfluxClient
from screenaware.storage.localservers import Server, free_port, start_influxd
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, SECRET_KEY, FakeClock, bearer
from tests.tls import Pki, make_pki, tls_proxy

PROBE = b"probe,k=v n=1i 1700000000000000000"
USER, PASSWORD = "admin", "p@ss:w/rd"  # characters a URL must percent-encode


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def influx_port(config: Config) -> int:
    return urllib.parse.urlsplit(config.influx_url).port or 8086


async def round_trip(config: Config) -> list[dict[str, Any]]:
    """Create the database, write a point and read it back through InfluxClient."""
    influx = InfluxClient(config)
    await influx.open()
    try:
        await influx.ensure_database()
        await influx.write_lines(PROBE)
        return [row for s in await influx.query('SELECT "n" FROM "probe"') for row in s.rows()]
    finally:
        await influx.close()


# --- HTTPS -------------------------------------------------------------------


@pytest.mark.parametrize("key_in_cert_file", [False, True])
async def test_https_with_a_custom_ca_and_a_client_certificate_reaches_influxd(
    config: Config, pki: Pki, key_in_cert_file: bool
) -> None:
    async with tls_proxy(pki, influx_port(config), require_client_cert=True) as proxy:
        tls = config.replace(
            influx_url=proxy.url,
            influx_ca_bundle=str(pki.ca),
            influx_client_cert=str(pki.client_combined if key_in_cert_file else pki.client_cert),
            influx_client_key="" if key_in_cert_file else str(pki.client_key),
        )
        assert await round_trip(tls) == [{"time": 1_700_000_000_000_000_000, "n": 1}]
    # Kept alive: one TLS connection carried all four requests, with our certificate.
    assert proxy.peers == ["screenaware-client"]


@pytest.mark.parametrize("trusted", ["system", "other"])
async def test_https_refuses_a_server_certificate_of_another_ca(
    config: Config, pki: Pki, trusted: str
) -> None:
    async with tls_proxy(pki, influx_port(config), require_client_cert=False) as proxy:
        tls = config.replace(
            influx_url=proxy.url, influx_ca_bundle=str(pki.other_ca) if trusted == "other" else ""
        )
        with pytest.raises(StorageUnavailable, match="SSLCertVerificationError"):
            await round_trip(tls)


async def test_a_server_asking_for_a_client_certificate_refuses_a_client_without(
    config: Config, pki: Pki
) -> None:
    async with tls_proxy(pki, influx_port(config), require_client_cert=True) as proxy:
        tls = config.replace(influx_url=proxy.url, influx_ca_bundle=str(pki.ca))
        with pytest.raises(StorageUnavailable):
            await round_trip(tls)
        assert proxy.peers == []  # no connection got through the handshake


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"URL": "http://127.0.0.1:8086", "CA_BUNDLE": "{ca}"}, "CA_BUNDLE: needs an https://"),
        ({"CA_BUNDLE": "{missing}"}, "CA_BUNDLE: no such file"),
        ({"CA_BUNDLE": "{text}"}, "CA_BUNDLE: no usable PEM"),
        ({"CLIENT_KEY": "{key}"}, "CLIENT_KEY: needs SCREENAWARE_INFLUX_CLIENT_CERT"),
        ({"CLIENT_CERT": "{cert}", "CLIENT_KEY": "{server_key}"}, "CLIENT_CERT: cannot load"),
        (
            {"CLIENT_CERT": "{cert}", "CLIENT_KEY": "{encrypted}"},
            "CLIENT_KEY: encrypted keys are not supported",
        ),
        ({"URL": "https://u:p@127.0.0.1", "USERNAME": "u"}, "URL: holds credentials"),
        ({"MAX_RESPONSE_BYTES": "10"}, "MAX_RESPONSE_BYTES: must be at least 1024"),
    ],
)
def test_unusable_tls_and_credential_settings_stop_the_start(
    pki: Pki, tmp_path: Path, env: dict[str, str], message: str
) -> None:
    (tmp_path / "text.pem").write_text("not a certificate\n")
    paths = {
        "ca": pki.ca,
        "missing": tmp_path / "missing.pem",
        "text": tmp_path / "text.pem",
        "key": pki.client_key,
        "cert": pki.client_cert,
        "server_key": pki.server_key,
        "encrypted": pki.client_key_encrypted,
    }
    environ = {"SCREENAWARE_INFLUX_URL": "https://127.0.0.1:8086"}
    for key, value in env.items():
        environ["SCREENAWARE_INFLUX_" + key] = value.format(**{n: str(p) for n, p in paths.items()})
    with pytest.raises(ConfigError, match="^SCREENAWARE_INFLUX_" + message):
        Config.load(environ=environ)


def test_good_tls_settings_load(pki: Pki) -> None:
    config = Config.load(
        environ={
            "SCREENAWARE_INFLUX_URL": "https://127.0.0.1:8086",
            "SCREENAWARE_INFLUX_CA_BUNDLE": str(pki.ca),
            "SCREENAWARE_INFLUX_CLIENT_CERT": str(pki.client_cert),
            "SCREENAWARE_INFLUX_CLIENT_KEY": str(pki.client_key),
        }
    )
    context = config.influx_tls_context()
    assert context is not None
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "ScreenAware test ca"),),)
    ]
    assert Config.load(environ={}).influx_tls_context() is None  # http://


# --- credentials in the URL --------------------------------------------------


@pytest.fixture(scope="module")
def auth_influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """An influxd with authentication on and one admin; yields its port."""
    port = free_port()
    server: Server = start_influxd(tmp_path_factory.mktemp("auth") / "influxdb", port, auth=True)
    try:
        # Without any user yet, InfluxDB lets this one statement through.
        created = httpx.post(
            f"http://127.0.0.1:{port}/query",
            data={"q": f"CREATE USER {USER} WITH PASSWORD '{PASSWORD}' WITH ALL PRIVILEGES"},
        )
        assert created.status_code == 200, created.text
        yield port
    finally:
        server.stop()


def url_with_credentials(port: int, user: str = USER, password: str = PASSWORD) -> str:
    quoted = urllib.parse.quote(user, safe="") + ":" + urllib.parse.quote(password, safe="")
    return f"http://{quoted}@127.0.0.1:{port}"


async def test_credentials_in_the_url_are_sent_as_basic_auth(
    config: Config, auth_influxd: int
) -> None:
    from_env = Config.load(environ={"SCREENAWARE_INFLUX_URL": url_with_credentials(auth_influxd)})
    assert from_env.influx_credentials == (USER, PASSWORD)  # percent-decoded
    assert from_env.influx_base_url == f"http://127.0.0.1:{auth_influxd}"
    with_url = config.replace(influx_url=from_env.influx_url)
    assert "p%40ss" not in repr(with_url)
    assert await round_trip(with_url) == [{"time": 1_700_000_000_000_000_000, "n": 1}]
    # The separate settings still work the same.
    with_settings = config.replace(
        influx_url=f"http://127.0.0.1:{auth_influxd}",
        influx_username=USER,
        influx_password=PASSWORD,
    )
    assert len(await round_trip(with_settings)) == 1


@pytest.mark.parametrize("password", [None, "wrong"])
async def test_missing_or_wrong_credentials_make_influxdb_unavailable(
    config: Config, auth_influxd: int, password: str | None
) -> None:
    url = (
        f"http://127.0.0.1:{auth_influxd}"
        if password is None
        else url_with_credentials(auth_influxd, password=password)
    )
    with pytest.raises(StorageUnavailable, match="InfluxDB answered 401"):
        await round_trip(config.replace(influx_url=url))


async def test_the_service_stores_beats_through_url_credentials(
    config: Config, auth_influxd: int, clock: FakeClock
) -> None:
    for url, status in [
        (f"http://127.0.0.1:{auth_influxd}", 503),
        (url_with_credentials(auth_influxd), 200),
    ]:
        app = create_app(config.replace(influx_url=url), clock=clock)
        async with testing.ASGIConductor(app) as client:
            auth = {"Authorization": SECRET_KEY}
            device = await client.simulate_post("/api/devices", json={"name": "L"}, headers=auth)
            beat = await client.simulate_post(
                "/api/beat", headers={"Authorization": device.json["token"]}
            )
            assert beat.status_code == status, beat.text
    stored = httpx.get(
        f"http://127.0.0.1:{auth_influxd}/query",
        params={"db": config.influx_db, "q": 'SELECT count(*) FROM "beat"'},
        auth=(USER, PASSWORD),
    ).json()["results"][0]
    assert stored["series"][0]["values"][0][1:] == [1]


# --- answer size cap ---------------------------------------------------------


async def test_an_answer_over_the_cap_is_not_read_and_the_client_goes_on(
    config: Config,
) -> None:
    influx = InfluxClient(config.replace(influx_max_response_bytes=4096))
    await influx.open()
    try:
        await influx.ensure_database()
        lines = "\n".join(f'probe,k=v n={i}i,s="{"x" * 40}" {i}' for i in range(500))
        await influx.write_lines(lines.encode())
        with pytest.raises(InfluxAnswerTooLarge, match="larger than 4096 bytes"):
            await influx.query('SELECT * FROM "probe"')
        # The half-read connection was dropped; the next query gets a clean one.
        counted = await influx.query('SELECT count("n") FROM "probe"')
        assert counted[0].values[0][1] == 500
    finally:
        await influx.close()


async def test_a_too_large_answer_is_a_clear_503(config: Config, clock: FakeClock) -> None:
    capped = config.replace(
        admin_email=ADMIN_EMAIL, admin_password=ADMIN_PASSWORD, influx_max_response_bytes=4096
    )
    clock.now = dt.datetime(2023, 11, 15, 12, tzinfo=dt.UTC).timestamp()
    async with testing.ASGIConductor(create_app(capped, clock=clock)) as client:
        login = await client.simulate_post(
            "/api/auth/local", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        admin = bearer(login.json["token"])
        start = dt.datetime(2023, 11, 15, 10, tzinfo=dt.UTC)
        points = [
            {
                "type": "a",
                "level": "info",
                "data": {
                    "origin": "sensor-win",
                    "version": "0.4.17",
                    "message": f"point {i} " + "x" * 60,
                    "time": int((start + dt.timedelta(seconds=i)).timestamp() * 1000),
                },
            }
            for i in range(200)
        ]
        sent = await client.simulate_post("/api/logs", json=points, headers=admin)
        assert sent.status_code < 300, sent.text
        span = {"start": "2023-11-15T10:00:00.000Z", "end": "2023-11-15T11:00:00.000Z"}
        few = await client.simulate_get("/api/logs", params=span, headers=admin)
        assert few.status_code == 200, few.text  # small answers still pass
        many = await client.simulate_get("/api/logs/a", params=span, headers=admin)
        assert many.status_code == 503
        assert many.json == {
            "message": "The database's answer is too large; ask for a shorter range"
        }
        assert many.headers["retry-after"] == str(capped.retry_after)
