"""The TFLite runtime fallback order of ``auto``, without any real runtime.

Pi images ship ``tflite_runtime`` and training machines full TensorFlow
instead of ``ai_edge_litert``, so the loader's order and its error message
decide whether the agent starts there at all.  Runtimes are faked or blocked
in ``sys.modules`` so this holds whatever this venv has installed;
tests/vision/test_legacy_runtime.py checks the same with the real packages.
"""

from __future__ import annotations

import sys
import types

import pytest

from agent.vision.manifest import ModelError
from agent.vision.runtime import RUNTIMES, interpreter_class

#: Every module the loader may import for each runtime, parents included.
MODULES = {
    "ai_edge_litert": ("ai_edge_litert", "ai_edge_litert.interpreter"),
    "tflite_runtime": ("tflite_runtime", "tflite_runtime.interpreter"),
    "tensorflow": ("tensorflow", "tensorflow.lite"),
}


def _block(monkeypatch: pytest.MonkeyPatch, runtime: str) -> None:
    """Make importing ``runtime`` fail as if it were not installed (None in sys.modules)."""
    for name in MODULES[runtime]:
        monkeypatch.setitem(sys.modules, name, None)


def _fake(monkeypatch: pytest.MonkeyPatch, runtime: str) -> type:
    """Install a stand-in module for ``runtime`` whose Interpreter is a unique class."""
    interpreter = type(f"{runtime}Interpreter", (), {})
    parent, child = MODULES[runtime]
    monkeypatch.setitem(sys.modules, parent, types.ModuleType(parent))
    module = types.ModuleType(child)
    module.Interpreter = interpreter
    monkeypatch.setitem(sys.modules, child, module)
    return interpreter


def test_order_is_litert_then_tflite_runtime_then_tensorflow() -> None:
    """The documented preference, as the dict order that ``auto`` walks."""
    assert list(RUNTIMES) == ["ai_edge_litert", "tflite_runtime", "tensorflow"]
    assert set(RUNTIMES) == set(MODULES)


def test_auto_prefers_ai_edge_litert_when_everything_is_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With all three importable, ``auto`` takes ai_edge_litert and reports it."""
    classes = {name: _fake(monkeypatch, name) for name in MODULES}
    assert interpreter_class("auto") == ("ai_edge_litert", classes["ai_edge_litert"])


def test_auto_falls_back_to_tflite_runtime_without_ai_edge_litert(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Pi image: no ai_edge_litert, tflite_runtime present -> tflite_runtime, not tensorflow."""
    _block(monkeypatch, "ai_edge_litert")
    tflite = _fake(monkeypatch, "tflite_runtime")
    _fake(monkeypatch, "tensorflow")
    assert interpreter_class("auto") == ("tflite_runtime", tflite)


def test_auto_falls_back_to_tensorflow_last(monkeypatch: pytest.MonkeyPatch) -> None:
    """A training machine with only TensorFlow still runs the models."""
    _block(monkeypatch, "ai_edge_litert")
    _block(monkeypatch, "tflite_runtime")
    tf = _fake(monkeypatch, "tensorflow")
    assert interpreter_class("auto") == ("tensorflow", tf)


def test_no_runtime_names_the_packages_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """With none importable the error says what to pip install and why each one failed."""
    for name in MODULES:
        _block(monkeypatch, name)
    with pytest.raises(ModelError) as err:
        interpreter_class("auto")
    message = str(err.value)
    assert "pip install ai-edge-litert" in message
    assert "tflite-runtime" in message
    for name in MODULES:
        assert f"{name}:" in message, message


def test_explicit_runtime_does_not_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking for tflite_runtime on a machine without it fails instead of silently using another."""
    _fake(monkeypatch, "ai_edge_litert")
    _block(monkeypatch, "tflite_runtime")
    with pytest.raises(ModelError, match="tflite_runtime: "):
        interpreter_class("tflite_runtime")
    with pytest.raises(ModelError, match="unknown runtime 'tflite'"):
        interpreter_class("tflite")


def test_builtin_kernels_read_the_samples_as_well_as_xnnpack() -> None:
    """``xnnpack = false`` (bit-exact across runtime versions) really changes the kernels,
    and reads as well.

    The two kernel sets round differently (on recognizer 1.2.0, whose tanh head
    XNNPACK approximates its own way, by a median 0 and at most 151 LSB) and
    read 83.9 % of 1,500 held-out crops right either way, but single hard
    crops can come out differently.  Here: every labelled VIN of the samples,
    rectified as the reader crops it, read both ways.
    """
    import json

    import cv2
    import numpy as np

    from agent.reader import pad_quad
    from agent.vision.ctc import align
    from agent.vision.decoding import decode
    from agent.vision.geometry import rectify
    from agent.vision.manifest import load_manifest
    from agent.vision.recognizer import preprocess, vin_columns
    from agent.vision.runtime import RuntimeConfig, TFLiteModel
    from tests.conftest import REPO

    scenes = REPO / "samples" / "scenes"
    entry = load_manifest().entry("recognizer")  # the shipped models
    fast, exact = (
        TFLiteModel(entry, RuntimeConfig(num_threads=1, xnnpack=x)) for x in (True, False)
    )
    _, h, w, _ = fast.input_shape
    right = {"xnnpack": 0, "builtin": 0}
    differ = 0
    labels = json.loads((scenes / "quads.json").read_text())
    for name, lines in labels.items():
        frame = cv2.imread(str(scenes / name))
        assert frame is not None, name
        for line in lines:
            quad = pad_quad(np.asarray(line["quad"], np.float32))  # as the reader crops
            crop = preprocess(rectify(frame, quad), h, w)
            x = crop[None, :, :, None].astype(fast.input_dtype)
            (a,), (b,) = fast.invoke(x), exact.invoke(x)
            differ += not np.array_equal(a, b)
            for key, z in (("xnnpack", a), ("builtin", b)):
                right[key] += (
                    decode(align(vin_columns(z.reshape(-1, z.shape[-1])))[0]).vin == line["vin"]
                )
    assert differ > 0  # really other kernels
    assert abs(right["xnnpack"] - right["builtin"]) <= 1, right
    assert right["builtin"] >= len(labels) // 2, right  # and the model does read them
