"""The confidence calibrator's fit, on reads decoded by the agent's own decoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.vin import ALPHABET
from agent.vision.decoding import Decoded, decode
from tests.conftest import REPO
from training import recalibrate
from training.calibrate import fit_calibrator
from training.vins import sample_vin


def _read(rng: np.random.Generator, vin: str, unsure: int) -> Decoded:
    """Decode per-position probabilities peaked on ``vin``, with ``unsure`` positions
    where a wrong character is about as likely as the right one."""
    probs = rng.dirichlet(np.full(len(ALPHABET), 0.3), size=17) * 0.1
    for i, c in enumerate(vin):
        probs[i, ALPHABET.index(c)] += 0.9
    for i in rng.choice(17, size=unsure, replace=False):
        other = (ALPHABET.index(vin[i]) + 1 + int(rng.integers(len(ALPHABET) - 1))) % len(ALPHABET)
        probs[i, other] += float(rng.uniform(0.6, 1.2))
    return decode(probs / probs.sum(axis=1, keepdims=True), "auto", k=5)


def test_lines_without_a_vin_are_fitted_as_wrong_reads() -> None:
    """Fitted on VIN crops alone, a confident read after the check digit settled an unsure
    position looks like a corrected error; a distractor forced into a VIN looks the same.
    Reads of lines that hold no VIN, fitted as wrong, must pull such reads' confidence
    down, and the fit metrics stay those of the VIN crops."""
    rng = np.random.default_rng(5)
    vins = [sample_vin(rng) for _ in range(600)]
    decoded = [_read(rng, v, int(rng.integers(0, 3))) for v in vins]
    # Lines that are not VINs: read with two unsure positions, never the truth.
    negatives = [_read(rng, sample_vin(rng), 2) for _ in range(150)]
    plain, fit_plain = fit_calibrator(decoded, vins)
    with_neg, fit_neg = fit_calibrator(decoded, vins, negatives)
    before = np.mean([plain.confidence(d) for d in negatives])
    after = np.mean([with_neg.confidence(d) for d in negatives])
    assert after < before - 0.05
    assert fit_neg["n"] == fit_plain["n"] == len(vins)
    assert fit_neg["accuracy"] == fit_plain["accuracy"]
    assert fit_neg["n_negatives"] == len(negatives)
    assert fit_neg["negatives_mean_confidence"] == np.float64(after)


@pytest.mark.slow
def test_recalibrate_refits_the_shipped_map_and_leaves_the_model_file(tmp_path: Path) -> None:
    """``training.recalibrate --write`` changes the manifest's calibration and metrics only:
    the int8 file, its SHA-256 and the checksum verification stay as they were."""
    import json
    import shutil

    from agent.vision.manifest import load_manifest, verify_all

    models = tmp_path / "models"
    shutil.copytree(REPO / "models", models)
    before = json.loads((models / "manifest.json").read_text())["models"]["recognizer"]
    args = ["--models-dir", str(models), "--n-calib", "96", "--n-neg-calib", "96"]
    args += ["--n-test", "48", "--n-neg-test", "48", "--threads", "1", "--workers", "1"]
    assert recalibrate.main([*args, "--cache-dir", str(tmp_path / "cache"), "--write"]) == 0
    after = json.loads((models / "manifest.json").read_text())["models"]["recognizer"]
    assert after["sha256"] == before["sha256"]
    assert after["calibration"]["coef"] != before["calibration"]["coef"]
    assert after["training"]["calibration"]["n_negatives_calib"] == 96
    assert after["metrics"]["n_negatives_test"] == 48
    assert all(r["ok"] for r in verify_all(load_manifest(models)))
