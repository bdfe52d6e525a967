"""The detector training pipeline on a tiny budget: scenes -> Keras -> int8 -> manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the train extra is not installed")

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_tiny_training_writes_a_detector_the_runtime_loads_and_runs(tmp_path: Path) -> None:
    """One epoch on a few dozen scenes must yield a fully int8 detector whose manifest
    verifies and which ``Detector`` runs on a full-size frame.  It proves the pipeline
    (scene generation, target maps, training, int8 export, threshold, evaluation through
    the runtime, manifest with checksum) without asserting accuracy."""
    from agent.vision.detector import Detector
    from agent.vision.manifest import load_manifest, verify_all
    from training import detector as train_detector
    from training.scenes import render_scene, scene_rng

    out = tmp_path / "models"
    argv = ["--tiny", "--out", str(out), "--threads", "1"]
    assert train_detector.main(argv) == 0

    manifest = load_manifest(out)
    assert [r["ok"] for r in verify_all(manifest)] == [True]
    entry = json.loads((out / "manifest.json").read_text())["models"]["detector"]
    assert entry["training"]["generator_version"].startswith("scenes-")
    assert 0.0 < entry["threshold"] < 1.0
    metrics = entry["metrics"]
    assert {"recall", "precision", "recall_by_height", "recall_by_rotation", "latency"} <= set(
        metrics
    )

    det = Detector(manifest)
    assert det.model.input_dtype == np.uint8
    assert det.model.input_shape == (1, 384, 640, 1)
    details = det.model.interpreter.get_tensor_details()
    float_tensors = [d["name"] for d in details if d["dtype"] == np.float32]
    assert not float_tensors, f"not fully integer-quantised: {float_tensors[:5]}"
    frame = render_scene(scene_rng(77, 0), 1280, 720, 0).image
    found = det.detect(frame)
    for d in found:
        assert d.quad.shape == (4, 2) and 0.0 <= d.score <= 1.0
