"""Publisher that writes one JSON line per message to a stream (stdout by default).

Used when no broker is configured: the reads can be piped into jq, a log
shipper or another program. Lines look like ``{"topic": ..., "payload": ...}``;
snapshots are not written as image data (a JPEG per line would swamp the
stream), only their size and content type.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import threading
from typing import Any, TextIO

from agent.publish.topics import Topics

logger = logging.getLogger(__name__)


class StdoutPublisher:
    """Same interface as MqttPublisher; "connected" while the stream accepts writes."""

    def __init__(
        self, device_id: str = "local", stream: TextIO | None = None, prefix: str = "vin"
    ) -> None:
        self.topics = Topics(prefix, device_id)
        self._stream = stream
        # Several threads (cameras, stats) may publish at once; lines must not interleave.
        self._lock = threading.Lock()
        self._next_id = 0
        self._count = {"written": 0, "failed": 0}
        self._broken = False

    def __repr__(self) -> str:
        return f"StdoutPublisher(device_id={self.topics.device_id!r})"

    def start(self) -> None:
        """Nothing to connect to."""

    def stop(self, timeout: float = 5.0) -> None:
        """Flush the stream."""
        with self._lock:
            self._flush()

    @property
    def connected(self) -> bool:
        """False once the stream has failed (e.g. the reader of the pipe went away)."""
        return not self._broken

    def publish_event(self, camera: str, payload: dict[str, Any]) -> int:
        """Write the event; returns a sequence number (there is no outbox)."""
        if not isinstance(payload, dict):
            raise TypeError(f"payload must be a dict, not {type(payload).__name__}")
        topic = self.topics.events(camera)
        with self._lock:
            self._next_id += 1
            self._write(topic, payload)
            return self._next_id

    def publish_status(self, camera: str, online: bool) -> None:
        """Write the camera state."""
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self._locked_write(
            self.topics.status(camera), {"camera": camera, "online": bool(online), "time": now}
        )

    def publish_stats(self, stats: dict[str, Any]) -> None:
        """Write the statistics."""
        self._locked_write(self.topics.stats, stats)

    def publish_snapshot(self, camera: str, jpeg: bytes) -> None:
        """Write a note of the snapshot (size and type), not the image itself."""
        if not isinstance(jpeg, bytes | bytearray):
            raise TypeError(f"jpeg must be bytes, not {type(jpeg).__name__}")
        self._locked_write(
            self.topics.snapshot(camera), {"content_type": "image/jpeg", "bytes": len(jpeg)}
        )

    def stats(self) -> dict[str, Any]:
        """connected, written, failed."""
        with self._lock:
            return {"connected": not self._broken, **self._count}

    def _locked_write(self, topic: str, payload: Any) -> None:
        with self._lock:
            self._write(topic, payload)

    def _write(self, topic: str, payload: Any) -> None:
        # Serialise first: a payload that is not JSON is the caller's bug, raise it.
        line = json.dumps({"topic": topic, "payload": payload}, ensure_ascii=False, allow_nan=False)
        stream = self._stream or sys.stdout  # looked up late so redirection/capture works
        try:
            stream.write(line + "\n")
            stream.flush()  # one line per message, visible at once through a pipe
        except (OSError, ValueError) as exc:
            # OSError: broken pipe / full disk; ValueError: the stream was closed.
            self._count["failed"] += 1
            if not self._broken:
                self._broken = True
                logger.error(
                    "cannot write messages to %s: %s", getattr(stream, "name", stream), exc
                )
            return
        self._count["written"] += 1
        self._broken = False

    def _flush(self) -> None:
        try:
            (self._stream or sys.stdout).flush()
        except (OSError, ValueError):
            pass  # already reported by _write, or nothing was ever written
