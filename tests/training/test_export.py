"""Promoting a reviewed model from a training directory into the shipped models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agent.vision.manifest import load_manifest, verify_all
from training.export import init_record, promote

REPO = Path(__file__).resolve().parents[2]


def test_promote_copies_the_model_and_its_entry_and_refuses_a_tampered_file(
    tmp_path: Path,
) -> None:
    """A promoted model must verify in its new home; a file that no longer matches the
    entry it was trained with must never be promoted."""
    src, dst = tmp_path / "run", tmp_path / "models"
    shutil.copytree(REPO / "models", src, ignore=shutil.ignore_patterns("__*"))
    shutil.copytree(REPO / "models", dst, ignore=shutil.ignore_patterns("__*"))
    manifest = json.loads((src / "manifest.json").read_text())
    manifest["models"]["detector"]["version"] = "9.9.9"
    (src / "manifest.json").write_text(json.dumps(manifest))
    promote(src, dst, "detector")
    promoted = load_manifest(dst)
    assert all(r["ok"] for r in verify_all(promoted))
    assert (
        json.loads((dst / "manifest.json").read_text())["models"]["detector"]["version"] == "9.9.9"
    )

    data = bytearray((src / "detector.tflite").read_bytes())
    data[100] ^= 0xFF
    (src / "detector.tflite").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match"):
        promote(src, dst, "detector")


def test_init_record_carries_the_chain_of_the_model_it_starts_from(tmp_path: Path) -> None:
    """A fine-tune from a shipped model must name what made that model, or the chain
    is lost with the float weights; a file its manifest does not describe (edited,
    or another build) must not borrow the entry's history."""
    shutil.copytree(REPO / "models", tmp_path / "m", ignore=shutil.ignore_patterns("__*"))
    shipped = json.loads((REPO / "models" / "manifest.json").read_text())["models"]["recognizer"]
    record = init_record(tmp_path / "m" / "recognizer.tflite", "recognizer")
    assert record is not None
    assert record["sha256"] == shipped["sha256"]
    assert record["version"] == shipped["version"]
    assert record["made_by"] == shipped["training"]["command"]
    assert record["its_init_from"] == shipped["training"].get("init_from")

    data = bytearray((tmp_path / "m" / "recognizer.tflite").read_bytes())
    data[100] ^= 0xFF
    (tmp_path / "m" / "recognizer.tflite").write_bytes(bytes(data))
    edited = init_record(tmp_path / "m" / "recognizer.tflite", "recognizer")
    assert edited is not None and "made_by" not in edited
    assert init_record(tmp_path / "w.weights.h5", "recognizer") == {
        "file": str(tmp_path / "w.weights.h5")
    }
    assert init_record(None, "recognizer") is None
