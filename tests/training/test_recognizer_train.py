"""The training pipeline end to end on a tiny budget: data -> Keras -> int8 TFLite -> manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the train extra is not installed")

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_tiny_training_exports_int8_model_the_agent_loads(tmp_path: Path) -> None:
    """A few training steps must yield a fully int8 model that the agent verifies and runs.

    This proves the pipeline (generator, training, int8 conversion, calibration,
    manifest with checksum) without asserting accuracy, which a few steps cannot give.
    """
    from agent.vision.manifest import load_manifest, verify_all
    from agent.vision.recognizer import Recognizer
    from training import recognizer as train_recognizer

    out = tmp_path / "models"
    assert (
        train_recognizer.main(
            ["--tiny", "--out", str(out), "--threads", "1", "--workers", "1", "--n-neg", "32"]
        )
        == 0
    )

    manifest = load_manifest(out)
    assert [r["ok"] for r in verify_all(manifest)] == [True]
    entry = json.loads((out / "manifest.json").read_text())["models"]["recognizer"]
    assert entry["training"]["generator_version"]
    # The output holds I, O and Q (after the VIN characters) and the blank last.
    assert entry["alphabet"] == "0123456789ABCDEFGHJKLMNPRSTUVWXYZIOQ"
    assert entry["output"]["shape"][-1] == 37 and entry["output"]["blank_index"] == 36
    metrics = entry["metrics"]
    assert {"int8_exact", "float_exact", "ece"} <= set(metrics)
    # Negatives went into training and the reader's rules were applied to held-out ones.
    assert entry["training"]["n_negatives"] == 32 and metrics["n_negatives_test"] == 32
    assert sum(metrics["negatives_by_reason"].values()) == 32
    assert 0.0 <= metrics["negatives_published"] <= 1.0
    assert 0.0 <= metrics["wrong_published_by_reader"] <= metrics["published_by_reader"] <= 1.0

    rec = Recognizer(manifest)
    assert rec.model.input_dtype == np.uint8
    details = rec.model.interpreter.get_tensor_details()
    float_tensors = [d["name"] for d in details if d["dtype"] == np.float32]
    assert not float_tensors, f"not fully integer-quantised: {float_tensors[:5]}"
    read = rec.read(np.full((40, 400), 200, np.uint8))
    assert len(read.vin) == 17 and 0.0 <= read.confidence <= 1.0


def test_a_33_class_model_widens_to_i_o_and_q_without_changing_its_reads(
    tmp_path: Path,
) -> None:
    """Recognizers up to 1.3 were trained without I, O and Q; training continues from
    them, so their weights must load into the wider output with every VIN character's
    and the blank's logits unchanged, and each new letter starting from its lookalike."""
    from training.recognizer_model import LEGACY_CLASSES, build_model, load_init

    legacy = build_model(n_classes=LEGACY_CLASSES)
    weights = tmp_path / "legacy.weights.h5"
    legacy.save_weights(weights)
    wide = build_model()
    assert load_init(wide, weights)  # each new letter starts 2 below its lookalike
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 320, 1)).astype(np.float32)
    a, b = legacy(x, training=False).numpy(), wide(x, training=False).numpy()
    assert a.shape[-1] == 34 and b.shape[-1] == 37
    np.testing.assert_allclose(b[..., :33], a[..., :33], atol=1e-5)
    np.testing.assert_allclose(b[..., 36], a[..., 33], atol=1e-5)  # the blank, moved last
    one, zero = 1, 0  # class indices of "1" and "0"
    np.testing.assert_allclose(b[..., 33], np.clip(a[..., one] - 2, -16, 16), atol=1e-4)
    np.testing.assert_allclose(b[..., 34], np.clip(a[..., zero] - 2, -16, 16), atol=1e-4)
