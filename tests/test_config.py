"""Configuration: the example file validates, errors name the field, precedence holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from tests.conftest import REPO

EXAMPLE = REPO / "systemd" / "config.example.toml"

MINIMAL = """
device_id = "gate-1"
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


def test_shipped_example_is_valid() -> None:
    """Installers start from the example: it must load as it is."""
    cfg = load_config(EXAMPLE, environ={})
    assert cfg.device_id == "gate-north-1"
    assert cfg.cameras[0].source.type == "picamera2"
    assert cfg.mqtt is not None


def test_defaults_from_a_minimal_file(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, MINIMAL), environ={})
    assert cfg.mqtt is None  # stdout
    assert cfg.reader.policy == "auto" and cfg.reader.min_confidence == 0.8
    assert cfg.events.visit_timeout == 5.0


@pytest.mark.parametrize(
    ("extra", "field", "problem"),
    [
        ("[reader]\nmin_confidence = 1.5\n", "reader.min_confidence", "less than or equal"),
        ("[reader]\npolicy = 'sometimes'\n", "reader.policy", "'required', 'auto' or 'off'"),
        ("[events]\nvisit_timeuot = 3\n", "events.visit_timeuot", "unknown field"),
        ("stats_interval = 'often'\n", "stats_interval", "valid number"),
    ],
)
def test_errors_name_the_field(tmp_path: Path, extra: str, field: str, problem: str) -> None:
    """A typo in a config file must point at the line to fix, not at a traceback."""
    text = MINIMAL.replace('device_id = "gate-1"\n', 'device_id = "gate-1"\n' + extra)
    # TOML tables must come after top-level keys; put table snippets at the end.
    if extra.startswith("["):
        text = MINIMAL + extra
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text), environ={})
    assert field in str(err.value) and problem in str(err.value)


def test_camera_source_type_and_names(tmp_path: Path) -> None:
    bad = MINIMAL.replace('type = "images"', 'type = "webcam"')
    with pytest.raises(ConfigError, match=r"cameras\.0\.source"):
        load_config(_write(tmp_path, bad), environ={})
    slash = MINIMAL.replace('name = "gate"', 'name = "gate/1"')
    with pytest.raises(ConfigError, match=r"cameras\.0\.name"):
        load_config(_write(tmp_path, slash), environ={})


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "device_id = \n"))


def test_precedence_flags_over_environment_over_file(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL)
    env = {"VIN_AGENT_DEVICE_ID": "from-env", "VIN_AGENT_EVENTS__VISIT_TIMEOUT": "9.5"}
    cfg = load_config(path, environ=env)
    assert cfg.device_id == "from-env" and cfg.events.visit_timeout == 9.5
    cfg = load_config(path, {"device_id": "from-flag"}, environ=env)
    assert cfg.device_id == "from-flag"


def test_environment_typo_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown field"):
        load_config(_write(tmp_path, MINIMAL), environ={"VIN_AGENT_DEVICEID": "x"})


def test_the_projects_own_script_variables_are_not_configuration(tmp_path: Path) -> None:
    """scripts/setup, the soak test and scripts/arm64-check read VIN_AGENT_* variables of
    their own; one left exported in a shell must not make the daemon refuse to start."""
    env = {
        "VIN_AGENT_EXTRAS": "dev,train",
        "VIN_AGENT_SYSTEM_SITE": "1",
        "VIN_AGENT_SOAK_S": "3600",
        "VIN_AGENT_ARM64_ROOT": "/tmp/root",
        "VIN_AGENT_DEVICE_ID": "still-read",
    }
    cfg = load_config(_write(tmp_path, MINIMAL), environ=env)
    assert cfg.device_id == "still-read"
