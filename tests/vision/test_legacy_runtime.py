"""Issue 9: the shipped models on a Raspberry Pi image's legacy ``tflite-runtime``.

Pi images that ship ``tflite-runtime`` have its last release, 2.14.0, which
is built against numpy 1.x, so such a machine runs the agent with numpy < 2
and no ``ai_edge_litert``.  This test builds exactly that environment (a
separate venv, binary wheels from PyPI, cached between runs), runs the
project's real loader in it, and checks two things the project's own venv
cannot: ``auto`` falls back to ``tflite_runtime`` there and both int8
models load and run; and how close their outputs are to ``ai_edge_litert``'s
on the same inputs.  With TFLite's built-in kernels (``xnnpack = false``)
they are bit-identical.  With the default XNNPACK delegate they are not:
each runtime bundles its own XNNPACK, whose int8 kernels round a few values
differently, and turning XNNPACK off costs 5-40x in speed, so the default
stays and the test pins what that difference may do: nothing to the VIN,
positions, confidence and quads read from the sample.

The venv lives in ``$XDG_CACHE_HOME/vin-agent/`` (default ``~/.cache``),
keyed by a hash of its requirements and the Python version; a changed
requirement makes a new one.  Without PyPI the test is skipped, never passed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.vision.manifest import load_manifest
from tests.conftest import REPO, run_pip
from tests.vision import legacy_runner

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: The legacy environment: tflite-runtime's last release and the numpy it
#: needs, plus pydantic, which agent.vision.runtime imports (RuntimeConfig);
#: its range is the project's own.  No OpenCV: the runner does not need it.
LEGACY_REQUIREMENTS = ("tflite-runtime==2.14.0", "numpy<2", "pydantic>=2.5,<3")
#: CPython versions tflite-runtime 2.14.0 has wheels for.
LEGACY_PYTHONS = ((3, 8), (3, 9), (3, 10), (3, 11))
COMPLETE = ".vin-agent-complete"
RUNNER = Path(legacy_runner.__file__).resolve()


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vin-agent"


def _venv_key() -> str:
    spec = {
        "requirements": LEGACY_REQUIREMENTS,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _usable(venv: Path) -> bool:
    """A venv finished by an earlier run whose interpreter still starts."""
    python = _venv_python(venv)
    if not (venv / COMPLETE).is_file() or not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-I", "-c", "import numpy, pydantic, tflite_runtime.interpreter"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    return probe.returncode == 0


@pytest.fixture(scope="session")
def legacy_python() -> Path:
    """The interpreter of the cached tflite-runtime + numpy<2 venv, made on first use."""
    if sys.version_info[:2] not in LEGACY_PYTHONS:
        pytest.skip(
            f"tflite-runtime 2.14.0 has wheels for CPython 3.8-3.11 only, "
            f"not {platform.python_version()}"
        )
    root = _cache_root()
    root.mkdir(parents=True, exist_ok=True)
    venv = root / f"legacy-venv-{_venv_key()}"
    with (root / f"{venv.name}.lock").open("w") as lock:
        # Two test sessions at once share one venv: the second waits for the first.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _usable(venv):
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
            run_pip(
                [
                    str(_venv_python(venv)),
                    "-m",
                    "pip",
                    "install",
                    "--only-binary=:all:",
                    "--disable-pip-version-check",
                    "--no-input",
                    "--timeout",
                    "30",
                    "--retries",
                    "2",
                    *LEGACY_REQUIREMENTS,
                ],
                "installing the legacy runtime venv",
            )
            (venv / COMPLETE).write_text(json.dumps(LEGACY_REQUIREMENTS) + "\n")
    return _venv_python(venv)


def _write_inputs(inputs: Path) -> None:
    """Deterministic inputs per model, shaped and typed as the manifest says.

    One real image (a shipped sample scene, letterboxed for the detector; the
    rectified crop of its labelled VIN quad, preprocessed, for the recognizer)
    and one seeded uniform-noise tensor each.
    """
    import cv2

    from agent.reader import pad_quad
    from agent.vision.geometry import letterbox, rectify
    from agent.vision.recognizer import preprocess

    manifest = load_manifest(REPO / "models")
    rng = np.random.default_rng(9)
    frame = cv2.imread(str(REPO / "samples" / "scenes" / "scene_0000.jpg"))
    assert frame is not None, "samples/scenes/scene_0000.jpg is missing"
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    quads = json.loads((REPO / "samples" / "scenes" / "quads.json").read_text())
    quad = np.asarray(quads["scene_0000.jpg"][0]["quad"], np.float32)
    inputs.mkdir()
    for name in ("detector", "recognizer"):
        spec = manifest.entry(name).info["input"]
        shape, dtype = tuple(spec["shape"]), np.dtype(spec["dtype"])
        _, height, width, _ = shape
        if name == "detector":
            image, _ = letterbox(gray, width, height)
        else:
            image = preprocess(rectify(frame, pad_quad(quad)), height, width)  # as the reader
        info = np.iinfo(dtype)
        noise = rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dtype)
        np.save(inputs / f"{name}__scene.npy", image.reshape(shape).astype(dtype))
        np.save(inputs / f"{name}__noise.npy", noise)


@pytest.fixture(scope="module")
def runs(legacy_python: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same inputs through the runner in the legacy venv and in this one."""
    tmp = tmp_path_factory.mktemp("legacy-runtime")
    inputs, legacy_out, main_out = tmp / "inputs", tmp / "legacy", tmp / "main"
    _write_inputs(inputs)
    # -I already ignores PYTHON* variables; dropping these keeps the venv's own identity.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    runner_args = ["--repo", str(REPO), "--inputs", str(inputs), "--out", str(legacy_out)]
    proc = subprocess.run(
        [str(legacy_python), "-I", str(RUNNER), *runner_args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, f"legacy runner failed:\n{proc.stdout}\n{proc.stderr}"
    return {
        "legacy": json.loads((legacy_out / "report.json").read_text()),
        "main": legacy_runner.run_models(REPO / "models", inputs, main_out),
        "legacy_out": legacy_out,
        "main_out": main_out,
    }


def test_legacy_venv_loader_falls_back_to_tflite_runtime(runs: dict[str, Any]) -> None:
    """Without ai_edge_litert, auto picks tflite_runtime and both models load and run."""
    legacy, main = runs["legacy"], runs["main"]
    # The environment is the one issue 9 is about, and the project's source was used.
    assert legacy["numpy"].startswith("1."), legacy
    assert legacy["packages"]["tflite-runtime"] == "2.14.0", legacy
    assert not legacy["ai_edge_litert_importable"], legacy
    assert Path(legacy["agent_file"]).is_relative_to(REPO / "agent"), legacy
    # The real fallback order: ai_edge_litert is absent, so auto chose tflite_runtime.
    assert legacy["auto_runtime"] == "tflite_runtime", legacy
    assert {m["runtime"] for m in legacy["models"].values()} == {"tflite_runtime"}, legacy
    # ...while this venv, which has it, uses ai_edge_litert.
    assert main["auto_runtime"] == "ai_edge_litert", main
    assert {m["runtime"] for m in main["models"].values()} == {"ai_edge_litert"}, main
    for name in ("detector", "recognizer"):
        for key in ("sha256", "input_shape", "input_dtype", "cases"):
            assert legacy["models"][name][key] == main["models"][name][key], (name, key)

    produced = sorted(p.name for p in runs["main_out"].glob("*.npy"))
    assert produced == sorted(p.name for p in runs["legacy_out"].glob("*.npy"))
    # Two models x two cases x two kernel sets x (raw + float) x one output tensor each.
    assert len(produced) == 16, produced
    for fname in produced:
        ours, theirs = np.load(runs["main_out"] / fname), np.load(runs["legacy_out"] / fname)
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, fname
        assert np.isfinite(theirs.astype(np.float64)).all(), fname


def _pairs(runs: dict[str, Any], pattern: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    paths = sorted(runs["main_out"].glob(pattern))
    assert paths, pattern
    return [(p.name, np.load(p), np.load(runs["legacy_out"] / p.name)) for p in paths]


def test_builtin_kernels_bit_identical_to_ai_edge_litert(runs: dict[str, Any]) -> None:
    """With ``xnnpack = false`` the Pi's old runtime computes exactly what the tested one does.

    Metrics in the manifest are measured with ai_edge_litert (training/export.py);
    bit-identical outputs carry them over unchanged.  This held only after the
    detector lost its dilated convolutions (1.3.0): tflite-runtime 2.14 computes
    the batched depthwise convolution they are lowered to 1 LSB differently.
    """
    mismatches = []
    for name, ours, theirs in _pairs(runs, "*__builtin__raw*.npy"):
        if not np.array_equal(ours, theirs):
            diff = np.abs(ours.astype(np.int64) - theirs.astype(np.int64))
            mismatches.append(f"{name}: {np.count_nonzero(diff)} of {diff.size}, max {diff.max()}")
    assert not mismatches, "\n".join(mismatches)


def test_xnnpack_outputs_differ_but_read_the_same(
    runs: dict[str, Any],
) -> None:
    """The default (XNNPACK) path on the old runtime reads what the tested runtime reads.

    The two bundled XNNPACK versions round differently (LSB counts say little:
    a step is 0.13 nats on the recognizer's output), so what is checked is the
    decisions built on the outputs, decoded here with the agent's own code:
    the recognizer's VIN, changed positions and confidence on the sample
    crop, and the detector's quads on the sample frame.
    """
    differ = 0
    for _, ours, theirs in _pairs(runs, "*__xnnpack__raw*.npy"):
        differ += int(np.count_nonzero(ours.astype(np.int64) != theirs.astype(np.int64)))
    assert differ > 0  # two XNNPACK builds really ran (else the builtin test says it all)

    from agent.vision.calibration import Calibrator
    from agent.vision.ctc import align
    from agent.vision.decoding import decode
    from agent.vision.detector import quads_from_map, sigmoid
    from agent.vision.recognizer import vin_columns

    manifest = load_manifest(REPO / "models")
    calibrator = Calibrator.from_manifest(manifest.entry("recognizer").info.get("calibration"))
    threshold = float(manifest.entry("detector").info.get("threshold", 0.5))
    main_out, legacy_out = runs["main_out"], runs["legacy_out"]
    logits = [np.load(d / "recognizer__scene__xnnpack__float0.npy") for d in (main_out, legacy_out)]
    reads = [decode(align(vin_columns(x.reshape(-1, x.shape[-1])))[0]) for x in logits]
    assert reads[0].vin == reads[1].vin
    assert reads[0].changed_positions == reads[1].changed_positions
    conf = [calibrator.confidence(r) for r in reads]
    assert abs(conf[0] - conf[1]) <= 0.01, conf

    maps = [np.load(d / "detector__scene__xnnpack__float0.npy") for d in (main_out, legacy_out)]
    quads = [quads_from_map(sigmoid(m[0, ..., 0]), threshold) for m in maps]
    assert len(quads[0]) == len(quads[1]) >= 1
    for (qa, _), (qb, _) in zip(quads[0], quads[1], strict=True):
        # The same line: a component may gain or lose a map pixel at an end.
        (ax0, ay0), (ax1, ay1) = np.min(qa, axis=0), np.max(qa, axis=0)
        (bx0, by0), (bx1, by1) = np.min(qb, axis=0), np.max(qb, axis=0)
        inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
        union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
        assert inter / union >= 0.8, (qa, qb)
