"""One frame in, VIN reads out: detector -> rectified crops -> recognizer -> rules,
fused with barcode VINs read in the same pass.

This is the code path shared by ``vin-agent read``, ``eval`` and the daemon.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from agent import vin
from agent.vision.barcodes import BarcodeRead, read_barcodes
from agent.vision.calibration import DEFAULT_MIN_CONFIDENCE, required_confidence
from agent.vision.ctc import align, count_characters
from agent.vision.detector import Detection, Detector, turned_back
from agent.vision.extent import ink_band, ink_extent
from agent.vision.geometry import expand_quad, quad_axes, quad_box, rectify, stretch_quad
from agent.vision.manifest import load_manifest
from agent.vision.recognizer import Read, Recognizer
from agent.vision.runtime import RuntimeConfig
from agent.vision.words import find_words

logger = logging.getLogger(__name__)

#: Lines shorter than this (pixels) are reported as too small, not read.
MIN_LINE_HEIGHT_PX = 6.0
#: Nats a crop may cost to be read as exactly 17 characters (``ctc.align``); above
#: it the line is a miss ``not_17_characters`` instead of a read.
MAX_FORCED_COST = 6.0
#: Lines read per frame at most (``Reader.max_lines``), likeliest first.
DEFAULT_MAX_LINES = 24
#: A line read with fewer than 17 characters (a fragment of the line the detector
#: found) is read again grown along its axis to hold 17 at these margins, in turn,
#: if it showed at least GROW_MIN_CHARS. On 2,000 generated scenes (detector 1.3.0,
#: recognizer 1.2.1): exact 28.0 -> 32.2 %, wrong 1.41 -> 1.54 % of 2,270 VINs. A
#: second margin, 1.45, cost three more crops per refused fragment (read_frame at
#: 1280x720, median 43.8 -> 53.9 ms on the 2-core Xeon) for 0.2 points exact. Tried
#: and dropped: re-reading rule-passing reads below the threshold from a taller or
#: longer crop, +1.4 points exact but +0.5 points wrong (a second chance to be
#: confidently wrong).
GROW_MARGINS = (1.15,)
GROW_MIN_CHARS = 6
#: Where the growth goes (``stretch_quad``'s ``before``): both ends alike, then only
#: past the end, then only ahead of the start, because the map often finds just
#: the first or the last half of a line. Each extra crop is one more chance to force
#: other text into a VIN, so a grown read counts only at GROW_MIN_CONFIDENCE. On
#: 2,000 generated scenes (seed 31337, detector 1.4.0, default threshold): centred
#: only 35.3 % exact, 2.35 % wrong; all three with a 0.95 floor 37.4 % / 2.49 %;
#: with the 0.99 floor 36.8 % / 2.13 %, better on both counts.
GROW_PLACEMENTS = (0.5, 0.0, 1.0)
GROW_MIN_CONFIDENCE = 0.99
#: A fragment is retried (ink extent, then growth) whatever the VIN rules refused it
#: for, not only ``not_17_characters``: a 10-character fragment is often forced into
#: 17 cheaply enough and then refused as ``unknown_manufacturer`` or
#: ``checksum_failed``. Every retry is one more chance to force other text into a
#: VIN, so a retried read is kept only if its check digit verifies it. On 2,000
#: generated scenes (seed 31337, detectors 1.4.0, recognizer 1.2.1, default
#: threshold): retrying only not_17 lines, with growth alone, 36.8 % exact / 2.00 %
#: wrong / 12 false reads on 263 VIN-less scenes; retrying every refused fragment
#: with ink extent and growth, 40.5 / 2.44 / 14; the same, keeping only
#: check-digit-valid retries, 39.0 / 2.00 / 11.
#: A retried crop is aligned into 17 characters only when either orientation shows
#: 17 give or take this many on its own (``Reader.recognize``'s screen): the same
#: reads on 2,000 generated scenes, two alignments saved on most retried crops.
SCREEN_SLACK = 3
#: The ink extent is read only when it is at least this much longer than the fragment.
INK_MIN_GROWTH = 1.1
#: A retried fragment is first moved onto its band of ink across the line
#: (``extent.ink_band``) and then followed along it; that crop is read unless
#: it is no longer and its height within this ratio of the fragment's. On
#: 2,000 generated scenes (seed 31337, detector 1.4.0, recognizer 1.2.1,
#: default threshold): 39.5 % exact / 1.78 % wrong / 7 false reads on 263
#: VIN-less scenes -> 40.8 / 1.86 / 8 (at 0.95: 38.4 / 1.46 / 4 -> 39.8 / 1.55 /
#: 5); on 1,000 other scenes (seed 2718) 38.7 / 1.51 / 9 -> 39.8 / 1.60 / 9.
#: (Read when its height differs by more than that ratio either way.) Instead of
#: the fragment's own ink extent: 40.0 / 1.86 / 8; the band applied to
#: every detected line before its first read: 40.0 / 1.91 / 8.
BAND_SAME = 0.85
#: A line only a tile found (``Detection.origin``) is published only when its check
#: digit verifies it, as a retried fragment is: tiles enlarge every text line, so they
#: find many more lines that are not VINs, each one more chance to force other text
#: into a VIN. On 1,000 generated scenes (seed 2718, detector 1.6.0, quarter turn,
#: default threshold), exact / wrong / false reads: no tiles 40.7 % / 1.13 % / 6 of
#: 150; tiles 47.2 / 1.41 / 6; tiles with this rule 46.8 / 1.04 / 6. On 2,000 (seed
#: 31337): 41.8 / 1.20 / 10, 48.3 / 1.55 / 12 and 47.3 / 1.33 / 12. The quarter-turned
#: whole frame needs no such rule (it added 0.1 points exact and nothing wrong).
CHECKED_ONLY_ORIGINS = frozenset({"tile", "turned_tile"})
#: When several passes read the same VIN, the earliest one's read (box, confidence,
#: origin) that reaches its publish floor is the one published. Picking the most
#: confident copy instead let int8 rounding choose the pass: on a sample scene x86-64
#: published the tile's box at 0.998 and arm64 the frame's at 0.988, 29 px apart. The
#: whole frame comes first because its crop sees the line's context; tiles and words
#: are there for recall. On 1,000 generated scenes (seed 2718, tiles, quarter turn,
#: words, threshold 0.8): most confident copy 58.29 % exact / 1.41 % wrong / 9 false
#: reads; earliest pass 57.53 / 1.51 / 8; earliest publishable pass 58.47 / 1.41 / 9.
PASS_ORDER = ("frame", "turned", "tile", "turned_tile", "words", "turned_words")
#: The word pass (``agent/vision/words.py``, ``Reader.words``) proposes level words of
#: about 17 characters from the frame's own character shapes; each is read even where
#: a detection overlaps it, because its quad is tight on the 17 characters where the
#: map's is often a fragment or takes in a ``VIN:`` prefix. At most MAX_WORDS per frame
#: (generated scenes have at most 5). On 1,000 generated scenes (seed 2718, tiles and
#: quarter turn, default threshold), exact / wrong / false reads: without words 46.8 %
#: / 1.04 % / 6 of 150; words skipped where a detection overlaps them 50.0 / 1.32 / 7;
#: read everywhere 56.2 / 1.41 / 8. On 300 plainly printed VINs from a second
#: generator (``benchmarks/plain.py``): 36.3 / 0.33, 63.0 / 0.33 and 73.7 / 0.33.
MAX_WORDS = 8
#: A word read alone (no barcode agrees) is published only from this confidence: a
#: word of 17 characters is as often a VIN-shaped label line or part number, which
#: the recognizer can force into a valid VIN. On the same 1,000 scenes: at the
#: default threshold 56.2 / 1.41 / 8, from 0.9 55.6 / 1.22 / 8, from 0.95 54.7 /
#: 1.13 / 8, from 0.98 52.7 / 1.04 / 8; on the 300 plain VINs 73.7, 72.7, 72.3 and
#: 69.7 % exact, 0.33 % wrong throughout (level words only). With the quarter-turned
#: frame's words too, from 0.95: 1,000 scenes 57.8 / 1.41 / 9; 2,000 (seed 31337)
#: 47.3 / 1.33 / 12 without words -> 58.0 / 1.95 / 16 (with words.py's widest-gap cut
#: and run-together glyphs, as shipped: 57.9 / 1.32 / 9 and 58.0 / 1.87 / 15); most
#: of the wrong ones are VIN-shaped distractors with no check digit to refuse them.
#: A refused word
#: is not retried (ink extent, growth): the same reads but two (57.8 -> 57.6 % exact),
#: and a quarter less time.
WORD_MIN_CONFIDENCE = 0.95
WORD_ORIGINS = frozenset({"words", "turned_words"})
#: Margins added around a detected line before rectifying, in line heights.
PAD_ENDS = 0.5
PAD_ABOVE_BELOW = 0.3
#: Confidence of a valid barcode VIN alone: barcodes carry their own
#: error detection, so a wrong decode that also passes the VIN rules is rare.
BARCODE_CONFIDENCE = 0.97
BARCODE_NO_CHECKSUM_CONFIDENCE = 0.9


@dataclass
class LineRead:
    """A VIN found in a frame, from OCR, a barcode or both."""

    vin: str
    confidence: float
    checksum_valid: bool
    quad: np.ndarray
    box: dict[str, int]
    source: str  # "ocr" | "barcode" | "both"
    ocr: Read | None = None
    barcode: BarcodeRead | None = None
    #: The detector pass that found the line (``Detection.origin``); "" for a barcode.
    origin: str = ""


@dataclass
class Miss:
    """A VIN-like line that did not yield a publishable read, and why."""

    box: dict[str, int]
    #: too_small | not_17_characters | checksum_failed | unknown_manufacturer |
    #: unverified_tile | below_threshold
    reason: str
    vin: str | None = None
    confidence: float = 0.0
    #: The weak read itself, so that several frames can still add up to a
    #: confident one (the daemon fuses them).
    read: LineRead | None = None


@dataclass
class FrameResult:
    reads: list[LineRead] = field(default_factory=list)
    misses: list[Miss] = field(default_factory=list)
    timing_ms: dict[str, float] = field(default_factory=dict)
    width: int = 0
    height: int = 0


def pad_quad(quad: np.ndarray) -> np.ndarray:
    """Grow a tight text-line quad by the margins the recognizer was trained with.

    Training crops carry about half a character height of background at each
    end and a third above and below; a crop cut exactly at the ink would put
    the end characters on the image border, which the model has rarely seen.
    """
    q = np.asarray(quad, np.float32)
    _, _, length, height = quad_axes(q)
    if length <= 0 or height <= 0:
        return q
    return expand_quad(q, along=PAD_ENDS * height * 2 / length, across=PAD_ABOVE_BELOW * 2)


def rejection(read: Read, forced: float) -> str | None:
    """Why the VIN rules refuse an OCR read of one line (a ``Miss`` reason), or None.

    ``forced`` is the cost of aligning the line's columns into 17 characters
    (``Recognizer.aligned``). The threshold is applied separately.
    """
    if forced > MAX_FORCED_COST:
        # A line of 16 or 18 characters: any 17 read from it is invented.
        return "not_17_characters"
    if read.decoded.checksum_required and not read.decoded.checksum_valid:
        return "checksum_failed"
    if not read.decoded.checksum_valid and not vin.known_wmi(read.vin):
        # Nothing verifies this read: a label's GVWR or part-number line forced
        # into 17 VIN characters must at least name a known manufacturer.
        return "unknown_manufacturer"
    return None


class Reader:
    """Models loaded once; ``read_frame`` is safe to call for every frame."""

    def __init__(
        self,
        models_dir: Path | str | None = None,
        runtime: RuntimeConfig | None = None,
        policy: vin.ChecksumPolicy | str = vin.ChecksumPolicy.AUTO,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        barcodes: bool = True,
        tiles: bool = False,
        quarter_turn: bool = False,
        max_lines: int = DEFAULT_MAX_LINES,
        turned_barcodes: bool = False,
        words: bool = True,
        second_look: bool = True,
    ) -> None:
        manifest = load_manifest(models_dir)
        self.detector = Detector(manifest, runtime)
        self.recognizer = Recognizer(manifest, runtime)
        self.policy = vin.ChecksumPolicy(policy)
        self.min_confidence = min_confidence
        self.barcodes = barcodes
        self.tiles = tiles
        self.quarter_turn = quarter_turn
        self.turned_barcodes = turned_barcodes
        self.max_lines = max_lines
        self.words = words
        self.second_look = second_look
        self.models = {
            "detector": {"version": self.detector.version, "sha256": self.detector.sha256},
            "recognizer": {"version": self.recognizer.version, "sha256": self.recognizer.sha256},
        }

    def recognize(
        self, frame: np.ndarray, det: Detection, screen: bool = False, second_look: bool = False
    ) -> tuple[Read, float, int] | None:
        """Read a detected line both ways round and keep the likelier reading: the read,
        the cost of forcing it into 17 characters, and how many characters it showed.
        With ``second_look``, a read the VIN rules or its publish floor refuse is read
        again from the crop's reframed views, fused (``Recognizer.aligned_views``).

        The detector's quads do not know which end the text starts at (a
        photo can be upside down), so the 180-degree turn is scored too;
        only the likelier orientation pays for the constrained decode. With
        ``screen``, a crop that shows nowhere near 17 characters either way
        round is None before any alignment (most retried crops are that).
        """
        crop = rectify(frame, pad_quad(det.quad))
        crops = (crop, crop[::-1, ::-1])
        views = [self.recognizer.columns(view) for view in crops]
        if screen and all(abs(count_characters(c) - vin.VIN_LENGTH) > SCREEN_SLACK for c in views):
            return None
        readings = []
        for view, columns in zip(crops, views, strict=True):
            probs, cost = align(columns)
            score = float(np.log(np.maximum(probs.max(axis=1), 1e-12)).sum())
            readings.append((score, probs, cost, columns, view))
        _, probs, cost, columns, view = max(readings, key=lambda x: x[0])
        read = self.recognizer.read_probs(probs, self.policy)
        seen = count_characters(columns)
        if second_look and self.second_look and abs(seen - vin.VIN_LENGTH) <= SCREEN_SLACK:
            floor = publish_floor(
                self.min_confidence, read.decoded.checksum_valid, "ocr", {det.origin}
            )
            if rejection(read, cost) is not None or read.confidence < floor:
                again = self._second_look(view, probs, cost, det.origin)
                if again is not None:
                    return again[0], again[1], seen
        return read, cost, seen

    def _second_look(
        self, view: np.ndarray, probs: np.ndarray, cost: float, origin: str
    ) -> tuple[Read, float] | None:
        """The refused read of ``view`` (its ``probs`` and ``cost``) read again from the
        crop's reframed views fused, and its cost; None unless that read is publishable.

        One more chance to force text into a VIN, so as for retries: only a read
        its check digit verifies, and one the threshold lets through. 1,000
        generated scenes (seed 2718, detector 1.6.0, recognizer 1.2.1, vin-agent
        eval's defaults), exact / wrong / false reads: without 58.47 % / 1.41 % /
        9 of 150; with 59.32 / 1.51 / 9; also keeping unverified second looks
        59.89 / 1.60 / 11; 2,000 (seed 31337) 58.53 / 1.91 / 15 of 266 -> 60.70 /
        2.04 / 15.
        """
        fused, fused_cost = self.recognizer.aligned_views(view, (probs, cost))
        again = self.recognizer.read_probs(fused, self.policy)
        need = publish_floor(self.min_confidence, True, "ocr", {origin})
        if (
            again.decoded.checksum_valid
            and rejection(again, fused_cost) is None
            and again.confidence >= need
        ):
            return again, fused_cost
        return None

    def _read_line(
        self, frame: np.ndarray, det: Detection, retry: bool = True, screen: bool = False
    ) -> LineRead | Miss:
        """One detected line: an OCR read that passes the VIN rules, or the reason it did not.

        ``retry``: a refused fragment is retried (``_retried``); ``screen``: see ``recognize``.
        """
        if det.height_px < MIN_LINE_HEIGHT_PX:
            return Miss(det.box, "too_small")
        recognized = self.recognize(frame, det, screen, second_look=retry)
        if recognized is None:
            return Miss(det.box, "not_17_characters")
        read, forced, seen = recognized
        reason = rejection(read, forced)
        unverified = not read.decoded.checksum_valid
        if reason is None and unverified and det.origin in CHECKED_ONLY_ORIGINS:
            reason = "unverified_tile"
        # A word's quad already spans its characters: growing it only reaches other text.
        retry = retry and det.origin not in WORD_ORIGINS
        if retry and reason is not None and seen < vin.VIN_LENGTH:
            again = self._retried(frame, det, seen)
            if again is not None:
                return again
        if reason is not None:
            return Miss(det.box, reason, read.vin, read.confidence)
        return LineRead(
            read.vin,
            read.confidence,
            read.decoded.checksum_valid,
            det.quad,
            det.box,
            "ocr",
            ocr=read,
            origin=det.origin,
        )

    def _word_lines(self, frame: np.ndarray) -> list[Detection]:
        """Words of about 17 characters (``words.find_words``), also in the quarter-turned
        frame with ``quarter_turn``."""
        h, w = frame.shape[:2]
        words = [Detection(q, quad_box(q, w, h), 0.0, origin="words") for q in find_words(frame)]
        if self.quarter_turn:
            quarter = cv2.rotate(frame, cv2.ROTATE_90_CLOCKWISE)
            turned = [Detection(q, quad_box(q, h, w), 0.0) for q in find_words(quarter)]
            words += turned_back(turned, w, h, "turned_words")
        return words[:MAX_WORDS]

    def _retried(self, frame: np.ndarray, det: Detection, seen: int) -> LineRead | None:
        """A read of a fragment's whole line that the check digit verifies, or None.

        A crop showing too few characters is usually a fragment of the line
        whose neighbours the detector's map missed. First the line is moved
        onto its band of ink across and followed through the frame to the ends
        of its ink, then followed as found; failing that, it is grown to
        hold 17 characters at the margins and placements above. The threshold
        is applied to the result later, as to any read.
        """
        h, w = frame.shape[:2]
        quads = []
        # The map's quads are a cell or two off in height and often a fragment in
        # length: the frame's own ink says where the line is across, then along.
        banded = ink_extent(frame, ink_band(frame, det.quad))
        _, _, band_length, band_height = quad_axes(banded)
        _, _, length, height = quad_axes(det.quad)
        moved = min(band_height, height) / max(band_height, height) < BAND_SAME
        if band_length > INK_MIN_GROWTH * length or moved:
            quads.append(banded)
        inked = ink_extent(frame, det.quad)
        if quad_axes(inked)[2] > INK_MIN_GROWTH * length:
            quads.append(inked)
        if GROW_MIN_CHARS <= seen:
            # Out-of-frame parts of a grown quad are filled by rectify's border replication.
            quads.extend(
                stretch_quad(det.quad, vin.VIN_LENGTH / seen * margin, before)
                for margin in GROW_MARGINS
                for before in GROW_PLACEMENTS
            )
        for quad in quads:
            again = self._read_line(
                frame,
                Detection(quad, quad_box(quad, w, h), det.score, origin=det.origin),
                False,
                True,
            )
            if (
                isinstance(again, LineRead)
                and again.checksum_valid
                and again.confidence >= GROW_MIN_CONFIDENCE
            ):
                return again
        return None

    def read_frame(self, frame: np.ndarray) -> FrameResult:
        h, w = frame.shape[:2]
        result = FrameResult(width=w, height=h)
        t0 = time.perf_counter()
        # Every stage works on gray: convert once, not in each of them.
        if frame.ndim == 3:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        detections = self.detector.detect(frame, self.tiles, self.quarter_turn)
        if len(detections) > self.max_lines:
            logger.debug("reading %d of %d lines (max_lines)", self.max_lines, len(detections))
            detections = detections[: self.max_lines]  # detect() sorts them best first
        if self.words:
            detections += self._word_lines(frame)
        t1 = time.perf_counter()
        ocr_reads: list[LineRead] = []
        for det in detections:
            line = self._read_line(frame, det)
            if isinstance(line, Miss) and det.parts:
                # The joined fragments are not one VIN: read them one by one.
                lines = [self._read_line(frame, part) for part in det.parts]
            else:
                lines = [line]
            for one in lines:
                if isinstance(one, Miss):
                    result.misses.append(one)
                else:
                    ocr_reads.append(one)
        t2 = time.perf_counter()
        # Scanning for vertical barcodes triples the barcode pass, the largest cost
        # of a frame, so it is asked for apart from the detector's quarter turn.
        codes = read_barcodes(frame, self.policy, self.turned_barcodes) if self.barcodes else []
        t3 = time.perf_counter()
        reads = self._fuse(ocr_reads, codes, w, h, self.required)
        for r in reads:
            if r.confidence >= self.required(r):
                result.reads.append(r)
            else:
                result.misses.append(Miss(r.box, "below_threshold", r.vin, r.confidence, r))
        result.reads.sort(key=lambda r: -r.confidence)
        result.timing_ms = {
            "detect": 1000 * (t1 - t0),
            "recognize": 1000 * (t2 - t1),
            "barcode": 1000 * (t3 - t2),
            "fuse": 1000 * (time.perf_counter() - t3),
        }
        return result

    def required(self, r: LineRead) -> float:
        """The confidence one read must reach to be published."""
        return publish_floor(self.min_confidence, r.checksum_valid, r.source, {r.origin})

    @staticmethod
    def _fuse(
        ocr: list[LineRead],
        codes: list[BarcodeRead],
        w: int,
        h: int,
        required: Callable[[LineRead], float] | None = None,
    ) -> list[LineRead]:
        """Merge OCR and barcode reads of the same VIN; agreement raises confidence.

        Two independent channels that agree are both wrong only if both err
        the same way, so the miss probabilities multiply. Passes of the OCR channel
        that read the same VIN are not independent (one recognizer, overlapping
        crops): the earliest pass's read stands (PASS_ORDER), among the reads that reach
        ``required`` when any does.
        """
        floor = required or (lambda r: 0.0)
        merged: dict[str, LineRead] = {}
        for r in ocr:
            first = merged.get(r.vin)
            if first is None or _pass_rank(r, floor) < _pass_rank(first, floor):
                merged[r.vin] = r
        for code in codes:
            conf = BARCODE_CONFIDENCE if code.checksum_valid else BARCODE_NO_CHECKSUM_CONFIDENCE
            if code.vin in merged and merged[code.vin].source == "ocr":
                o = merged[code.vin]
                o.confidence = 1.0 - (1.0 - o.confidence) * (1.0 - conf)
                o.source, o.barcode = "both", code
            elif code.vin not in merged:
                box = quad_box(code.quad, w, h)
                merged[code.vin] = LineRead(
                    code.vin, conf, code.checksum_valid, code.quad, box, "barcode", barcode=code
                )
        return list(merged.values())


def publish_floor(
    min_confidence: float, checksum_valid: bool, source: str, origins: Collection[str]
) -> float:
    """The confidence a read from these passes must reach to be published.

    Also for a visit fused over frames (``agent.fusion``): averaging frames does
    not make a word-only read less likely to be label text, nor does it give a
    tile-only read the check digit it lacks.
    """
    need = required_confidence(min_confidence, checksum_valid, source)
    if source != "ocr" or not origins:
        return need
    if all(o in WORD_ORIGINS for o in origins):
        return max(need, WORD_MIN_CONFIDENCE)
    if not checksum_valid and all(o in CHECKED_ONLY_ORIGINS for o in origins):
        return math.inf
    return need


def _pass_rank(r: LineRead, floor: Callable[[LineRead], float]) -> tuple[bool, int, float]:
    """Sort key: a publishable read first, then the earlier pass, then the more confident."""
    rank = PASS_ORDER.index(r.origin) if r.origin in PASS_ORDER else len(PASS_ORDER)
    return r.confidence < floor(r), rank, -r.confidence
