"""The daemon's configuration: one validated model, from TOML, environment and flags.

Precedence: command-line flags > ``VIN_AGENT_*`` environment > the TOML
file > defaults.  Environment names map onto fields with ``__`` between
levels: ``VIN_AGENT_MQTT__URL``, ``VIN_AGENT_EVENTS__VISIT_TIMEOUT``.
Every error names the field and the problem.
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.publish.mqtt import MqttConfig
from agent.reader import DEFAULT_MAX_LINES
from agent.serve import ServeConfig
from agent.sources import SourceConfig
from agent.vision.calibration import DEFAULT_MIN_CONFIDENCE
from agent.vision.runtime import RuntimeConfig

DEFAULT_CONFIG = Path("/etc/vin-agent/config.toml")
ENV_PREFIX = "VIN_AGENT_"
#: VIN_AGENT_* variables that belong to the project's scripts and tests, not to the
#: daemon's configuration (an exported one must not make ``run`` refuse to start).
NOT_CONFIG = (
    "VIN_AGENT_CONFIG",
    "VIN_AGENT_EXTRAS",
    "VIN_AGENT_SYSTEM_SITE",
    "VIN_AGENT_SOAK_",
    "VIN_AGENT_ARM64_",
)


def default_state_dir() -> Path:
    if os.environ.get("STATE_DIRECTORY"):  # systemd's StateDirectory=
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    if os.geteuid() == 0:
        return Path("/var/lib/vin-agent")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "vin-agent"


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the field."""


class ReaderConfig(BaseModel):
    """How frames are read."""

    model_config = ConfigDict(extra="forbid")

    policy: Literal["required", "auto", "off"] = Field(
        "auto", description="check digit policy: required, auto (North America, China) or off"
    )
    min_confidence: float = Field(
        DEFAULT_MIN_CONFIDENCE,
        ge=0,
        le=1,
        description="publish a VIN only at or above this calibrated confidence",
    )
    barcodes: bool = Field(True, description="also read VIN barcodes (Code 39, QR, ...)")
    tiles: bool = Field(
        False,
        description="also search each frame of 640x384 and up in 2x2 overlapping tiles: "
        "small, distant VINs (+5 points exact on generated photos), four more detector "
        "passes per frame (about 3x its time); off for a mounted camera framed on the VIN",
    )
    words: bool = Field(
        True,
        description="also read level words of about 17 characters found from the frame's "
        "own character shapes (plainly printed VINs the detector misses); ~10 ms per frame",
    )
    second_look: bool = Field(
        True,
        description="read a line the VIN rules or the threshold refuse again from the crop "
        "framed three other ways, fused; kept only when its check digit verifies it",
    )
    quarter_turn: bool = Field(
        False,
        description="also search each frame turned 90 degrees for vertical VIN lines (a "
        "camera on its side, vertical labels): one more detector pass per frame",
    )
    turned_barcodes: bool = Field(
        False,
        description="also scan each frame turned 90 degrees for vertical barcodes: a "
        "barcode pass three times as long, the largest cost of a frame",
    )
    max_lines: int = Field(
        DEFAULT_MAX_LINES,
        ge=1,
        le=1000,
        description="read at most this many detected lines per frame, likeliest first, so "
        "one frame full of text cannot stall the camera (each costs ~3 ms here)",
    )
    runtime: RuntimeConfig = Field(
        default_factory=RuntimeConfig, description="TFLite interpreter package and threads"
    )


class EventsConfig(BaseModel):
    """How reads across frames become visits and messages."""

    model_config = ConfigDict(extra="forbid")

    visit_timeout: float = Field(
        5.0, gt=0, description="end a visit when its VIN has not been seen for this many seconds"
    )
    dedupe_window: float = Field(
        60.0, ge=0, description="do not open a new visit for the same VIN within this many seconds"
    )
    snapshots: bool = Field(False, description="publish a JPEG of the best frame of each visit")


class CameraConfig(BaseModel):
    """One camera and what to do with its frames."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="camera name; part of the MQTT topics, so no / + #")
    source: SourceConfig = Field(description="where frames come from; see [cameras.source]")
    max_fps: float | None = Field(
        None, gt=0, description="process at most this many frames per second (live sources)"
    )
    motion_threshold: float | None = Field(
        None,
        gt=0,
        description="skip frames whose mean gray change against the last one is below this "
        "(0-255 scale; about 2-4 suits a fixed camera); unset: process every frame",
    )

    @field_validator("name")
    @classmethod
    def _topic_safe(cls, v: str) -> str:
        if not v or any(c in v for c in "/+#\0") or v != v.strip():
            raise ValueError("must be non-empty without '/', '+', '#' or surrounding spaces")
        return v


class AgentConfig(BaseModel):
    """Everything ``vin-agent run`` needs."""

    model_config = ConfigDict(extra="forbid")

    device_id: str = Field(
        default_factory=socket.gethostname, description="this device's id in MQTT topics"
    )
    state_dir: Path = Field(
        default_factory=default_state_dir,
        description="outbox database and seq counter live here (default: $STATE_DIRECTORY "
        "under systemd, /var/lib/vin-agent as root, ~/.local/state/vin-agent otherwise)",
    )
    models_dir: Path | None = Field(None, description="models directory (default: shipped)")
    stats_interval: float = Field(60.0, gt=0, description="seconds between stats messages")
    reader: ReaderConfig = Field(default_factory=ReaderConfig, description="reading frames")
    events: EventsConfig = Field(default_factory=EventsConfig, description="visits and messages")
    mqtt: MqttConfig | None = Field(
        None, description="broker connection; without it messages go to stdout as JSON lines"
    )
    cameras: list[CameraConfig] = Field(min_length=1, description="cameras to watch")
    serve: ServeConfig = Field(
        default_factory=ServeConfig, description="local /v1/vinocr HTTP endpoint (off by default)"
    )

    @field_validator("device_id")
    @classmethod
    def _device_topic_safe(cls, v: str) -> str:
        if not v or any(c in v for c in "/+#\0 "):
            raise ValueError("must be non-empty without '/', '+', '#' or spaces")
        return v

    @field_validator("cameras")
    @classmethod
    def _unique_names(cls, v: list[CameraConfig]) -> list[CameraConfig]:
        names = [c.name for c in v]
        if len(set(names)) != len(names):
            raise ValueError(f"camera names must be unique, got {names}")
        return v


def _set(tree: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        node = tree.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{'.'.join(path)}: cannot set inside non-table {key!r}")
        tree = node
    tree[path[-1]] = value


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``VIN_AGENT_A__B=value`` -> ``{"a": {"b": "value"}}``; pydantic converts types."""
    tree: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name.startswith(NOT_CONFIG):
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        if all(path):
            _set(tree, path, value)
    return tree


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def _describe(exc: ValidationError, origin: str) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling against systemd/config.example.toml)"
        lines.append(f"  {where}: {msg}")
    return f"invalid configuration ({origin}):\n" + "\n".join(lines)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such config file; copy systemd/config.example.toml there, "
            "or run with --source to try without one"
        ) from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied; the service user must read it") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory; give the config file itself") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not valid TOML: not UTF-8 text (byte {exc.start}: {exc.reason})"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_config(
    path: Path | None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> AgentConfig:
    """Build the config from an optional file, the environment and flag overrides."""
    data: dict[str, Any] = read_toml(path) if path is not None else {}
    data = _merge(data, env_overrides(os.environ if environ is None else environ))
    data = _merge(data, overrides or {})
    origin = str(path) if path else "flags and environment"
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin)) from None
