"""Configuration: precedence, validation messages, secrets kept out of repr."""

from __future__ import annotations

from pathlib import Path

import pytest

from screenaware.config import Config, ConfigError, redact_url


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
        ({"SCREENAWARE_TIMEZONE": "Mars/Base"}, "unknown IANA time zone"),
        ({"SCREENAWARE_JWT_TTL": "-1"}, "SCREENAWARE_JWT_TTL"),
        ({"SCREENAWARE_API_KEYS_PER_USER": "0"}, "SCREENAWARE_API_KEYS_PER_USER: must be"),
        ({"SCREENAWARE_API_KEY_TOUCH_INTERVAL": "0"}, "SCREENAWARE_API_KEY_TOUCH_INTERVAL: must"),
        ({"SCREENAWARE_CONFIG": "/nonexistent.toml"}, "file not found"),
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


def test_replace_validates() -> None:
    config = Config.load(environ={})
    assert config.replace(workers=3).workers == 3
    with pytest.raises(ConfigError):
        config.replace(workers=0)
