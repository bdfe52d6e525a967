"""Synthetic VIN crop generator: labels, determinism, every carrier kind, model input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PIL", reason="the generator renders fonts with Pillow (dev/train extras)")

from agent.vin import ALPHABET, MODEL_YEAR_CODES, checksum_valid
from training import crops, dataset, fonts, vins

REPO = Path(__file__).resolve().parents[1]


def test_sampled_vins_are_legal_and_mostly_check_digit_valid() -> None:
    """Labels are the model's ground truth: every one must be a legal VIN.

    About 80 % carry a valid check digit (North American / Chinese habit) and
    the rest do not (European fillers), so the recognizer cannot learn to
    "repair" position 9 from the other characters.
    """
    rng = np.random.default_rng(0)
    sample = [vins.sample_vin(rng) for _ in range(3000)]
    assert all(len(v) == 17 and set(v) <= set(ALPHABET) for v in sample)
    assert all(v[9] in MODEL_YEAR_CODES for v in sample)
    share = np.mean([checksum_valid(v) for v in sample])
    assert 0.75 < share < 0.86
    # Real WMIs dominate, but every alphabet character still occurs at every position.
    for pos in range(17):
        assert len({v[pos] for v in sample}) >= 20


def test_distractors_are_never_valid_vins() -> None:
    """Distractors train a later detector to reject VIN-like text; one valid VIN among them
    would teach it to reject real VINs."""
    rng = np.random.default_rng(1)
    for _ in range(2000):
        d = vins.sample_distractor(rng)
        assert not vins.is_vin_shaped(d), d


@pytest.mark.parametrize("kind", crops.KINDS)
def test_every_kind_renders_a_natural_size_gray_crop(kind: str) -> None:
    """Each carrier renderer must produce a non-blank uint8 line crop, not a fixed 32x320."""
    rng = np.random.default_rng(2)
    for _ in range(3):
        img, vin, got = crops.render_crop(rng, kind=kind)
        assert got == kind
        assert img.dtype == np.uint8 and img.ndim == 2
        assert 8 <= img.shape[0] < img.shape[1]
        assert img.std() > 3, "blank crop"
        assert checksum_valid(vin) or len(vin) == 17


def test_render_crop_is_deterministic_and_honours_arguments() -> None:
    """Same generator state -> same pixels (no global random state, no clock);
    a given VIN and kind are used as-is; unknown kinds are refused."""
    a = crops.render_crop(np.random.default_rng(3), vin="1HGCM82633A004352", kind="document")
    b = crops.render_crop(np.random.default_rng(3), vin="1HGCM82633A004352", kind="document")
    assert np.array_equal(a[0], b[0]) and a[1:] == b[1:] == ("1HGCM82633A004352", "document")
    with pytest.raises(ValueError, match="unknown carrier kind"):
        crops.render_crop(np.random.default_rng(3), kind="tattoo")


@pytest.mark.parametrize("shape", [(12, 90), (40, 600), (20, 900), (140, 200), (32, 320)])
def test_preprocess_gives_model_input(shape: tuple[int, int]) -> None:
    """Any natural crop, shrunk, enlarged or both, becomes a contiguous 32x320 uint8 array."""
    img = np.random.default_rng(4).integers(0, 256, shape, dtype=np.uint8)
    out = crops.preprocess(img)
    assert out.shape == (32, 320) and out.dtype == np.uint8 and out.flags.c_contiguous
    assert crops.preprocess(img, 24, 200).shape == (24, 200)


def test_make_arrays_is_identical_for_any_worker_count() -> None:
    """Training sets are named by seed: the pixels may not depend on how many processes
    made them, or a cached set and a regenerated one would silently differ."""
    one = dataset.make_arrays(5, 20, workers=1, progress=False, chunk=7)
    two = dataset.make_arrays(5, 20, workers=2, progress=False, chunk=7)
    again = dataset.make_arrays(5, 20, workers=1, progress=False, chunk=7)
    for a, b, c in zip(one, two, again, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
        assert np.array_equal(np.asarray(a), np.asarray(c))
    x, y, kinds = one
    assert x.shape == (20, 32, 320) and x.dtype == np.uint8
    assert y.shape == (20, 17) and y.dtype == np.int32
    assert y.min() >= 0 and y.max() < len(ALPHABET)
    assert set(kinds) <= set(crops.KINDS)
    other = dataset.make_arrays(6, 20, workers=1, progress=False, chunk=7)
    assert not np.array_equal(x, other[0])


def test_cache_round_trip_is_keyed_by_generator_version(tmp_path: Path) -> None:
    """A cached set must load back unchanged, under a name that changes with the
    generator version so that stale data is never reused."""
    path = dataset.cache_path(7, 5, cache_dir=tmp_path)
    assert crops.GENERATOR_VERSION in path.name
    made = dataset.load_or_make(7, 5, workers=1, cache_dir=tmp_path, progress=False)
    assert path.exists()
    loaded = dataset.load_or_make(7, 5, workers=1, cache_dir=tmp_path, progress=False)
    assert np.array_equal(made[0], loaded[0]) and np.array_equal(made[1], loaded[1])
    assert made[2] == loaded[2]


def test_font_vetting_rejects_symbol_fonts_and_missing_dirs() -> None:
    """Dingbat fonts render boxes or pictures for letters; they must never label a VIN."""
    assert fonts.discover(("/nonexistent-font-dir",)) == ()
    for info in fonts.discover():
        assert "dingbat" not in info.family.lower()
        assert info.category in {"ocr", "mono", "serif", "sans"}


def test_hershey_fallback_renders_without_font_files(tmp_path: Path) -> None:
    """A bare machine without TTF fonts must still generate crops (tests, CI)."""
    code = (
        "import numpy as np\n"
        "from training import crops, fonts\n"
        "assert all(f.info.path.startswith('hershey:') for f in fonts.faces())\n"
        "rng = np.random.default_rng(0)\n"
        "for k in crops.KINDS:\n"
        "    img, vin, kind = crops.render_crop(rng, kind=k)\n"
        "    assert img.std() > 3, k\n"
    )
    env = {**os.environ, "FONT_DIRS": str(tmp_path), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()


def test_readable_chars_keeps_what_the_recognizer_is_trained_to_output() -> None:
    """Negatives' CTC targets: lower case and punctuation read as nothing; I, O and Q read
    as themselves, or the recognizer would learn to see a label's O as a VIN's 0."""
    assert vins.readable_chars("GVWR: 2350 kg (5181 LB)") == "GVWR23505181LB"
    assert vins.readable_chars("1P4G33W085VI60676") == "1P4G33W085VI60676"
    assert vins.readable_chars("OQI-") == "OQI"
    assert vins.reads_as_vin("1P4G33W085V606761")
    assert not vins.reads_as_vin("1P4G33W085VI60676")  # 17 characters, one an I


def test_negative_lines_never_read_as_seventeen_vin_characters() -> None:
    """A negative read as 17 VIN characters would teach the model that label lines are
    VINs: the opposite of why negatives exist. 17 with an I, O or Q is a useful negative."""
    rng = np.random.default_rng(3)
    targets = [vins.readable_chars(vins.sample_negative_text(rng)) for _ in range(2000)]
    assert not any(vins.reads_as_vin(t) for t in targets)
    lengths = [len(t) for t in targets]
    assert min(lengths) >= 1 and max(lengths) <= vins.MAX_TARGET_CHARS
    assert len(set(lengths)) > 10  # short label lines and long part numbers alike
    assert sum(any(c in "IOQ" for c in t) for t in targets) > 200


def test_negative_arrays_are_padded_targets_from_their_own_stream() -> None:
    """Negatives of a seed must not shift its VIN crops (cached training sets stay valid),
    and their labels are -1-padded targets the CTC loss can read."""
    x, y, _ = dataset.make_arrays(5, 12, workers=1, progress=False, chunk=5, negatives=True)
    assert x.shape == (12, 32, 320) and y.shape == (12, vins.MAX_TARGET_CHARS)
    lengths = (y >= 0).sum(axis=1)
    assert lengths.min() >= 1
    assert not any(n == 17 and (row[:17] < 33).all() for row, n in zip(y, lengths, strict=True))
    for row, n in zip(y, lengths, strict=True):  # targets first, then only padding
        assert (row[:n] >= 0).all() and (row[n:] == -1).all()
    vin_x, _, _ = dataset.make_arrays(5, 12, workers=1, progress=False, chunk=5)
    assert not np.array_equal(x, vin_x)
    wide = dataset.pad_labels(dataset.make_arrays(5, 3, workers=1, progress=False)[1])
    assert wide.shape == (3, vins.MAX_TARGET_CHARS) and (wide[:, 17:] == -1).all()


def test_lookalike_negatives_differ_from_a_vin_only_by_i_o_or_q() -> None:
    """A 33-class recognizer read a VIN printed with an I for a 1 as a VIN (a wrong read
    published); lookalike negatives are the pairs that teach the difference, so each
    must be 17 characters whose only non-VIN characters are I, O or Q."""
    rng = np.random.default_rng(11)
    texts = [vins.sample_lookalike(rng) for _ in range(500)]
    assert all(len(t) == 17 for t in texts)
    assert all(any(c in "IOQ" for c in t) for t in texts)
    assert all(set(t) <= set(ALPHABET + "IOQ") for t in texts)
    assert not any(vins.reads_as_vin(t) for t in texts)
    assert len({sum(c in "IOQ" for c in t) for t in texts}) == 3  # one to three swaps
