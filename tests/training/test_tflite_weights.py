"""Recovering float weights from the shipped int8 models, so they can be fine-tuned."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from agent.vision.detector import INPUT_HEIGHT, INPUT_WIDTH
from agent.vision.recognizer import INPUT_HEIGHT as CROP_HEIGHT
from agent.vision.recognizer import INPUT_WIDTH as CROP_WIDTH
from training import detector_data
from training.detector_model import build_model
from training.export import tflite_runner
from training.recognizer import load_split
from training.recognizer_model import build_model as build_recognizer
from training.tflite_weights import load_chain_into, load_into

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "detector.tflite"
SHIPPED_RECOGNIZER = SHIPPED.with_name("recognizer.tflite")


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return detector_data.make_split(seed=990, n=6, workers=1, progress=False)["x"][..., None]


@pytest.mark.slow
def test_recovered_weights_compute_what_the_int8_model_computes(frames: np.ndarray) -> None:
    """Fine-tuning starts from the shipped model only if the recovered float network
    scores frames as the int8 one does, in inference and in a training step (batch
    statistics); a wrong layer mapping or batch-norm unfolding scores differently."""
    model = build_model(INPUT_HEIGHT, INPUT_WIDTH, deep_mult=2)
    load_into(model, SHIPPED, frames.astype(np.float32))
    int8 = tflite_runner(SHIPPED.read_bytes(), threads=1)(frames.astype(np.uint8))
    for training in (False, True):
        ours = model(frames.astype(np.float32), training=training).numpy()
        # Logits span about +-15; int8 rounding through 30 layers moves them by
        # about a tenth of their spread (1.3.0: 0.39 at 4.3; 1.4.0: 0.45 at 4.1).
        # A wrong layer or an unfolded scale moves them by more than the spread.
        assert np.abs(ours - int8).mean() < 0.15 * int8.std()
        assert ((ours > 0) == (int8 > 0)).mean() > 0.995


@pytest.mark.slow
def test_a_model_of_another_shape_is_refused(frames: np.ndarray) -> None:
    """Loading into a network of another width must fail loudly, naming the layer,
    instead of training from silently scrambled weights."""
    model = build_model(INPUT_HEIGHT, INPUT_WIDTH, deep_mult=1)
    with pytest.raises(ValueError, match="kernel"):
        load_into(model, SHIPPED, frames.astype(np.float32))


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    return load_split(seed=990, n=64, workers=1, cache_dir=None)[0][..., None]


@pytest.mark.slow
def test_recovered_recognizer_computes_what_the_int8_model_computes(crops: np.ndarray) -> None:
    """The recognizer's weights are recovered by layer order, with the Dense head
    exported as 1x1 convolutions, a dilated convolution's bias moved into an ADD and
    the input scaling folded into the first kernel; any of those undone wrongly
    moves the logits by more than their spread (measured: 11.8 at 5.0 before the
    input scaling was unfolded)."""
    alphabet = json.loads((SHIPPED_RECOGNIZER.parent / "manifest.json").read_text())["models"][
        "recognizer"
    ]["alphabet"]
    model = build_recognizer(CROP_HEIGHT, CROP_WIDTH, n_classes=len(alphabet))
    load_chain_into(model, SHIPPED_RECOGNIZER, crops.astype(np.float32))
    int8 = tflite_runner(SHIPPED_RECOGNIZER.read_bytes(), threads=1)(crops)
    for training in (False, True):
        ours = model(crops.astype(np.float32), training=training).numpy()
        # Measured on 1.2.1: 0.19 (inference) and 0.41 (batch statistics) at std 5.0.
        assert np.abs(ours - int8).mean() < 0.15 * int8.std()
        assert (ours.argmax(-1) == int8.argmax(-1)).mean() > 0.98


@pytest.mark.slow
def test_a_recognizer_of_another_width_is_refused(crops: np.ndarray) -> None:
    """A narrower network cannot take the shipped kernels: a loud error naming the
    layer, not a model trained from scrambled weights."""
    model = build_recognizer(CROP_HEIGHT, CROP_WIDTH, width_mult=0.5)
    with pytest.raises(ValueError, match="kernel"):
        load_chain_into(model, SHIPPED_RECOGNIZER, crops.astype(np.float32))
