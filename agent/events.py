"""Visit events -> JSON payloads in the CarsXE field layout, plus what a fleet needs.

``seq`` is monotonic per device across restarts: the counter lives in the
state directory, so a backend can spot gaps and reorderings.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from pathlib import Path
from typing import Any

from agent import vin
from agent.fusion import VisitEvent
from agent.vision.calibration import required_confidence

logger = logging.getLogger(__name__)


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="milliseconds")


class SeqCounter:
    """A persistent counter; reserves blocks so the disk is written rarely.

    After a crash the counter resumes at the end of the reserved block, so
    numbers may skip but never repeat or go backwards.
    """

    BLOCK = 100

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.next = 1
        self.limit = 0
        if path is not None:
            try:
                self.next = int(path.read_text().strip() or "0") + 1
            except FileNotFoundError:
                pass
            except (OSError, ValueError) as exc:
                logger.error("%s unreadable (%s); seq restarts from the current time", path, exc)
                self.next = int(dt.datetime.now(tz=dt.UTC).timestamp() * 1000)
        self.limit = self.next - 1

    def _reserve(self) -> None:
        self.limit = self.next + self.BLOCK - 1
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        try:
            with tmp.open("w") as fh:
                fh.write(f"{self.limit}\n")
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(self.path)
        except OSError as exc:
            # Losing seq persistence must not stop messages; say so loudly.
            logger.error("cannot persist seq to %s: %s", self.path, exc)

    def take(self) -> int:
        with self.lock:
            if self.next > self.limit:
                self._reserve()
            value = self.next
            self.next += 1
            return value


def payload(
    event: VisitEvent,
    *,
    device_id: str,
    camera: str,
    seq: int,
    min_confidence: float,
    models: dict[str, Any] | None,
) -> dict[str, Any]:
    """The message for one visit event."""
    v = event.visit
    need = required_confidence(min_confidence, v.checksum_valid, v.source)
    success = v.published and v.vin is not None and v.confidence >= need
    if event.type == "end" and v.published:
        success = True  # the visit was read; its end carries the final read
    out: dict[str, Any] = {
        "success": success,
        "vin": v.vin if success else None,
        "box": v.box if success else None,
        "confidence": round(v.confidence, 4) if success else 0.0,
        "candidates": [],
        "message": "",
        "type": event.type,
        "event_id": v.event_id,
        "seq": seq,
        "device_id": device_id,
        "camera": camera,
        "timestamp": iso(event.timestamp),
        "start_time": iso(v.start_time),
        "frames": v.frames,
        "checksum_valid": v.checksum_valid if success else None,
        "source": v.source if success else None,
        "decoded": vin.decode(v.vin) if success and v.vin else None,
        "model": models,
    }
    if event.type == "end":
        out["end_time"] = iso(v.last_seen)
    if success:
        out["candidates"] = [{"vin": v.vin, "confidence": out["confidence"], "box": v.box}] + [
            {"vin": c, "confidence": round(p, 4), "box": v.box} for c, p in v.candidates
        ]
    else:
        reason = v.reasons.most_common(1)[0][0] if v.reasons else "below_threshold"
        out["reason"] = reason
        out["message"] = f"a VIN-like line was seen in {v.frames} frame(s) but not read: {reason}"
        if v.box is not None:
            out["box"] = v.box
    return out
