"""Refit a shipped recognizer's confidence calibrator; the .tflite file stays as it is.

    python -m training.recalibrate --models-dir models            # measure old vs new
    python -m training.recalibrate --models-dir models --write    # and update the manifest

The calibrator is a logistic map of decoding features fitted on held-out
generated crops (``training.calibrate``). Refitting it does not need the
network's float weights or a training run: the int8 model is run on the
calibration crops (VIN lines, and lines that hold no VIN whose reads pass the
VIN rules), the map is fitted again and measured on the test seed, and with
``--write`` the manifest entry gets the new map and metrics. The file's
SHA-256 is unchanged.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

from agent.vision.calibration import Calibrator
from training.calibrate import NEG_CALIB_DEFAULT, fit_calibrator
from training.export import tflite_runner
from training.recognizer import load_split
from training.recognizer_eval import (
    calibrated_metrics,
    evaluate_logits,
    labels_to_text,
    rule_passing,
)

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models-dir", type=Path, default=Path("models"))
    p.add_argument("--calib-seed", type=int, default=2, help="calibration crops seed")
    p.add_argument("--n-calib", type=int, default=8_000)
    p.add_argument(
        "--n-neg-calib",
        type=int,
        default=NEG_CALIB_DEFAULT,
        help="lines that are not VINs whose reads pass the VIN rules are fitted as wrong",
    )
    p.add_argument("--test-seed", type=int, default=3, help="held-out test crops seed")
    p.add_argument("--n-test", type=int, default=5_000)
    p.add_argument("--n-neg-test", type=int, default=2_000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="data generation processes")
    p.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "vin-agent")
    p.add_argument("--write", action="store_true", help="update the manifest entry")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    manifest_path = args.models_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    entry = manifest["models"]["recognizer"]
    run = tflite_runner((args.models_dir / entry["file"]).read_bytes(), threads=args.threads)

    cache = args.cache_dir
    x_cal, y_cal, _ = load_split(args.calib_seed, args.n_calib, args.workers, cache)
    x_neg_cal, _, _ = load_split(args.calib_seed, args.n_neg_calib, args.workers, cache, True)
    x_test, y_test, _ = load_split(args.test_seed, args.n_test, args.workers, cache)
    x_neg_test, _, _ = load_split(args.test_seed, args.n_neg_test, args.workers, cache, True)
    truth = labels_to_text(y_test)

    decoded = evaluate_logits(run(x_cal[..., None]), labels_to_text(y_cal))["decoded"]
    negatives = rule_passing(run(x_neg_cal[..., None]))
    logger.info("%d of %d negative lines pass the VIN rules", len(negatives), len(x_neg_cal))
    new, fit = fit_calibrator(decoded, labels_to_text(y_cal), negatives)
    old = Calibrator.from_manifest(entry.get("calibration"))
    test_logits, neg_logits = run(x_test[..., None]), run(x_neg_test[..., None])
    before, _ = calibrated_metrics(test_logits, truth, neg_logits, old)
    after, _ = calibrated_metrics(test_logits, truth, neg_logits, new)
    for key in after:
        logger.info("%s: %s -> %s", key, before[key], after[key])
    if args.write:
        entry["calibration"] = new.as_manifest()
        entry["metrics"].update(after)
        entry["metrics"]["calibration_fit"] = fit
        entry["training"]["calibration"] = {
            "command": "python -m training.recalibrate " + shlex.join(sys.argv[1:]),
            "calib_seed": args.calib_seed,
            "n_calib": len(x_cal),
            "n_negatives_calib": len(x_neg_cal),
            "n_negatives_fitted": len(negatives),
            "before": {k: before[k] for k in ("ece", "wrong_published_by_reader")}
            | {"negatives_published": before["negatives_published"]},
        }
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
        logger.info("wrote the calibration of %s into %s", entry["file"], manifest_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
