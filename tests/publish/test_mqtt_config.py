"""MqttConfig: url parsing, defaults, TLS rules and keeping the password out of sight."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from agent.publish.mqtt_config import MqttConfig


def test_url_fills_host_port_user() -> None:
    """A single url is the easy way to configure; its parts must land in the fields."""
    cfg = MqttConfig(url="mqtt://gate@broker.lan:1884")
    assert (cfg.host, cfg.port, cfg.username, cfg.tls) == ("broker.lan", 1884, "gate", False)


def test_mqtts_implies_tls_and_port_8883() -> None:
    """mqtts:// means TLS on the standard TLS port unless a port is given."""
    cfg = MqttConfig(url="mqtts://broker.lan")
    assert (cfg.tls, cfg.port) == (True, 8883)
    assert MqttConfig(host="b").port == 1883
    assert MqttConfig(host="b", tls=True).port == 8883


def test_password_in_url_is_refused_without_echoing_it() -> None:
    """Passwords in urls leak into configs, `ps` and logs: refuse and point at password_file."""
    with pytest.raises(ValidationError) as err:
        MqttConfig(url="mqtt://gate:hunter2-secret@broker.lan")
    text = str(err.value)
    assert "password_file" in text
    assert "hunter2-secret" not in text
    assert "hunter2-secret" not in repr(err.value.errors())


def test_password_in_url_does_not_leak_through_an_outer_model() -> None:
    """The agent config nests MqttConfig; its error message repeats inputs unless redacted."""

    class Outer(BaseModel):
        mqtt: MqttConfig | None = None

    with pytest.raises(ValidationError) as err:
        Outer.model_validate({"mqtt": {"url": "mqtts://gate:hunter2-secret@b:8883"}})
    assert "hunter2-secret" not in str(err.value)
    assert "hunter2-secret" not in repr(err.value.errors())
    assert "password_file" in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({}, "url (mqtt://host) or host"),
        ({"url": "http://b"}, "mqtt://"),
        ({"url": "mqtt://b/path"}, "nothing after"),
        ({"url": "mqtt://b:99999"}, "port"),
        ({"url": "mqtt://b", "host": "other"}, "disagrees"),
        ({"url": "mqtts://b", "tls": False}, "needs TLS"),
        ({"host": "b", "ca_file": "/ca.pem"}, "TLS is off"),
        ({"host": "b", "tls": True, "key_file": "/k.pem"}, "needs cert_file"),
        ({"host": "b", "password_file": "/pw"}, "needs username"),
        ({"host": "b", "reconnect_min_s": 10, "reconnect_max_s": 5}, "reconnect_min_s"),
        ({"host": "b", "prefix": "vin/#"}, "wildcard"),
        ({"host": "b", "protocol": "3"}, "protocol"),
        ({"host": "b", "passwd": "x"}, "Extra inputs"),
    ],
)
def test_invalid_settings(kwargs: dict[str, object], needle: str) -> None:
    """Mistakes fail at start-up with a message that says what to change."""
    with pytest.raises(ValidationError) as err:
        MqttConfig(**kwargs)  # type: ignore[arg-type]
    assert needle in str(err.value)


def test_every_field_is_documented() -> None:
    """Descriptions feed generated config docs; an undocumented field is a gap there."""
    for name, field in MqttConfig.model_fields.items():
        assert field.description, name


def test_password_file_resolves_against_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """systemd LoadCredential= hands secrets over in $CREDENTIALS_DIRECTORY."""
    (tmp_path / "mqtt-password").write_text("s3cret-value\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    cfg = MqttConfig(host="b", username="gate", password_file=Path("mqtt-password"))
    assert cfg.password_path() == tmp_path / "mqtt-password"
    secret = cfg.read_password()
    assert secret is not None
    assert secret.get_secret_value() == "s3cret-value"
    assert "s3cret" not in repr(secret) + str(secret) + repr(cfg)


def test_empty_password_file_is_an_error(tmp_path: Path) -> None:
    """An empty file is a deployment mistake, not an empty password."""
    (tmp_path / "pw").write_text("")
    cfg = MqttConfig(host="b", username="u", password_file=tmp_path / "pw")
    with pytest.raises(ValueError, match="empty"):
        cfg.read_password()
