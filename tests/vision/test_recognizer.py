"""The recognizer's output columns: both model alphabets, and I, O, Q left out of a VIN."""

from __future__ import annotations

import numpy as np
import pytest

from agent.vin import ALPHABET, NON_VIN_LETTERS
from agent.vision.ctc import align
from agent.vision.decoding import decode
from agent.vision.recognizer import MODEL_ALPHABETS, vin_columns

VIN = "1HGCM82633A004352"
WIDE = ALPHABET + NON_VIN_LETTERS


def logit_columns(text: str, alphabet: str, peak: float = 8.0) -> np.ndarray:
    """Logits of a model that read ``text`` (any characters of ``alphabet``), two
    columns per character and a blank column between, blank last."""
    blank = len(alphabet)
    cols = []

    def col(cls: int) -> np.ndarray:
        v = np.zeros(blank + 1)
        v[cls] = peak
        return v

    cols += [col(blank)] * 4
    for c in text:
        cols += [col(alphabet.index(c))] * 2 + [col(blank)]
    cols += [col(blank)] * 4
    return np.stack(cols)


def test_the_wide_alphabet_extends_the_vin_alphabet() -> None:
    """Models up to 1.3 and from 1.4 share the first 33 classes, so the agent reads both."""
    assert MODEL_ALPHABETS == (ALPHABET, WIDE)
    assert not set(NON_VIN_LETTERS) & set(ALPHABET)


def test_both_alphabets_give_the_same_columns_for_a_vin() -> None:
    """A VIN read by a 33-class and by a 36-class model aligns and decodes the same."""
    narrow = vin_columns(logit_columns(VIN, ALPHABET))
    wide = vin_columns(logit_columns(VIN, WIDE))
    assert narrow.shape == wide.shape == (narrow.shape[0], len(ALPHABET) + 1)
    assert decode(align(narrow)[0]).vin == decode(align(wide)[0]).vin == VIN


def test_an_o_keeps_its_mass_out_of_the_vin_characters() -> None:
    """Why the wide alphabet exists: a distractor's O must not count as a 0 at that position.

    The 33-class model can only put an O's ink on 0; the 36-class model puts it on O,
    and what the agent keeps at that position is small, so the read is weak there.
    """
    text = VIN[:11] + "O" + VIN[12:]  # position 12 was a 0
    narrow_text = VIN  # the 33-class model reads the O as 0
    narrow = align(vin_columns(logit_columns(narrow_text, ALPHABET)))[0]
    wide_logits = logit_columns(text, WIDE)
    wide_cols = vin_columns(wide_logits)
    assert wide_cols.sum(axis=1).min() < 0.05  # the O column: nearly all its mass is gone
    wide = align(wide_cols)[0]
    assert wide[11].sum() < 0.05 < narrow[11].sum()
    assert decode(wide).log_prob < decode(narrow).log_prob - 5


def test_other_output_widths_are_refused() -> None:
    """A model of an alphabet the agent does not know must fail loudly, not be misread."""
    with pytest.raises(ValueError, match="output classes"):
        vin_columns(np.zeros((80, 30)))


def test_fused_views_keep_what_they_agree_on_and_doubt_the_rest() -> None:
    """The second look must lower a position's probability where the framings disagree
    (so the calibrated confidence falls) and leave a position they agree on as it was,
    mass included: a fused read may not look surer than its views."""
    from agent.vision.recognizer import fuse_views

    agree = np.full((17, 33), 0.01 / 32)
    agree[:, 5] = 0.99
    other = agree.copy()
    other[3] = 0.01 / 32
    other[3, 7] = 0.99
    fused = fuse_views([agree, agree, other])
    assert np.allclose(fused[0], agree[0])
    assert np.allclose(fused.sum(axis=1), [*[1.0] * 17])
    assert fused[3].max() < 0.9 and fused[3].argmax() == 5
    halved = agree * 0.5  # a position half likely to hold no character at all
    assert np.allclose(fuse_views([halved, halved]).sum(axis=1), 0.5)


def test_reframed_views_are_the_crop_moved_a_little() -> None:
    """Each view must stay a crop of the same line (same height, width within a few
    per cent) or the model would read another line, not the same one framed anew."""
    from agent.vision.recognizer import reframed

    crop = np.random.default_rng(0).integers(0, 255, (48, 480), dtype=np.uint8)
    views = reframed(crop)
    assert len(views) == 3
    for v in views:
        assert v.shape[0] == 48 and abs(v.shape[1] - 480) <= 480 // 15
    assert np.array_equal(views[1], crop[:, 12:468])
    assert np.array_equal(views[2][3:], crop[:-3])
