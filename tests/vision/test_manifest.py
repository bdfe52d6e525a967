"""Model integrity: the manifest's SHA-256 gate in front of every model load."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from agent.vision.manifest import ModelError, load_manifest, verify, verify_all


def _write_models(tmp_path: Path, payload: bytes = b"TFL3 model bytes") -> Path:
    (tmp_path / "recognizer.tflite").write_bytes(payload)
    manifest = {
        "models": {
            "recognizer": {
                "file": "recognizer.tflite",
                "sha256": hashlib.sha256(payload).hexdigest(),
                "version": "1",
            }
        }
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path


def test_verify_accepts_matching_file(tmp_path: Path) -> None:
    """An untouched model passes and its bytes are what gets loaded."""
    manifest = load_manifest(_write_models(tmp_path))
    assert verify(manifest.entry("recognizer")) == b"TFL3 model bytes"
    assert [r["ok"] for r in verify_all(manifest)] == [True]


def test_tampered_model_refused_naming_file(tmp_path: Path) -> None:
    """A single flipped byte must stop the load, and the message must name the file."""
    manifest = load_manifest(_write_models(tmp_path))
    (tmp_path / "recognizer.tflite").write_bytes(b"TFL3 model bytez")
    with pytest.raises(ModelError, match=r"recognizer\.tflite does not match its SHA-256"):
        verify(manifest.entry("recognizer"))
    [result] = verify_all(manifest)
    assert result["ok"] is False and "recognizer.tflite" in result["message"]


def test_missing_model_and_manifest(tmp_path: Path) -> None:
    """Missing files give errors that say what to do, not tracebacks."""
    manifest = load_manifest(_write_models(tmp_path))
    (tmp_path / "recognizer.tflite").unlink()
    with pytest.raises(ModelError, match="is missing"):
        verify(manifest.entry("recognizer"))
    with pytest.raises(ModelError, match="no model 'detector'"):
        manifest.entry("detector")
    with pytest.raises(ModelError, match="--models-dir"):
        load_manifest(tmp_path / "nowhere")
