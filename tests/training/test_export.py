"""Promoting a reviewed model from a training directory into the shipped models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agent.vision.manifest import load_manifest, verify_all
from training.export import promote

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
