"""Visits across frames: fusion, new/update/end, dedupe and misses, and their payloads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent import vin as rules
from agent.events import SeqCounter, payload
from agent.fusion import VisitTracker
from agent.reader import WORD_MIN_CONFIDENCE, FrameResult, LineRead, Miss
from agent.vision.barcodes import BarcodeRead
from agent.vision.calibration import Calibrator
from agent.vision.decoding import decode
from agent.vision.recognizer import Read

VIN_A = "1HGCM82633A004352"
VIN_B = "JH4KA7561PC008269"
BOX = {"xmin": 10, "xmax": 300, "ymin": 50, "ymax": 70}
QUAD = np.array([[10, 50], [300, 50], [300, 70], [10, 70]], np.float32)
CAL = Calibrator(kind="decoder")  # the decoder's own probability: monotone, no fitted terms


def read_probs(probs: np.ndarray) -> Read:
    d = decode(probs, "auto")
    return Read(d.vin, CAL.confidence(d), d, probs)


def probs_for(text: str, p: float = 0.99, weak: dict[int, tuple[str, float]] | None = None):
    """Per-position probabilities for ``text``; ``weak`` puts a rival character at a position."""
    probs = np.full((17, 33), (1 - p) / 32)
    for i, c in enumerate(text):
        probs[i, rules.ALPHABET.index(c)] = p
    for i, (rival, q) in (weak or {}).items():
        probs[i] = (1 - q - 0.5) / 31
        probs[i, rules.ALPHABET.index(text[i])] = 0.5
        probs[i, rules.ALPHABET.index(rival)] = q
    return probs


def frame(
    *lines: np.ndarray,
    misses: list[Miss] | None = None,
    threshold: float = 0.5,
    origin: str = "frame",
):
    reads, out_misses = [], list(misses or [])
    for probs in lines:
        r = read_probs(probs)
        line = LineRead(r.vin, r.confidence, r.decoded.checksum_valid, QUAD, BOX, "ocr", ocr=r)
        line.origin = origin
        if r.confidence >= threshold:
            reads.append(line)
        else:
            out_misses.append(Miss(BOX, "below_threshold", r.vin, r.confidence, line))
    return FrameResult(reads=reads, misses=out_misses, width=640, height=480)


def tracker(**kw) -> VisitTracker:
    return VisitTracker(
        read_probs, **{"visit_timeout": 2.0, "dedupe_window": 30.0, "min_confidence": 0.5, **kw}
    )


def test_one_vehicle_many_frames_is_one_visit() -> None:
    """A car in view for several frames gives one `new`, then one `end`, one event_id."""
    t = tracker()
    events = []
    for i in range(5):
        events += t.update(frame(probs_for(VIN_A)), ts=100.0 + 0.2 * i)
    events += t.update(FrameResult(), ts=103.0)
    assert [e.type for e in events] == ["new", "end"]
    assert len({e.visit.event_id for e in events}) == 1
    assert events[0].visit.vin == VIN_A and events[0].visit.frames == 5


def test_word_only_visits_keep_the_word_floor() -> None:
    """A VIN only the word pass read must reach WORD_MIN_CONFIDENCE in a visit too:
    averaging frames of one label line does not make it less likely to be label text.
    The same read from the detector's pass publishes at the usual threshold."""
    weak = probs_for(VIN_A, 0.99)
    assert 0.5 <= read_probs(weak).confidence < WORD_MIN_CONFIDENCE
    words = tracker()
    events = [e for i in range(3) for e in words.update(frame(weak, origin="words"), 1.0 + i)]
    assert events == []
    detected = tracker()
    events = [e for i in range(3) for e in detected.update(frame(weak), 1.0 + i)]
    assert [e.type for e in events] == ["new"]


def test_weak_frames_add_up_to_a_confident_read() -> None:
    """Each frame alone is below the threshold; fused, the doubts cancel out."""
    t = tracker()
    f1 = probs_for(VIN_A, p=0.995, weak={4: ("N", 0.45)})
    f2 = probs_for(VIN_A, p=0.995, weak={12: ("8", 0.45)})
    assert read_probs(f1).confidence < 0.5 and read_probs(f2).confidence < 0.5
    assert t.update(frame(f1), ts=1.0) == []
    events = t.update(frame(f2), ts=1.2)
    assert [e.type for e in events] == ["new"]
    assert events[0].visit.vin == VIN_A and events[0].visit.confidence >= 0.5


def test_a_misread_frame_is_outvoted_and_does_not_open_a_visit() -> None:
    """One frame with a wrong character must not become a second vehicle."""
    t = tracker()
    wrong = VIN_A[:11] + "8" + VIN_A[12:]  # still 1 diff from VIN_A: same vehicle
    for i, text in enumerate([VIN_A, VIN_A, wrong, VIN_A]):
        t.update(frame(probs_for(text, p=0.9)), ts=float(i))
    assert len(t.visits) == 1
    assert t.visits[0].vin == VIN_A


def test_two_vehicles_in_one_frame_are_two_visits() -> None:
    t = tracker()
    events = t.update(frame(probs_for(VIN_A), probs_for(VIN_B)), ts=5.0)
    assert sorted(e.visit.vin for e in events if e.type == "new") == sorted([VIN_A, VIN_B])


def test_same_vin_within_dedupe_window_is_not_a_new_visit() -> None:
    """A car that pulls forward and back within the window must not be announced twice."""
    t = tracker(dedupe_window=30.0)
    assert [e.type for e in t.update(frame(probs_for(VIN_A)), ts=0.0)] == ["new"]
    assert [e.type for e in t.expire(10.0)] == ["end"]
    assert t.update(frame(probs_for(VIN_A)), ts=20.0) == []
    t.expire(25.0)
    # Long after the window (counted from its last sighting) it is a new visit again.
    assert [e.type for e in t.update(frame(probs_for(VIN_A)), ts=80.0)] == ["new"]


def test_update_when_the_fused_vin_changes() -> None:
    """The fused read may be corrected by later frames; subscribers get an `update`."""
    t = tracker(min_confidence=0.3)
    first = VIN_A[:11] + "8" + VIN_A[12:]
    first = first[:8] + rules.check_digit(first) + first[9:]
    events = t.update(frame(probs_for(first, p=0.97), threshold=0.3), ts=0.0)
    assert [e.visit.vin for e in events] == [first]
    out = []
    for i in range(4):
        out += t.update(frame(probs_for(VIN_A, p=0.99), threshold=0.3), ts=0.1 * (i + 1))
    assert "update" in [e.type for e in out]
    assert t.visits[0].vin == VIN_A


def test_barcode_agreeing_with_ocr_is_source_both() -> None:
    t = tracker()
    code = BarcodeRead(VIN_A, QUAD, "Code39", True, ())
    fr = frame(probs_for(VIN_A, p=0.97))
    fr.reads.append(LineRead(VIN_A, 0.97, True, QUAD, BOX, "barcode", barcode=code))
    (event,) = t.update(fr, ts=0.0)
    assert event.visit.source == "both"
    assert event.visit.confidence > read_probs(probs_for(VIN_A, p=0.97)).confidence


def test_unread_line_ends_as_a_reported_miss() -> None:
    """A VIN-like line too small to read is reported, so operators can move the camera."""
    t = tracker()
    tiny = Miss(BOX, "too_small")
    for i in range(3):
        assert t.update(FrameResult(misses=[tiny]), ts=float(i)) == []
    (end,) = t.expire(10.0)
    msg = payload(end, device_id="d", camera="c", seq=1, min_confidence=0.5, models=None)
    assert msg["success"] is False and msg["vin"] is None
    assert msg["reason"] == "too_small" and "too_small" in msg["message"]
    assert msg["type"] == "end" and msg["frames"] == 3


def test_payload_schema_of_a_read_visit() -> None:
    """Backends written for CarsXE read these fields; fleets need the rest."""
    t = tracker()
    (new,) = t.update(frame(probs_for(VIN_A)), ts=1_700_000_000.0)
    msg = payload(new, device_id="gate-1", camera="north", seq=7, min_confidence=0.5, models={})
    for key in ("success", "vin", "box", "confidence", "candidates", "message", "type",
                "event_id", "seq", "device_id", "camera", "timestamp", "start_time", "frames",
                "checksum_valid", "source", "decoded", "model"):  # fmt: skip
        assert key in msg
    assert msg["success"] is True and msg["vin"] == VIN_A and msg["type"] == "new"
    assert msg["candidates"][0]["vin"] == VIN_A
    assert msg["timestamp"].startswith("2023-11-14T22:13:20")
    (end,) = t.flush(1_700_000_003.0)
    assert "end_time" in payload(end, device_id="g", camera="n", seq=8, min_confidence=0.5,
                                 models={})  # fmt: skip


def test_seq_is_monotonic_across_restarts(tmp_path: Path) -> None:
    """A backend detects gaps by seq; a restart must never reuse a number."""
    path = tmp_path / "seq"
    a = SeqCounter(path)
    first = [a.take() for _ in range(5)]
    b = SeqCounter(path)  # as if the process had been killed after those five
    later = [b.take() for _ in range(3)]
    assert first == sorted(first) and min(later) > max(first)
    assert len(set(first + later)) == 8


@pytest.mark.parametrize("content", ["garbage", ""])
def test_seq_survives_a_damaged_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "seq"
    path.write_text(content)
    assert SeqCounter(path).take() >= 1
