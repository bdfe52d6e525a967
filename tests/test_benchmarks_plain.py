"""benchmarks.plain: the second, evaluation-only generator of plainly printed VINs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from agent import vin


def test_plain_scenes_are_labelled_and_repeatable(tmp_path: Path) -> None:
    """``vin-agent eval`` reads what it writes (labels.csv, quads.json), every label is a
    well-formed VIN inside its image, and one seed always renders the same images."""
    pytest.importorskip("PIL", reason="Pillow comes with the train or bench extra")
    # benchmarks/ lives in the checkout, not in the wheel (arm64-check tests the wheel).
    plain = pytest.importorskip("benchmarks.plain", reason="needs the repository checkout")

    for out in (tmp_path / "a", tmp_path / "b"):
        assert plain.main(["--out", str(out), "--n", "4", "--seed", "9"]) == 0
    with (tmp_path / "a" / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["kind"] for r in rows] == ["plain"] * 4
    quads = json.loads((tmp_path / "a" / "quads.json").read_text())
    import cv2

    for row in rows:
        assert len(row["vin"]) == vin.VIN_LENGTH and set(row["vin"]) <= set(vin.ALPHABET)
        image = cv2.imread(str(tmp_path / "a" / row["file"]))
        assert image is not None
        (entry,) = quads[row["file"]]
        quad = np.array(entry["quad"])
        assert entry["vin"] == row["vin"] and quad.shape == (4, 2)
        h, w = image.shape[:2]
        assert (quad[:, 0] > -5).all() and (quad[:, 0] < w + 5).all() and (quad[:, 1] < h).all()
        again = (tmp_path / "b" / row["file"]).read_bytes()
        assert again == (tmp_path / "a" / row["file"]).read_bytes()
