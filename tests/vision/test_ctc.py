"""CTC columns -> 17 slots: the alignment must recover the characters CTC encodes."""

from __future__ import annotations

import numpy as np
import pytest

from agent.reader import MAX_FORCED_COST
from agent.vin import ALPHABET
from agent.vision.calibration import UNCHECKED_MIN_CONFIDENCE, required_confidence
from agent.vision.ctc import (
    BLANK,
    AlignmentError,
    align,
    count_characters,
    segments,
    slot_probabilities,
)

VIN = "1HGCM82633A004352"  # has repeated neighbours (33, 00) that need blanks between


def ctc_columns(text: str, per_char: int = 2, gap: int = 1, lead: int = 5, p: float = 0.95):
    """Columns as a trained CTC model would emit them: runs of a character, blanks between."""
    cols = []

    def col(cls: int) -> np.ndarray:
        v = np.full(BLANK + 1, (1 - p) / BLANK)
        v[cls] = p
        return v

    cols += [col(BLANK)] * lead
    for i, c in enumerate(text):
        cols += [col(ALPHABET.index(c))] * per_char
        if i + 1 < len(text) and (gap or text[i + 1] == c):
            cols += [col(BLANK)] * max(gap, 1)
    cols += [col(BLANK)] * lead
    return np.stack(cols)


@pytest.mark.parametrize(("per_char", "gap"), [(1, 1), (2, 1), (3, 0), (1, 0)])
def test_alignment_recovers_the_vin(per_char: int, gap: int) -> None:
    cols = ctc_columns(VIN, per_char, gap)
    probs = slot_probabilities(cols)
    assert probs.shape == (17, 33)
    assert "".join(ALPHABET[i] for i in probs.argmax(1)) == VIN
    assert len(segments(cols)) == 17


def test_extra_text_in_the_crop_is_forced_into_17_slots() -> None:
    """A prefix the model half-emits must not shift the VIN: the weakest run loses."""
    cols = ctc_columns(VIN)
    weak = np.full(BLANK + 1, 0.01)
    weak[BLANK] = 0.55
    weak[ALPHABET.index("N")] = 0.45 - 0.01 * (BLANK - 1)
    cols = np.vstack([weak[None], cols])
    assert "".join(ALPHABET[i] for i in slot_probabilities(cols).argmax(1)) == VIN


def test_too_few_columns_is_an_error() -> None:
    with pytest.raises(AlignmentError):
        slot_probabilities(np.full((10, BLANK + 1), 1 / (BLANK + 1)))


def test_forcing_17_characters_out_of_16_or_18_is_costly() -> None:
    """A 16- or 18-character line (a part number, a VIN-like distractor) must reveal itself:
    forcing it into 17 slots costs whole confident characters, a real VIN costs nothing."""
    # A trained model is near certain about the blanks between characters (p ~ 0.999):
    # inventing or swallowing a character means overruling at least one such column.
    _, cost = align(ctc_columns(VIN, p=0.999))
    assert cost == pytest.approx(0.0, abs=1e-6)
    _, cost16 = align(ctc_columns(VIN[:16], p=0.999))
    _, cost18 = align(ctc_columns(VIN + "7", p=0.999))
    assert min(cost16, cost18) > MAX_FORCED_COST
    _, unsure = align(ctc_columns(VIN[:16], p=0.9))  # an unsure model pays less
    assert unsure < min(cost16, cost18)


def test_unchecked_reads_need_more_confidence() -> None:
    """Nothing verifies an OCR read without a check digit, so its bar is higher; barcodes
    and check-digit-verified reads keep the configured threshold."""
    assert required_confidence(0.8, True, "ocr") == 0.8
    assert required_confidence(0.8, False, "barcode") == 0.8
    assert required_confidence(0.8, False, "ocr") == UNCHECKED_MIN_CONFIDENCE
    assert required_confidence(0.99, False, "ocr") == 0.99


def test_count_characters_merges_repeats_split_by_no_blank_only() -> None:
    """The reader grows a fragment by 17 / characters seen: repeats of one character across
    columns are one character, the same character after a blank is a second one."""

    assert count_characters(ctc_columns("1HGCM82633A004352")) == 17
    assert count_characters(ctc_columns("1HGCM82633", per_char=3)) == 10
    assert count_characters(ctc_columns("AA0", gap=1)) == 3
    a = ctc_columns("A", per_char=4, lead=0)  # four columns of A, no blank between
    assert count_characters(a) == 1
