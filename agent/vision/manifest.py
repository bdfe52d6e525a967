"""The model manifest: which model files ship, and their SHA-256 checksums.

Every model is verified against ``manifest.json`` before it is loaded, so a
truncated copy or a tampered file stops the agent with a message naming it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"


class ModelError(RuntimeError):
    """A model is missing, does not match its checksum, or cannot be loaded."""


@dataclass(frozen=True)
class ModelEntry:
    """One model of the manifest."""

    name: str
    path: Path
    sha256: str
    version: str
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """The parsed manifest and the directory it was read from."""

    directory: Path
    models: dict[str, ModelEntry]

    def entry(self, name: str) -> ModelEntry:
        try:
            return self.models[name]
        except KeyError:
            raise ModelError(
                f"{self.directory / MANIFEST_NAME} has no model {name!r} "
                f"(it lists: {', '.join(sorted(self.models)) or 'none'})"
            ) from None


def default_models_dir() -> Path:
    """The models shipped with the package (the repository's models/ when editable)."""
    return Path(str(resources.files("agent.models")))


def load_manifest(models_dir: Path | str | None = None) -> Manifest:
    """Parse ``manifest.json`` in ``models_dir`` (default: the shipped models)."""
    directory = Path(models_dir) if models_dir is not None else default_models_dir()
    path = directory / MANIFEST_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(
            f"no {MANIFEST_NAME} in {directory}: pass --models-dir pointing at the "
            "directory with the .tflite models and their manifest"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from exc
    models: dict[str, ModelEntry] = {}
    for name, item in (raw.get("models") or {}).items():
        try:
            models[name] = ModelEntry(
                name=name,
                path=directory / item["file"],
                sha256=str(item["sha256"]).lower(),
                version=str(item.get("version", "")),
                info=item,
            )
        except (KeyError, TypeError) as exc:
            raise ModelError(f"{path}: model {name!r} lacks field {exc}") from exc
    return Manifest(directory=directory, models=models)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(entry: ModelEntry) -> bytes:
    """Return the model's bytes if they match the manifest; raise ModelError otherwise.

    Reading once and hashing what is then loaded closes the gap between a
    check and a later read of a file that changed in between.
    """
    try:
        data = entry.path.read_bytes()
    except FileNotFoundError:
        raise ModelError(
            f"model file {entry.path} is missing: reinstall vin-agent or fix --models-dir"
        ) from None
    except OSError as exc:
        raise ModelError(f"cannot read model file {entry.path}: {exc}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != entry.sha256:
        raise ModelError(
            f"model file {entry.path} does not match its SHA-256 in the manifest "
            f"(expected {entry.sha256[:16]}..., got {actual[:16]}...): the file is "
            "corrupt or was modified; reinstall it, refusing to load"
        )
    return data


def verify_all(manifest: Manifest) -> list[dict[str, Any]]:
    """Check every model; one result dict per model, never raising for a bad file."""
    results = []
    for name, entry in sorted(manifest.models.items()):
        try:
            verify(entry)
        except ModelError as exc:
            results.append(
                {"model": name, "file": str(entry.path), "ok": False, "message": str(exc)}
            )
        else:
            results.append(
                {"model": name, "file": str(entry.path), "ok": True, "sha256": entry.sha256}
            )
    if not results:
        results.append({"model": None, "ok": False, "message": "the manifest lists no models"})
    return results
