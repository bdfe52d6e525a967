"""Reads of the same vehicle across frames, fused into one visit.

Each OCR read carries per-position probabilities; a visit averages them over
its frames and runs the checksum-constrained decoder on the average, so a
character misread in one frame is outvoted by the others.  Averaging
probabilities (not summing log-probabilities) keeps the fused confidence
honest: consecutive frames of one label are far from independent.

A visit publishes ``new`` once its fused read passes the threshold,
``update`` when the VIN or its confidence changes materially, and ``end``
after ``visit_timeout`` seconds without a sighting.  Frame timestamps, not
the wall clock, drive all timing, so a fast replay behaves like the live
camera it was recorded from.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from agent.reader import BARCODE_CONFIDENCE, FrameResult, LineRead, publish_floor
from agent.vision.calibration import DEFAULT_MIN_CONFIDENCE
from agent.vision.decoding import share_doubt
from agent.vision.recognizer import Read

logger = logging.getLogger(__name__)

#: Reads whose VINs differ in at most this many positions belong to one visit.
SAME_VEHICLE_MAX_DIFF = 5
#: A line seen in fewer frames than this and never read is noise, not a missed vehicle.
MIN_FRAMES_FOR_MISS = 2
#: A confidence change at least this large is worth an ``update``.
UPDATE_DELTA = 0.1


@dataclass
class Visit:
    """One vehicle in front of one camera."""

    event_id: str
    start_time: float
    last_seen: float
    frames: int = 0
    prob_sum: np.ndarray | None = None
    n_ocr: int = 0
    #: The reader passes (``LineRead.origin``) of the OCR reads fused so far.
    origins: set[str] = field(default_factory=set)
    barcodes: Counter[str] = field(default_factory=Counter)
    vin: str | None = None
    confidence: float = 0.0
    checksum_valid: bool = False
    source: str = "ocr"
    box: dict[str, int] | None = None
    quad: np.ndarray | None = None
    candidates: list[tuple[str, float]] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    published: bool = False
    published_vin: str | None = None
    published_confidence: float = 0.0
    suppressed: bool = False
    best_confidence: float = 0.0
    best_frame: np.ndarray | None = None


@dataclass(frozen=True)
class VisitEvent:
    """A message to publish about a visit: ``new``, ``update`` or ``end``."""

    type: str
    visit: Visit
    timestamp: float


def _diff(a: str, b: str) -> int:
    return sum(x != y for x, y in zip(a, b, strict=True))


class VisitTracker:
    """Fuses one camera's frame results into visits and the events to publish."""

    def __init__(
        self,
        read_probs: Callable[[np.ndarray], Read],
        *,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        visit_timeout: float = 5.0,
        dedupe_window: float = 60.0,
        keep_best_frame: bool = False,
    ) -> None:
        self.read_probs = read_probs
        self.min_confidence = min_confidence
        self.visit_timeout = visit_timeout
        self.dedupe_window = dedupe_window
        self.keep_best_frame = keep_best_frame
        self.visits: list[Visit] = []
        self.unread: Visit | None = None  # VIN-like lines seen, nothing read yet
        self.recent: dict[str, float] = {}  # VIN -> last time it was seen in a visit
        self._frames_seen = 0  # for the debug trace only

    def _match(self, vin: str) -> Visit | None:
        best, best_diff = None, SAME_VEHICLE_MAX_DIFF + 1
        for v in self.visits:
            if v.vin is not None and (d := _diff(v.vin, vin)) < best_diff:
                best, best_diff = v, d
        return best

    def _new_visit(self, ts: float) -> Visit:
        visit = Visit(event_id=str(uuid.uuid4()), start_time=ts, last_seen=ts)
        self.visits.append(visit)
        return visit

    def _add(self, visit: Visit, line: LineRead, ts: float) -> None:
        visit.last_seen = ts
        if line.ocr is not None:
            probs = line.ocr.probs
            visit.prob_sum = probs.copy() if visit.prob_sum is None else visit.prob_sum + probs
            visit.n_ocr += 1
            visit.origins.add(line.origin)
        if line.barcode is not None:
            visit.barcodes[line.barcode.vin] += 1
        visit.box, visit.quad = line.box, line.quad
        self._refuse(visit)

    def _refuse(self, visit: Visit) -> None:
        """Recompute the visit's VIN and confidence from everything seen so far."""
        ocr: Read | None = None
        if visit.prob_sum is not None:
            ocr = self.read_probs(visit.prob_sum / visit.n_ocr)
        code = visit.barcodes.most_common(1)[0][0] if visit.barcodes else None
        if ocr is not None and code is not None and ocr.vin == code:
            visit.vin, visit.source = code, "both"
            visit.confidence = 1.0 - (1.0 - ocr.confidence) * (1.0 - BARCODE_CONFIDENCE)
        elif code is not None and (ocr is None or ocr.confidence < BARCODE_CONFIDENCE):
            visit.vin, visit.source, visit.confidence = code, "barcode", BARCODE_CONFIDENCE
        elif ocr is not None:
            visit.vin, visit.source, visit.confidence = ocr.vin, "ocr", ocr.confidence
        if ocr is not None:
            rest = [c for c in ocr.decoded.candidates if c.vin != visit.vin][:3]
            visit.candidates = share_doubt(rest, visit.confidence)
            visit.checksum_valid = ocr.decoded.checksum_valid if visit.vin == ocr.vin else True
        else:
            visit.checksum_valid = True  # barcode VINs pass the rules before they get here

    def update(
        self, result: FrameResult, ts: float, frame: np.ndarray | None = None
    ) -> list[VisitEvent]:
        """Take one frame's result; return the events it causes (expiries included)."""
        lines = list(result.reads) + [m.read for m in result.misses if m.read is not None]
        touched: set[str] = set()
        for line in lines:
            visit = self._match(line.vin) or self._new_visit(ts)
            if visit.event_id in touched:
                # Two lines of one frame in one visit (label text and its barcode, say).
                self._add_same_frame(visit, line, ts)
                continue
            visit.frames += 1
            touched.add(visit.event_id)
            self._add(visit, line, ts)
            if (
                self.keep_best_frame
                and frame is not None
                and visit.confidence > (visit.best_confidence)
            ):
                visit.best_confidence, visit.best_frame = visit.confidence, frame
        no_read = [m for m in result.misses if m.read is None]
        if no_read and not lines:
            if self.unread is None:
                self.unread = Visit(event_id=str(uuid.uuid4()), start_time=ts, last_seen=ts)
            self.unread.last_seen = ts
            self.unread.frames += 1
            self.unread.box = no_read[0].box
            for m in no_read:
                self.unread.reasons[m.reason] += 1
        for m in result.misses:
            if m.read is not None:
                self._visit_reason(m.read.vin, m.reason)
        if logger.isEnabledFor(logging.DEBUG):
            # One line per frame, free of random ids, so two runs can be diffed line by line.
            order = {v.event_id: i for i, v in enumerate(self.visits)}
            self._frames_seen += 1
            logger.debug(
                "fusion frame %d: lines=%s misses=%s visits=%s unread=%d",
                self._frames_seen,
                [(ln.vin, round(ln.confidence, 4)) for ln in lines],
                sorted(m.reason for m in result.misses),
                [(order[v.event_id], v.vin, v.frames, round(v.confidence, 4)) for v in self.visits],
                self.unread.frames if self.unread is not None else 0,
            )
        events = [self._publishable(v, ts) for v in self.visits if v.event_id in touched]
        return [e for e in events if e is not None] + self.expire(ts)

    def _add_same_frame(self, visit: Visit, line: LineRead, ts: float) -> None:
        if line.barcode is not None:
            visit.barcodes[line.barcode.vin] += 1
            self._refuse(visit)
        visit.last_seen = ts

    def _visit_reason(self, vin: str, reason: str) -> None:
        visit = self._match(vin)
        if visit is not None:
            visit.reasons[reason] += 1

    def _publishable(self, visit: Visit, ts: float) -> VisitEvent | None:
        if visit.vin is None or visit.suppressed:
            return None
        if not visit.published:
            need = publish_floor(
                self.min_confidence, visit.checksum_valid, visit.source, visit.origins
            )
            if visit.confidence < need:
                return None
            last = self.recent.get(visit.vin)
            if last is not None and ts - last < self.dedupe_window:
                logger.info("%s seen again within the dedupe window; not a new visit", visit.vin)
                visit.suppressed = True
                return None
            visit.published = True
            self.unread = None  # the line that could not be read was this vehicle's
            return self._mark(visit, "new", ts)
        changed = visit.vin != visit.published_vin
        if changed or abs(visit.confidence - visit.published_confidence) >= UPDATE_DELTA:
            return self._mark(visit, "update", ts)
        return None

    def _mark(self, visit: Visit, kind: str, ts: float) -> VisitEvent:
        visit.published_vin, visit.published_confidence = visit.vin, visit.confidence
        return VisitEvent(kind, visit, ts)

    def _end(self, visit: Visit, ts: float) -> VisitEvent | None:
        if visit.vin is not None and (visit.published or visit.suppressed):
            self.recent[visit.vin] = visit.last_seen
        if visit.published:
            return VisitEvent("end", visit, ts)
        if visit.suppressed or visit.frames < MIN_FRAMES_FOR_MISS:
            return None
        # Seen but never read confidently: operators should see the miss.
        if not visit.reasons:
            visit.reasons["below_threshold"] += 1
        visit.published_confidence = visit.confidence
        return VisitEvent("end", visit, ts)

    def expire(self, now: float) -> list[VisitEvent]:
        """End visits not seen for ``visit_timeout`` seconds."""
        events = []
        for visit in [v for v in self.visits if now - v.last_seen > self.visit_timeout]:
            self.visits.remove(visit)
            if (e := self._end(visit, now)) is not None:
                events.append(e)
        if self.unread is not None and now - self.unread.last_seen > self.visit_timeout:
            if self.unread.frames >= MIN_FRAMES_FOR_MISS:
                events.append(VisitEvent("end", self.unread, now))
            self.unread = None
        horizon = now - self.dedupe_window
        self.recent = {k: t for k, t in self.recent.items() if t >= horizon}
        return events

    def flush(self, now: float) -> list[VisitEvent]:
        """End every open visit: the source ended or the agent is stopping."""
        ended = [self._end(visit, now) for visit in self.visits]
        events = [e for e in ended if e is not None]
        self.visits = []
        if self.unread is not None and self.unread.frames >= MIN_FRAMES_FOR_MISS:
            events.append(VisitEvent("end", self.unread, now))
        self.unread = None
        return events
