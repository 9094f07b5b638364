"""Configuration: precedence, validation messages, secrets kept out of repr."""

from __future__ import annotations

from pathlib import Path

import pytest

from screenaware.config import SECRET_KEYS, URL_KEYS, Config, ConfigError, redact_url


def test_defaults_match_the_design() -> None:
    config = Config.load(environ={})
    assert config.bind == "127.0.0.1:8080"
    assert config.workers == 2
    assert config.influx_url == "http://127.0.0.1:8086"
    assert config.influx_db == "screenaware"
    assert config.redis_url == "redis://127.0.0.1:6379/0"
    assert config.secret_key == ""
    assert config.server_name == "ScreenAware"
    assert config.jwt_ttl == 86400
    assert config.timezone == "UTC"
    assert config.data_dir == "./var"


def test_toml_file_overrides_defaults_and_env_overrides_file(tmp_path: Path) -> None:
    path = tmp_path / "screenaware.toml"
    path.write_text('server_name = "From file"\nworkers = 4\nINFLUX_DB = "filedb"\n')
    config = Config.load(environ={"SCREENAWARE_CONFIG": str(path), "SCREENAWARE_WORKERS": "8"})
    assert config.server_name == "From file"
    assert config.influx_db == "filedb"
    assert config.workers == 8
    assert config.config == str(path)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SCREENAWARE_WORKERS": "many"}, "SCREENAWARE_WORKERS: expected int"),
        ({"SCREENAWARE_WORKERS": "0"}, "SCREENAWARE_WORKERS: must be at least 1"),
        ({"SCREENAWARE_BIND": "8080"}, "SCREENAWARE_BIND: must be HOST:PORT"),
        ({"SCREENAWARE_INFLUX_URL": "localhost:8086"}, "SCREENAWARE_INFLUX_URL"),
        ({"SCREENAWARE_INFLUX_URL": "http://h\u00e9te:8086"}, "SCREENAWARE_INFLUX_URL: must be"),
        ({"SCREENAWARE_INFLUX_TOKEN": "abc\r\nX-Evil: 1"}, "SCREENAWARE_INFLUX_TOKEN: must be"),
        ({"SCREENAWARE_INFLUX_PASSWORD": "a\nb"}, "SCREENAWARE_INFLUX_PASSWORD: must be one"),
        ({"SCREENAWARE_REDIS_URL": "http://x"}, "SCREENAWARE_REDIS_URL"),
        ({"SCREENAWARE_REDIS_TIMEOUT": "0"}, "SCREENAWARE_REDIS_TIMEOUT: must be positive"),
        ({"SCREENAWARE_REDIS_TIMEOUT": "soon"}, "SCREENAWARE_REDIS_TIMEOUT: expected float"),
        ({"SCREENAWARE_TIMEZONE": "Mars/Base"}, "unknown IANA time zone"),
        ({"SCREENAWARE_JWT_TTL": "-1"}, "SCREENAWARE_JWT_TTL"),
        ({"SCREENAWARE_API_KEYS_PER_USER": "0"}, "SCREENAWARE_API_KEYS_PER_USER: must be"),
        ({"SCREENAWARE_API_KEY_TOUCH_INTERVAL": "0"}, "SCREENAWARE_API_KEY_TOUCH_INTERVAL: must"),
        ({"SCREENAWARE_CONFIG": "/nonexistent.toml"}, "file not found"),
        ({"SCREENAWARE_OUTAGE_LOG_INTERVAL": "0"}, "SCREENAWARE_OUTAGE_LOG_INTERVAL: must be"),
        ({"SCREENAWARE_CLOCK_SLOT_TTL": "2"}, "SCREENAWARE_CLOCK_SLOT_TTL: must be at least 3"),
    ],
)
def test_invalid_values_fail_with_a_clear_message(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.load(environ=env)


def test_unknown_file_keys_and_bad_toml_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("no_such_key = 1\n")
    with pytest.raises(ConfigError, match="unknown configuration key"):
        Config.load(environ={"SCREENAWARE_CONFIG": str(path)})
    path.write_text("this is not toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Config.load(environ={"SCREENAWARE_CONFIG": str(path)})


def test_secrets_never_appear_in_repr() -> None:
    config = Config.load(
        environ={
            "SCREENAWARE_SECRET_KEY": "s3cret-key",
            "SCREENAWARE_INFLUX_PASSWORD": "influx-pw",
            "SCREENAWARE_INFLUX_TOKEN": "influx-token",
            "SCREENAWARE_JWT_SECRET": "jwt-secret",
            "SCREENAWARE_ADMIN_PASSWORD": "admin-pw",
            "SCREENAWARE_REDIS_URL": "redis://user:redis-pw@db:6379/0",
        }
    )
    # Credentials in the URL or in USERNAME/PASSWORD, not both (a config error).
    in_url = Config.load(environ={"SCREENAWARE_INFLUX_URL": "http://u:url-pw@influx:8086"})
    text = repr(config) + str(config) + repr(in_url)
    for secret in (
        "s3cret-key",
        "influx-pw",
        "influx-token",
        "jwt-secret",
        "admin-pw",
        "redis-pw",
        "url-pw",
    ):
        assert secret not in text
    assert "secret_key='***'" in text
    assert config.secret_key == "s3cret-key"


def test_redact_url() -> None:
    assert redact_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert redact_url("redis://h:1/0") == "redis://h:1/0"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://h:6379/0?password=pw-9f3a", "redis://h:6379/0?password=***"),
        ("redis://h/0?db=1&password=pw-9f3a&x=2", "redis://h/0?db=1&password=***&x=2"),
        ("rediss://u:pw-9f3a@h:6380/0?password=pw-9f3a", "rediss://u:***@h:6380/0?password=***"),
        (
            "unix:///run/redis.sock?password=pw-9f3a&db=0",
            "unix:///run/redis.sock?password=***&db=0",
        ),
        ("unix://:pw-9f3a@/run/redis.sock?db=0", "unix://:***@/run/redis.sock?db=0"),
        ("redis://h/0?PASSWORD=pw%2D9f3a", "redis://h/0?PASSWORD=***"),
        ("http://influx:8086?u=me&p=pw-9f3a", "http://influx:8086?u=me&p=***"),
        ("unix:///run/redis.sock?db=0", "unix:///run/redis.sock?db=0"),
    ],
)
def test_redact_url_hides_query_and_user_info_passwords(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_query_password_in_the_redis_url_stays_out_of_repr() -> None:
    config = Config.load(
        environ={"SCREENAWARE_REDIS_URL": "unix:///run/redis.sock?db=0&password=pw-9f3a"}
    )
    assert "pw-9f3a" not in repr(config)
    assert "unix:///run/redis.sock?db=0&password=***" in repr(config)


@pytest.mark.parametrize("key", sorted(SECRET_KEYS | URL_KEYS))
@pytest.mark.parametrize("value", ["12345678", "1234.5678", '["s3cr3t-678"]', '{a = "s3cr3t-678"}'])
def test_a_mistyped_secret_in_the_file_is_not_echoed(tmp_path: Path, key: str, value: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"{key} = {value}\n")
    with pytest.raises(ConfigError) as raised:
        Config.load(environ={"SCREENAWARE_CONFIG": str(path)})
    message = str(raised.value)
    assert f"SCREENAWARE_{key.upper()}: expected str" in message
    for part in ("12345678", "1234", "5678", "s3cr3t"):
        assert part not in message


def test_replace_validates() -> None:
    config = Config.load(environ={})
    assert config.replace(workers=3).workers == 3
    with pytest.raises(ConfigError):
        config.replace(workers=0)


def test_a_cluster_url_names_its_nodes_and_credentials() -> None:
    url = "redis+cluster://app:pw%40-9f3a@10.0.0.1:7000,[::1]:7001, node-c:7002/0"
    config = Config.load(environ={"SCREENAWARE_REDIS_URL": url})
    target = config.redis_cluster
    assert target is not None
    assert target.nodes == (("10.0.0.1", 7000), ("::1", 7001), ("node-c", 7002))
    assert (target.username, target.password, target.tls) == ("app", "pw@-9f3a", False)
    # The password is in neither the config's repr nor the target's.
    assert "9f3a" not in repr(config) and "9f3a" not in repr(target)
    assert "redis+cluster://app:***@10.0.0.1:7000" in repr(config)
    tls = Config.load(environ={"SCREENAWARE_REDIS_URL": "rediss+cluster://h:1"}).redis_cluster
    assert tls is not None and tls.tls and tls.username is None and tls.password is None
    assert Config.load(environ={}).redis_cluster is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://", "node 1 of the cluster URL is not host:port"),
        ("redis+cluster://h1:7000,h2", "node 2 of the cluster URL is not host:port"),
        ("redis+cluster://h1:7000,:7001", "node 2 of the cluster URL is not host:port"),
        ("redis+cluster://h1:70000", "node 1 of the cluster URL is not host:port"),
        ("redis+cluster://h1:0", "node 1 of the cluster URL is not host:port"),
        ("redis+cluster://:s3cr3t-678@h1:x", "node 1 of the cluster URL is not host:port"),
        ("redis+cluster://h1:7000/1", "database 0 only"),
        ("redis+cluster://h1:7000?password=s3cr3t-678", "no query"),
        ("redis+cluster:h1:7000", "starts with redis\\+cluster://"),
    ],
)
def test_a_malformed_cluster_url_fails_clearly_without_echoing_it(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as failed:
        Config.load(environ={"SCREENAWARE_REDIS_URL": url})
    assert str(failed.value).startswith("SCREENAWARE_REDIS_URL: ")
    assert "s3cr3t" not in str(failed.value)
