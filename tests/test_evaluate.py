"""How eval scores rows: an image with several VINs must not turn one read into errors."""

from __future__ import annotations

from pathlib import Path

from agent.evaluate import Sample, score_rows, summarize

IMG = Path("three.jpg")
A, B, C = "1HGCM82633A004352", "JH4KA7561PC008269", "WVWZZZ1JZXW000001"


def test_a_read_of_another_labelled_vin_is_not_a_wrong_read() -> None:
    """Three VINs in one image, one read: the other two rows are no-reads, not wrong."""
    samples = [Sample(IMG, v, "door_label") for v in (A, B, C)]
    rows, _, _ = score_rows(samples, {IMG: ([(A, 0.99)], 12.0, None)})
    report = summarize(rows)
    assert report["exact"] == 1 / 3 and report["wrong"] == 0.0 and report["no_read"] == 2 / 3


def test_an_unlabelled_read_makes_exactly_one_row_wrong() -> None:
    """A VIN nobody labelled is a wrong read, counted once, not once per missed row."""
    samples = [Sample(IMG, v, "door_label") for v in (A, B)]
    rows, _, _ = score_rows(samples, {IMG: ([("2HGFA16578H300001", 0.95)], 12.0, None)})
    assert [r["pred"] for r in rows] == ["2HGFA16578H300001", None]


def test_reads_on_images_without_a_vin_are_false_reads() -> None:
    """Rows with an empty VIN are negatives and stay out of the main figures."""
    empty = Path("empty.jpg")
    rows, negatives, false_reads = score_rows(
        [Sample(empty, "", "none")], {empty: ([(A, 0.9)], 5.0, None)}
    )
    assert rows == [] and (negatives, false_reads) == (1, 1)
