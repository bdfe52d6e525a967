"""The reader end to end with the shipped models, and its response schema."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from agent import vin
from agent.reader import WORD_MIN_CONFIDENCE, LineRead, Miss, Reader, pad_quad, publish_floor
from agent.response import response
from agent.vision.barcodes import BarcodeRead
from tests.conftest import count_calls

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "scenes"
VIN = "1HGCM82633A004352"


def _quad(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)


def _ocr(text: str, conf: float) -> LineRead:
    box = {"xmin": 10, "xmax": 200, "ymin": 10, "ymax": 30}
    return LineRead(text, conf, vin.checksum_valid(text), _quad(10, 10, 200, 30), box, "ocr")


def test_barcode_agreement_raises_confidence() -> None:
    """OCR and barcode are independent channels; agreeing, both must be wrong to be wrong."""
    code = BarcodeRead(VIN, _quad(0, 40, 300, 90), "Code39", True, ())
    (fused,) = Reader._fuse([_ocr(VIN, 0.8)], [code], 640, 480)
    assert fused.source == "both"
    assert fused.confidence == pytest.approx(1 - 0.2 * (1 - 0.97))
    # A barcode with a different VIN stays a separate read.
    other = "JH4KA7561PC008269"
    reads = Reader._fuse(
        [_ocr(VIN, 0.8)], [BarcodeRead(other, code.quad, "QRCode", True, ())], 640, 480
    )
    assert sorted(r.source for r in reads) == ["barcode", "ocr"]


def test_the_earliest_pass_reading_a_vin_is_published() -> None:
    """Which copy of a VIN read by several passes is published must not hang on a
    near-tie of confidences: int8 rounding differs between x86-64 and arm64, and the
    winner sets the box. The frame's read stands over a more confident tile's."""
    frame = _ocr(VIN, 0.986)
    frame.origin = "frame"
    tile = _ocr(VIN, 0.998)
    tile.origin, tile.box = "tile", {"xmin": 0, "xmax": 220, "ymin": 0, "ymax": 40}
    words = _ocr(VIN, 0.999)
    words.origin = "words"
    for order in ([frame, tile, words], [words, tile, frame]):
        (fused,) = Reader._fuse(order, [], 640, 480)
        assert fused is frame
    (fused,) = Reader._fuse([words, tile], [], 640, 480)
    assert fused is tile
    # A pass that reads the VIN too weakly to publish it does not hide one that can.
    (fused,) = Reader._fuse([frame, tile], [], 640, 480, lambda r: 0.99)
    assert fused is tile


def test_publish_floor_by_pass() -> None:
    """The floor a read (or a fused visit) must reach depends on the passes that read it:
    words alone need WORD_MIN_CONFIDENCE, tiles alone a check digit; any other pass among
    them and the usual threshold applies."""
    assert publish_floor(0.8, True, "ocr", {"frame"}) == pytest.approx(0.8)
    assert publish_floor(0.8, True, "ocr", {"words", "turned_words"}) == WORD_MIN_CONFIDENCE
    assert publish_floor(0.8, True, "ocr", {"words", "frame"}) == pytest.approx(0.8)
    assert publish_floor(0.8, False, "ocr", {"tile"}) == float("inf")
    assert publish_floor(0.8, True, "ocr", {"tile"}) == pytest.approx(0.8)
    assert publish_floor(0.8, True, "barcode", {"words"}) <= 0.8


def test_pad_quad_adds_margins_in_line_heights() -> None:
    """The recognizer was trained with margins; crops must carry them too."""
    padded = pad_quad(_quad(100, 100, 300, 120))
    assert padded[0, 0] == pytest.approx(100 - 0.5 * 20, abs=0.01)
    assert padded[0, 1] == pytest.approx(100 - 0.3 * 20, abs=0.01)
    assert padded[2, 0] == pytest.approx(300 + 0.5 * 20, abs=0.01)


@pytest.fixture(scope="module")
def reader() -> Reader:
    return Reader()


def _labels() -> dict[str, set[str]]:
    with (SAMPLES / "labels.csv").open(newline="") as fh:
        out: dict[str, set[str]] = {}
        for row in csv.DictReader(fh):
            out.setdefault(row["file"], set())
            if row["vin"]:
                out[row["file"]].add(row["vin"])
        return out


DETECTOR_GAP = pytest.mark.xfail(
    reason="detector 1.6.0 finds few VIN lines (held-out recall 0.43): issue 4",
    strict=False,
)


def _sample_reads(reader: Reader) -> tuple[int, list[float], int]:
    """(VINs read right, confidences of wrong published reads, VINs labelled)."""
    from agent.imageio import load

    labels = _labels()
    assert len(labels) >= 10
    found = expected = 0
    wrong: list[float] = []
    for name, vins in labels.items():
        result = reader.read_frame(load(str(SAMPLES / name)).image)
        got = {r.vin for r in result.reads}
        expected += len(vins)
        found += len(got & vins)
        wrong += [r.confidence for r in result.reads if r.vin not in vins]
        for r in result.reads:
            h, w = result.height, result.width
            assert 0 <= r.box["xmin"] <= r.box["xmax"] < w
            assert 0 <= r.box["ymin"] <= r.box["ymax"] < h
            assert 0.0 <= r.confidence <= 1.0
    return found, wrong, expected


def test_bundled_samples_publish_no_wrong_vin(reader: Reader) -> None:
    """Whatever the models find, a VIN published firmly on the samples must be a true one.

    Firmly: at 0.9 or more.  Between the 0.8 threshold and 0.9 the calibration
    itself expects one read in ten or more to be wrong, and such a read can
    fall either side of the threshold by platform (arm64-check measured a
    wrong one at 0.851 on arm64 that x86-64 did not publish), so one is allowed.
    """
    _, wrong, _ = _sample_reads(reader)
    assert not [c for c in wrong if c >= 0.9], wrong
    assert len(wrong) <= 1, wrong


@DETECTOR_GAP
def test_bundled_samples_are_read(reader: Reader) -> None:
    """The quickstart's images: the shipped models must read nearly all of them.

    One or two misses are tolerated because the samples include small and
    rotated VINs.
    """
    found, _, expected = _sample_reads(reader)
    assert found >= expected - 2


@DETECTOR_GAP
def test_upside_down_frame_reads_the_same_vin(reader: Reader) -> None:
    """Photos arrive rotated by 180 degrees; the reader tries both reading directions."""
    from agent.imageio import load

    labels = _labels()
    name = next(n for n, v in labels.items() if len(v) == 1)
    image = load(str(SAMPLES / name)).image
    upright = {r.vin for r in reader.read_frame(image).reads}
    flipped = {r.vin for r in reader.read_frame(image[::-1, ::-1].copy()).reads}
    assert upright == flipped == labels[name]


def test_the_quarter_turn_reads_frames_turned_a_quarter(reader: Reader) -> None:
    """Photos arrive turned 90 degrees (no EXIF orientation), and the network finds
    vertical lines far less often than level ones: with the quarter turn (the default of
    ``vin-agent read``) the reader also searches each frame turned back, and reads more
    of the sample VINs so."""
    from agent.cli import build_parser
    from agent.imageio import load

    assert build_parser().parse_args(["read", "x.jpg"]).quarter_turn
    assert not build_parser().parse_args(["read", "--no-quarter-turn", "x.jpg"]).quarter_turn
    level, reader = reader, Reader(quarter_turn=True)
    assert not level.quarter_turn
    upright = with_turn = without = 0
    for name, vins in _labels().items():
        image = load(str(SAMPLES / name)).image
        read = {r.vin for r in reader.read_frame(image).reads} & vins
        if not read:
            continue
        turned = cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
        upright += len(read)
        with_turn += len(read & {r.vin for r in reader.read_frame(turned).reads})
        without += len(read & {r.vin for r in level.read_frame(turned).reads})
    assert upright >= 3
    assert with_turn > without


def test_blank_and_noise_frames_publish_nothing(reader: Reader) -> None:
    """No text, no read: a false VIN on an empty gate is worse than none."""
    rng = np.random.default_rng(0)
    for frame in (
        np.zeros((720, 1280, 3), np.uint8),
        rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
    ):
        out = response(reader.read_frame(frame), reader)
        assert out["success"] is False
        assert out["vin"] is None


def test_recognizer_on_true_quads_of_the_samples(reader: Reader) -> None:
    """The recognizer path alone (rectify, CTC, constrained decode, calibration) on real files.

    Crops come from the generator's true quads, so this measures the
    recognizer without the detector.  The shipped model reads 11 of the 18
    sample VINs exactly. Confident reads must almost always be right: at the default
    threshold the calibrated model is wrong on about 2 % of what it publishes
    (recognizer 1.1.0, 5,000 held-out crops), so one confident miss among these
    lines is within its promise and two are not.
    """
    import json

    from agent.imageio import load
    from agent.reader import DEFAULT_MIN_CONFIDENCE
    from agent.vision.geometry import rectify

    quads = json.loads((SAMPLES / "quads.json").read_text())
    exact = total = 0
    confident_wrong = []
    for name, lines in quads.items():
        image = load(str(SAMPLES / name)).image
        for line in lines:
            read = reader.recognizer.read(rectify(image, pad_quad(np.array(line["quad"]))))
            total += 1
            exact += read.vin == line["vin"]
            if read.confidence >= DEFAULT_MIN_CONFIDENCE and read.vin != line["vin"]:
                confident_wrong.append((name, read.vin, round(read.confidence, 3)))
    assert len(confident_wrong) <= 1, confident_wrong
    assert total >= 15
    assert exact >= total // 2


def test_max_lines_reads_only_the_likeliest_lines() -> None:
    """A frame full of text must not cost one recognizer pass per line: the cap keeps the
    detector's best lines and drops the rest, so nothing outside them is read."""
    from agent.imageio import load

    capped = Reader(max_lines=1, barcodes=False, words=False)  # words have their own cap
    frames = [load(str(SAMPLES / name)).image for name in sorted(_labels())]

    def detect(f: np.ndarray) -> list[Any]:  # the passes read_frame runs
        return capped.detector.detect(f, capped.tiles, capped.quarter_turn)

    frame = max(frames, key=lambda f: len(detect(f)))
    dets = detect(frame)
    assert len(dets) >= 2, "no sample has two detected lines to cap"
    top = dets[0].box
    result = capped.read_frame(frame)
    boxes = [r.box for r in result.reads] + [m.box for m in result.misses]
    assert boxes
    for b in boxes:  # the top line, one of its fragments, or the line grown from it
        assert b["xmin"] < top["xmax"] and b["xmax"] > top["xmin"]
        assert b["ymin"] < top["ymax"] and b["ymax"] > top["ymin"]


def _sample_lines() -> Iterator[tuple[str, np.ndarray, dict[str, Any]]]:
    """(file name, gray frame, labelled line with ``vin`` and ``quad``) for each sample VIN."""
    import json

    from agent.imageio import load

    quads = json.loads((SAMPLES / "quads.json").read_text())
    for name, lines in sorted(quads.items()):
        image = load(str(SAMPLES / name)).image
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        for line in lines:
            yield name, gray, line


def test_a_fragment_of_a_line_is_grown_to_the_whole_vin(
    reader: Reader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The detector often finds only part of a line; read as is it shows too few characters
    (not_17_characters), so the reader grows it along the line and reads again.
    (Grown reads' own confidence floor is lifted and the ink extent is off here: this is
    about the growth's geometry.)"""
    import agent.reader
    from agent.vision.detector import Detection

    monkeypatch.setattr(agent.reader, "GROW_MIN_CONFIDENCE", 0.0)
    monkeypatch.setattr(agent.reader, "INK_MIN_GROWTH", float("inf"))
    from agent.vision.geometry import expand_quad, quad_box

    grown = 0
    for name, gray, line in _sample_lines():
        h, w = gray.shape
        part = expand_quad(np.array(line["quad"], np.float32), along=-0.3, across=0.0)
        det = Detection(part, quad_box(part, w, h), 1.0)
        whole = reader._read_line(gray, Detection(np.array(line["quad"]), det.box, 1.0))
        alone = reader._read_line(gray, det, retry=False)
        if not (isinstance(whole, LineRead) and whole.vin == line["vin"]):
            continue  # the recognizer misreads even the whole line
        if not vin.checksum_valid(line["vin"]):
            continue  # retried reads are kept only when the check digit verifies them
        if isinstance(alone, Miss) and alone.reason == "not_17_characters":
            read = reader._read_line(gray, det)
            assert isinstance(read, LineRead) and read.vin == line["vin"], (name, read)
            grown += 1
    assert grown >= 2


def test_a_fragment_at_one_end_is_grown_from_that_end(
    reader: Reader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The detector often finds only the first or last half of a line (the clip's serif
    label): grown alike at both ends, such a crop holds too little of the rest; grown
    from the end it keeps, it holds the line. Both orientations of the fragment are
    tried, so this holds for a fragment at either end. (The ink extent, tried before
    any growth, is off here.)"""
    import agent.reader
    from agent.vision.detector import Detection
    from agent.vision.geometry import quad_box, stretch_quad

    monkeypatch.setattr(agent.reader, "GROW_MIN_CONFIDENCE", 0.0)
    monkeypatch.setattr(agent.reader, "INK_MIN_GROWTH", float("inf"))
    fragments = []
    for name, gray, line in _sample_lines():
        h, w = gray.shape
        quad = np.array(line["quad"], np.float32)
        whole = reader._read_line(gray, Detection(quad, quad_box(quad, w, h), 1.0))
        if not (isinstance(whole, LineRead) and whole.vin == line["vin"]):
            continue  # the recognizer misreads even the whole line
        for before in (0.0, 1.0):  # the first, then the last 55 % of the line
            part = stretch_quad(quad, 0.55, before)
            det = Detection(part, quad_box(part, w, h), 1.0)
            alone = reader._read_line(gray, det, retry=False)
            if isinstance(alone, Miss) and alone.reason == "not_17_characters":
                fragments.append((name, gray, det, line["vin"]))
    assert len(fragments) >= 2

    def read_all() -> int:
        return sum(
            isinstance(r := reader._read_line(gray, det), LineRead) and r.vin == vin
            for _, gray, det, vin in fragments
        )

    anchored = read_all()
    monkeypatch.setattr(agent.reader, "GROW_PLACEMENTS", (0.5,))
    assert anchored > read_all()


def test_a_retried_read_below_its_own_floor_is_not_kept(
    reader: Reader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each retried crop (ink extent, growth) is one more chance to read something
    VIN-shaped from a line that is not a VIN, so a retried read must reach
    GROW_MIN_CONFIDENCE to replace the miss: with the floor above 1, every fragment stays
    the miss it was."""
    import agent.reader
    from agent.vision.detector import Detection
    from agent.vision.geometry import quad_box, stretch_quad

    monkeypatch.setattr(agent.reader, "GROW_MIN_CONFIDENCE", 1.01)
    tried = 0
    for _, gray, line in _sample_lines():
        h, w = gray.shape
        for before in (0.0, 0.5, 1.0):
            part = stretch_quad(np.array(line["quad"], np.float32), 0.6, before)
            det = Detection(part, quad_box(part, w, h), 1.0)
            alone = reader._read_line(gray, det, retry=False)
            if isinstance(alone, Miss) and alone.reason == "not_17_characters":
                tried += 1
                assert reader._read_line(gray, det) == alone
    assert tried >= 2


def test_a_reread_is_kept_only_when_it_is_publishable(reader: Reader) -> None:
    """Re-reading a line from other crops must never make things worse: a retry's result
    differs from the first read only by being a read that passes the VIN rules, and one
    at or above its threshold when the first read already passed the rules."""
    from agent.vision.calibration import required_confidence
    from agent.vision.detector import Detection
    from agent.vision.geometry import expand_quad, quad_box

    changed = 0
    for name, gray, line in _sample_lines():
        h, w = gray.shape
        for along, across in ((0.0, -0.25), (-0.3, 0.0), (-0.1, 0.1)):
            q = expand_quad(np.array(line["quad"], np.float32), along=along, across=across)
            det = Detection(q, quad_box(q, w, h), 1.0)
            first = reader._read_line(gray, det, retry=False)
            best = reader._read_line(gray, det)
            if isinstance(first, LineRead) and isinstance(best, LineRead):
                if (first.vin, first.confidence) == (best.vin, best.confidence):
                    continue
            elif type(first) is type(best) and isinstance(first, Miss):
                continue
            changed += 1
            assert isinstance(best, LineRead)
            if isinstance(first, LineRead):
                need = required_confidence(reader.min_confidence, best.checksum_valid, "ocr")
                assert best.confidence >= need, (name, best.vin, best.confidence)
    assert changed >= 1  # the samples do exercise the retries


def test_a_second_look_only_adds_reads_its_check_digit_verifies(
    reader: Reader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second look (a refused line read again from its crop framed three other ways)
    is one more chance to force text into a VIN: where it changes what a line yields,
    the result must be a read the check digit verifies and the threshold lets through.
    Both readers retry refused fragments alike, so only the second look differs."""
    from agent.vision.detector import Detection
    from agent.vision.geometry import expand_quad, quad_box

    plain = Reader(second_look=False)
    looks = count_calls(monkeypatch, reader.recognizer, "aligned_views")
    for _, gray, line in _sample_lines():
        h, w = gray.shape
        for along, across in ((0.0, 0.0), (0.0, -0.3), (-0.06, 0.0), (0.12, 0.2), (0.0, 0.6)):
            q = expand_quad(np.array(line["quad"], np.float32), along=along, across=across)
            det = Detection(q, quad_box(q, w, h), 1.0)
            first, again = plain._read_line(gray, det), reader._read_line(gray, det)
            if isinstance(again, Miss):
                assert isinstance(first, Miss)
                continue
            if isinstance(first, LineRead) and first.vin == again.vin:
                if first.confidence == again.confidence:
                    continue
            assert again.checksum_valid and again.confidence >= reader.min_confidence
    assert looks  # the framings above do give refused lines a second look


def _half_line_fragments(reader: Reader) -> Iterator[tuple[np.ndarray, Any, str, Miss]]:
    """Halves of the sample lines the reader reads whole (first, middle, last), each
    refused when read alone: (gray frame, detection, labelled VIN, the refusal)."""
    from agent.vision.detector import Detection
    from agent.vision.geometry import quad_box, stretch_quad

    for _, gray, line in _sample_lines():
        h, w = gray.shape
        quad = np.array(line["quad"], np.float32)
        whole = reader._read_line(gray, Detection(quad, quad_box(quad, w, h), 1.0), False)
        if not (isinstance(whole, LineRead) and whole.vin == line["vin"]):
            continue  # the recognizer misreads even the whole line
        for before in (0.0, 0.5, 1.0):
            part = stretch_quad(quad, 0.5, before)
            det = Detection(part, quad_box(part, w, h), 1.0)
            alone = reader._read_line(gray, det, retry=False)
            if isinstance(alone, Miss):
                yield gray, det, line["vin"], alone


def test_a_fragment_is_followed_to_the_ends_of_its_ink(
    reader: Reader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With growth off, the ink extent alone turns half-line fragments back into their VINs,
    and never into another VIN; with it off too, none is recovered."""
    import agent.reader

    monkeypatch.setattr(agent.reader, "GROW_MIN_CHARS", 99)
    fragments = list(_half_line_fragments(reader))
    reads = [(reader._read_line(gray, det), v) for gray, det, v, _ in fragments]
    right = sum(isinstance(r, LineRead) and r.vin == v for r, v in reads)
    wrong = sum(isinstance(r, LineRead) and r.vin != v for r, v in reads)
    assert right >= 6 and wrong == 0, (right, wrong, len(fragments))
    monkeypatch.setattr(agent.reader, "INK_MIN_GROWTH", float("inf"))
    monkeypatch.setattr(agent.reader, "BAND_SAME", 0.0)
    assert not any(isinstance(reader._read_line(g, d), LineRead) for g, d, _, _ in fragments)


def test_a_fragment_off_its_band_is_moved_onto_it(
    reader: Reader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The map gives a small line's height to a cell or two, so fragments come too tall
    (taking in the next label line) as well as too short along: the retry first moves the
    fragment onto the band of ink it lies on. Without that step fewer such fragments are
    read back, and none is published as another VIN either way.

    Two heights of fragment, and the retry's bar lowered from 0.99 to 0.95: this is a
    test of where the crop is taken, and int8 rounding differs by platform enough to
    move single reads across 0.99 (arm64 measured 9 against 9 of 27 at one height and
    0.99; x86-64 11 against 9).
    """
    import agent.reader
    from agent.vision.detector import Detection
    from agent.vision.geometry import expand_quad, quad_box

    monkeypatch.setattr(agent.reader, "GROW_MIN_CHARS", 99)  # growth off: the ink alone
    monkeypatch.setattr(agent.reader, "GROW_MIN_CONFIDENCE", 0.95)
    cases = []
    for gray, det, v, _ in _half_line_fragments(reader):
        h, w = gray.shape
        for across in (0.7, 0.9):
            tall = expand_quad(det.quad, along=0.0, across=across)
            cases.append((gray, Detection(tall, quad_box(tall, w, h), 1.0), v))

    def count() -> tuple[int, int]:
        """Right and wrong reads that would be published (the threshold is applied later)."""
        reads = [(reader._read_line(g, d), v) for g, d, v in cases]
        sure = [(r.vin, v) for r, v in reads if isinstance(r, LineRead) and r.confidence >= 0.8]
        return sum(a == b for a, b in sure), sum(a != b for a, b in sure)

    with_band = count()
    monkeypatch.setattr(agent.reader, "ink_band", lambda gray, quad: quad)
    without = count()
    assert with_band[1] == 0 and without[1] == 0, (with_band, without)
    assert with_band[0] > without[0], (with_band, without, len(cases))


def test_a_fragment_refused_for_any_reason_is_retried(reader: Reader) -> None:
    """A fragment of 10 characters is often forced into 17 cheaply enough and then refused
    by the rules (unknown maker, bad check digit) rather than as not_17_characters:
    those are fragments too, and are retried."""
    recovered = [
        miss.reason
        for gray, det, vin_, miss in _half_line_fragments(reader)
        if miss.reason != "not_17_characters"
        and isinstance(r := reader._read_line(gray, det), LineRead)
        and r.vin == vin_
    ]
    assert len(recovered) >= 2, recovered


def test_a_retried_read_is_kept_only_if_its_check_digit_verifies_it(
    reader: Reader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A VIN without a check digit (20 % of the world's) has nothing but the recognizer
    behind it; read from a crop the detector did not propose, that is too little: on
    generated scenes these retries added more false reads than right ones. With the
    confidence floor lifted, every retried read that is kept passes the check digit."""
    import agent.reader

    monkeypatch.setattr(agent.reader, "GROW_MIN_CONFIDENCE", 0.0)
    kept = [
        r
        for gray, det, _, _ in _half_line_fragments(reader)
        if isinstance(r := reader._read_line(gray, det), LineRead)
    ]
    assert kept and all(r.checksum_valid for r in kept)


def test_a_retried_crop_far_from_17_characters_is_screened_before_alignment(
    reader: Reader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Most retried crops (other text, background) show nowhere near 17 characters: the
    screen refuses them from the recognizer's columns alone, without the two alignments
    and the decode a read costs; a whole VIN line passes the screen."""
    import agent.reader
    from agent.vision.detector import Detection
    from agent.vision.geometry import quad_box, stretch_quad

    aligned = count_calls(monkeypatch, agent.reader, "align")
    screened = passed = 0
    for _, gray, line in _sample_lines():
        h, w = gray.shape
        quad = np.array(line["quad"], np.float32)
        whole = reader.recognize(gray, Detection(quad, quad_box(quad, w, h), 1.0), screen=True)
        passed += whole is not None
        part = stretch_quad(quad, 0.25, 0.5)  # about 4 characters
        aligned.clear()
        if reader.recognize(gray, Detection(part, quad_box(part, w, h), 1.0), screen=True) is None:
            screened += 1
            assert not aligned
    assert screened >= 3 and passed >= 3, (screened, passed)


def _typed_line(text: str) -> tuple[np.ndarray, np.ndarray]:
    """A 1280x720 frame with one line typed in OpenCV's Hershey face, and its quad."""
    frame = np.full((720, 1280), 225, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), base = cv2.getTextSize(text, font, 1.0, 2)
    cv2.putText(frame, text, (100, 300), font, 1.0, 20, 2, cv2.LINE_AA)
    return frame, _quad(100, 300 - th, 100 + tw, 300 + base)


@pytest.mark.parametrize("text", ["WVWZZZ1JZXW386752", "JHMCM56557C404453"])
def test_a_line_only_a_tile_found_needs_its_check_digit(reader: Reader, text: str) -> None:
    """Tiles enlarge every text line and so find many that are not VINs: a line only a
    tile found is published only when its check digit verifies it (a European VIN with
    no check digit is left to the whole-frame pass, which reads it as before)."""
    from agent.reader import CHECKED_ONLY_ORIGINS
    from agent.vision.detector import Detection
    from agent.vision.geometry import quad_box

    frame, quad = _typed_line(text)
    box = quad_box(quad, 1280, 720)
    whole = reader._read_line(frame, Detection(quad, box, 1.0, origin="frame"))
    assert isinstance(whole, LineRead) and whole.vin == text and whole.origin == "frame"
    for origin in sorted(CHECKED_ONLY_ORIGINS):
        tiled = reader._read_line(frame, Detection(quad, box, 1.0, origin=origin))
        if vin.checksum_valid(text):
            assert isinstance(tiled, LineRead) and tiled.vin == text and tiled.origin == origin
        else:
            assert isinstance(tiled, Miss) and tiled.reason == "unverified_tile"


def _typed_sheet(lines: list[str], size: tuple[int, int] = (1280, 720)) -> np.ndarray:
    frame = np.full((size[1], size[0]), 230, np.uint8)
    for i, text in enumerate(lines):
        cv2.putText(frame, text, (80, 120 + 70 * i), cv2.FONT_HERSHEY_DUPLEX, 1.0, 25, 2)
    return frame


def test_a_plainly_typed_vin_is_read_through_the_word_pass(
    reader: Reader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A VIN typed after its prefix among other lines, in a face the models never
    trained on: the word pass proposes the 17 characters without the prefix, and the
    reader publishes it; with ``words`` off the pass is not run at all."""
    import agent.reader

    frame = _typed_sheet(["MFD BY HONDA OF AMERICA 05/03", "VIN: " + VIN, "GVWR 2123 KG"])
    calls = count_calls(monkeypatch, agent.reader, "find_words")
    result = reader.read_frame(frame)
    assert calls
    assert VIN in {r.vin for r in result.reads}
    words = [r for r in result.reads if r.origin == "words"]
    assert words and words[0].vin == VIN and words[0].box["xmin"] > 80 + 60
    plain = Reader(words=False)
    calls.clear()
    plain.read_frame(frame)
    assert not calls
