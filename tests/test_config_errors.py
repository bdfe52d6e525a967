"""Configuration mistakes (issue 7): every error names the field or file to fix, no traceback.

tests/test_config.py covers range errors, an unknown [events] key, a wrong
number, a missing file and bad TOML; tests/publish/test_mqtt_config.py the
MQTT settings.  This file adds what they leave out: wrong types in nested
tables, unknown keys in a camera source, environment values, files that
exist but cannot be read, and unreadable MQTT credentials.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from agent.publish.mqtt_client import BrokerLink
from agent.publish.mqtt_config import MqttConfig
from tests.conftest import run_cli

CAMERA = """
[[cameras]]
name = "gate"
[cameras.source]
type = "images"
path = "/srv/ftp/gate"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "field", "problem"),
    [
        ('cameras = "gate"\n', "cameras", "valid list"),
        ('reader = "fast"\n' + CAMERA, "reader", "valid dictionary"),
        ("state_dir = [1, 2]\n" + CAMERA, "state_dir", "valid path"),
        (CAMERA + 'watch = "sometimes"\n', "cameras.0.source.images.watch", "valid boolean"),
        (CAMERA + "poll_s = -1\n", "cameras.0.source.images.poll_s", "greater than 0"),
        (CAMERA + 'pathh = "/srv"\n', "cameras.0.source.images.pathh", "unknown field"),
        (CAMERA.replace('type = "images"\n', ""), "cameras.0.source", "discriminator 'type'"),
        (CAMERA + '[mqtt]\nhost = "b"\nport = "x"\n', "mqtt.port", "valid integer"),
        (
            CAMERA + '[mqtt]\nhost = "b"\nusername = "u"\npassword_file = 5\n',
            "mqtt.password_file",
            "valid path",
        ),
        (
            CAMERA + '[mqtt]\nhost = "b"\npassword = "hunter2-secret"\n',
            "mqtt.password",
            "unknown field",
        ),
        ("", "cameras", "Field required"),
    ],
    ids=[
        "cameras-not-a-list",
        "table-given-a-string",
        "path-given-a-list",
        "bool-given-a-word",
        "negative-interval",
        "typo-in-source",
        "source-without-type",
        "port-given-a-word",
        "password-file-given-a-number",
        "password-in-config",
        "no-cameras",
    ],
)
def test_wrong_types_and_unknown_keys_name_the_field(
    tmp_path: Path, text: str, field: str, problem: str
) -> None:
    """Nested mistakes are reported by their dotted path, with pydantic's reason."""
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text), environ={})
    message = str(err.value)
    assert f"  {field}: " in message and problem in message, message
    assert str(tmp_path / "config.toml") in message
    assert "hunter2" not in message  # values are not echoed: one of them may be a secret


@pytest.mark.parametrize(
    ("environ", "field", "problem"),
    [
        ({"VIN_AGENT_STATS_INTERVAL": "often"}, "stats_interval", "valid number"),
        ({"VIN_AGENT_READER__MIN_CONFIDENCE": "high"}, "reader.min_confidence", "valid number"),
        ({"VIN_AGENT_EVENTS__SNAPSHOTS": "perhaps"}, "events.snapshots", "valid boolean"),
        ({"VIN_AGENT_READER": "x", "VIN_AGENT_READER__POLICY": "auto"}, "reader", "non-table"),
    ],
)
def test_environment_values_name_the_field(
    tmp_path: Path, environ: dict[str, str], field: str, problem: str
) -> None:
    """A bad VIN_AGENT_* value is reported with the field it sets."""
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, CAMERA), environ=environ)
    assert field in str(err.value) and problem in str(err.value), str(err.value)


def test_config_path_is_a_directory(tmp_path: Path) -> None:
    """`--config /etc/vin-agent/` (the directory) was a traceback (IsADirectoryError)."""
    with pytest.raises(ConfigError, match="is a directory; give the config file itself"):
        load_config(tmp_path)


def test_config_file_not_utf8(tmp_path: Path) -> None:
    """A file saved in Latin-1 was a traceback (UnicodeDecodeError); now it says so."""
    path = tmp_path / "config.toml"
    path.write_bytes(b'device_id = "gr\xfcn"\n' + CAMERA.encode())
    with pytest.raises(ConfigError, match=r"config\.toml: not valid TOML: not UTF-8 text"):
        load_config(path)


def test_config_file_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config the service user may not read says so (simulated: tests may run as root)."""
    path = _write(tmp_path, CAMERA)

    def denied(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(ConfigError, match="permission denied; the service user must read it"):
        load_config(path)


def test_config_path_under_a_file(tmp_path: Path) -> None:
    """Any other OS error (here ENOTDIR) is a ConfigError naming the path, not a traceback."""
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"file/config\.toml: cannot read config file"):
        load_config(tmp_path / "file" / "config.toml")


@pytest.mark.integration
def test_run_with_bad_config_paths_fails_without_traceback(cli: list[str], tmp_path: Path) -> None:
    """`vin-agent run` on a directory or a non-UTF-8 file: a failure exit and a one-line
    reason (the exit code for config errors is the service's business; here: not 0)."""
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b'device_id = "gr\xfcn"\n')
    for path, needle in ((tmp_path, b"is a directory"), (latin1, b"not UTF-8")):
        proc = run_cli(cli, "run", "--config", str(path))
        assert proc.returncode != 0, proc.stderr.decode()
        assert needle in proc.stderr and b"Traceback" not in proc.stderr


# -- MQTT credentials ----------------------------------------------------------------


def _link(password_file: Path) -> BrokerLink:
    cfg = MqttConfig(host="broker.invalid", username="gate", password_file=password_file)
    return BrokerLink(cfg, "vin-agent-test", "vin/test/status")


@pytest.mark.parametrize("problem", ["missing", "directory", "not-utf8", "empty"])
def test_unreadable_password_file_is_logged_naming_the_field_and_file(
    tmp_path: Path, problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A password_file that is missing, not a file, not text or empty: each connect attempt
    logs an error naming password_file and its path (the file is read at every connect so
    a rotated or late-mounted credential is picked up without a restart)."""
    path = tmp_path / "mqtt-password"
    if problem == "directory":
        path.mkdir()
    elif problem == "not-utf8":
        path.write_bytes(b"\xff\xfe\x00secret\n")
    elif problem == "empty":
        path.write_text("")
    link = _link(path)
    with pytest.raises((OSError, ValueError)):
        link.config.read_password()
    with caplog.at_level(logging.ERROR, logger="agent.publish.mqtt_client"):
        link._on_pre_connect(link.client, None)
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    message = record.getMessage()
    assert "password_file" in message and str(path) in message, message
