"""Run the shipped models through the project's own runtime loader and save what they output.

Used by tests/vision/test_legacy_runtime.py twice on the same inputs: as a
script inside a separate ``tflite-runtime`` + ``numpy<2`` venv (where the
loader's ``auto`` must fall back to ``tflite_runtime``), and imported in the
project's venv (``ai_edge_litert``).  It needs only numpy, pydantic and the
project's source (``--repo`` is put on sys.path), never OpenCV, so it runs
in what a Raspberry Pi image with ``tflite-runtime`` has.

Inputs: ``INPUTS/<model>__<case>.npy``, already in the model's input dtype.
Outputs, once per kernel set (``MODES``: the default XNNPACK delegate, and
TFLite's built-in kernels): ``OUT/<model>__<case>__<mode>__raw<i>.npy``
(the interpreter's tensors as they are, int8/uint8),
``OUT/<model>__<case>__<mode>__float<i>.npy`` (what ``TFLiteModel.invoke``
returns) and ``OUT/report.json``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

#: Output file tag -> RuntimeConfig.xnnpack.
MODES = {"xnnpack": True, "builtin": False}


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def run_models(models_dir: Path, inputs_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Invoke every model named by an input file with the ``auto`` runtime; return a report."""
    import agent
    from agent.vision.manifest import load_manifest
    from agent.vision.runtime import RuntimeConfig, TFLiteModel, interpreter_class

    out_dir.mkdir(parents=True, exist_ok=True)
    auto_name, _ = interpreter_class("auto")
    report: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "agent_file": str(Path(agent.__file__).resolve()),
        "auto_runtime": auto_name,
        "ai_edge_litert_importable": importlib.util.find_spec("ai_edge_litert") is not None,
        "packages": {
            d: _dist_version(d) for d in ("ai-edge-litert", "tflite-runtime", "tensorflow-cpu")
        },
        "models": {},
    }
    manifest = load_manifest(models_dir)
    cases: dict[str, list[Path]] = {}
    for path in sorted(inputs_dir.glob("*.npy")):
        cases.setdefault(path.stem.split("__")[0], []).append(path)
    for name, paths in cases.items():
        entry = manifest.entry(name)
        for mode, xnnpack in MODES.items():
            config = RuntimeConfig(type="auto", num_threads=1, xnnpack=xnnpack)
            model = TFLiteModel(entry, config)
            report["models"][name] = {
                "runtime": model.runtime,
                "version": entry.version,
                "sha256": entry.sha256,
                "input_shape": list(model.input_shape),
                "input_dtype": model.input_dtype.name,
                "cases": [p.stem for p in paths],
            }
            for path in paths:
                floats = model.invoke(np.load(path))
                details = model.interpreter.get_output_details()
                for i, (det, flt) in enumerate(zip(details, floats, strict=True)):
                    raw = np.asarray(model.interpreter.get_tensor(det["index"]))
                    np.save(out_dir / f"{path.stem}__{mode}__raw{i}.npy", raw)
                    np.save(out_dir / f"{path.stem}__{mode}__float{i}.npy", flt)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True, help="the project's checkout")
    parser.add_argument("--models-dir", type=Path, help="default: REPO/models")
    parser.add_argument("--inputs", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.repo.resolve()))
    report = run_models(args.models_dir or args.repo / "models", args.inputs, args.out)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
