"""The sensor's settings (flags > environment > TOML > defaults) and its exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from screenaware_sensor.config import ConfigError, load_settings

SENSOR = Path(sys.executable).parent / "screenaware-sensor"


def write_config(home: Path, text: str) -> Path:
    path = home / ".config" / "screenaware-sensor" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_and_xdg_paths(tmp_path: Path) -> None:
    s = load_settings(["--server", "http://sa.example/", "--key", "k1"], {"HOME": str(tmp_path)})
    assert (s.server, s.key, s.interval, s.idle, s.once) == (
        "http://sa.example",
        "k1",
        10,
        180,
        False,
    )
    assert s.queue == tmp_path / ".local/state/screenaware-sensor/queue.sqlite3"
    assert s.queue_capacity == 30 * 86400 // 10  # 30 days of 10-second snapshots
    assert "k1" not in repr(s)
    s = load_settings(
        ["--server", "https://x", "--key", "k"],
        {"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state")},
    )
    assert s.queue == tmp_path / "state/screenaware-sensor/queue.sqlite3"


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        'server = "http://file"\nkey = "file-key"\ninterval = 5\nidle = 60\n'
        'exclude_app = ["Slack.exe"]\nexclude_title = ["bank"]\n',
    )
    env = {"HOME": str(tmp_path)}
    s = load_settings([], env)
    assert (s.server, s.key, s.interval, s.idle) == ("http://file", "file-key", 5, 60)
    assert s.exclude_app == ("slack",)
    env |= {
        "SCREENAWARE_SENSOR_SERVER": "http://env",
        "SCREENAWARE_SENSOR_INTERVAL": "2.5",
        "SCREENAWARE_SENSOR_ONCE": "true",
        "SCREENAWARE_SENSOR_EXCLUDE_TITLE": '["(?i)salary", "a,b"]',
        "SCREENAWARE_SENSOR_EXCLUDE_APP": "keepassxc",
    }
    s = load_settings([], env)
    assert (s.server, s.key, s.interval, s.once) == ("http://env", "file-key", 2.5, True)
    s = load_settings(
        ["--server", "http://flag", "--interval", "1", "--exclude-title", "x+", "--exclude-app",
         "/usr/bin/Signal"],
        env,
    )  # fmt: skip
    assert (s.server, s.interval) == ("http://flag", 1)
    # Privacy filters add up over the sources: none is lost by setting another.
    assert [p.pattern for p in s.exclude_title] == ["bank", "(?i)salary", "a,b", "x+"]
    assert s.exclude_app == ("slack", "keepassxc", "signal")


def test_an_explicit_config_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(["--config", str(tmp_path / "nope.toml")], {"HOME": str(tmp_path)})
    other = tmp_path / "other.toml"
    other.write_text('server = "http://other"\nkey = "k"\n')
    env = {"HOME": str(tmp_path), "SCREENAWARE_SENSOR_CONFIG": str(other)}
    assert load_settings([], env).server == "http://other"


@pytest.mark.parametrize(
    ("argv", "env", "toml", "message"),
    [
        ([], {}, "", "--server .* is required"),
        (["--server", "http://x"], {}, "", "--key .* is required"),
        (["--server", "ftp://x", "--key", "k"], {}, "", "--server: must be an http"),
        (["--server", "http://x", "--key", "a b"], {}, "", "no white space"),
        (["--server", "http://x", "--key", "k", "--interval", "11"], {}, "", "between"),
        (["--server", "http://x", "--key", "k"], {"SCREENAWARE_SENSOR_INTERVAL": "x"}, "",
         "SCREENAWARE_SENSOR_INTERVAL: must be a number"),
        (["--server", "http://x", "--key", "k"], {}, "interval = 0\n", "interval: must be between"),
        (["--server", "http://x", "--key", "k", "--exclude-title", "("], {}, "",
         "bad regular expression"),
        (["--server", "http://x", "--key", "k"], {}, "intervall = 5\n",
         "unknown settings intervall"),
        (["--server", "http://x", "--key", "k"], {}, "interval = [", "config.toml"),
        (["--server", "http://x", "--key", "k"], {"SCREENAWARE_SENSOR_ONCE": "perhaps"}, "",
         "true or false"),
        (["--server", "http://x", "--key", "k"], {"SCREENAWARE_SENSOR_EXCLUDE_APP": "[1]"}, "",
         "JSON array of strings"),
    ],
)  # fmt: skip
def test_bad_settings_exit_2_naming_the_setting(
    tmp_path: Path, argv: list[str], env: dict[str, str], toml: str, message: str
) -> None:
    if toml:
        write_config(tmp_path, toml)
    environ = {"HOME": str(tmp_path), **env}
    with pytest.raises(ConfigError, match=message):
        load_settings(argv, environ)
    # The installed console script says the same and exits 2.
    done = subprocess.run(
        [str(SENSOR), *argv, *([] if "SCREENAWARE_SENSOR_ONCE" in env else ["--once"])],
        env={"PATH": os.environ["PATH"], **environ},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("screenaware-sensor: error:"), done.stderr


def test_unknown_flag_exits_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(SENSOR), "--no-such-flag"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "unrecognized arguments" in done.stderr


def test_console_script_is_installed() -> None:
    # scripts/setup installs sensor/ into the project's virtualenv.
    done = subprocess.run([str(SENSOR), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "--exclude-title" in done.stdout and "--once" in done.stdout


def test_a_key_in_a_readable_config_file_is_warned_about(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'server = "http://x"\nkey = "secret-key"\n')
    path.chmod(0o644)
    (warning,) = load_settings([], {"HOME": str(tmp_path)}).warnings
    assert "chmod 600" in warning and "secret-key" not in warning
    path.chmod(0o600)
    assert load_settings([], {"HOME": str(tmp_path)}).warnings == ()


def test_one_sensor_per_queue(tmp_path: Path) -> None:
    import fcntl

    queue = tmp_path / "queue.sqlite3"
    with open(f"{queue}.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running sensor holds it
        done = subprocess.run(
            [str(SENSOR), "--once", "--server", "http://127.0.0.1:9", "--key", "k",
             "--queue", str(queue)],
            env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 75, done.stderr
    assert "another sensor is using the queue" in done.stderr


def test_the_distribution_needs_only_python_xlib() -> None:
    from importlib.metadata import requires

    # The sensor runs on people's computers: none of the server's dependencies.
    assert requires("screenaware-sensor") == ["python-xlib>=0.33"]
