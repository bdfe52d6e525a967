"""One capture thread per camera, decoupled from inference.

Live sources keep only the newest frame, so a slow CPU drops frames instead
of lagging behind the scene.  Replays (``live = False``) hand over every
frame and wait for the consumer.  A lost camera is reopened with backoff,
and every change of state is reported through ``on_state``.  A stream lost
soon after it was opened (a camera that accepts the connection and then
sends garbage) is also reopened with backoff, not in a tight loop that would
flood the log and the retained status topic.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import cv2
import numpy as np

from agent.sources.base import Frame, Source, SourceError

logger = logging.getLogger(__name__)

BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 30.0
#: A stream that ran at least this long before it was lost is reopened at once;
#: one lost sooner waits BACKOFF_MIN_S, then twice as long each time, up to BACKOFF_MAX_S.
STABLE_S = 10.0


class MotionGate:
    """Skips frames where nothing moved, but lets one through every ``keepalive_s``.

    The keep-alive matters: a vehicle standing still at a gate is still there,
    and its visit must not time out.
    """

    def __init__(self, threshold: float, keepalive_s: float = 2.0) -> None:
        self.threshold = threshold
        self.keepalive_s = keepalive_s
        self.previous: np.ndarray | None = None
        self.last_pass = -1e18

    def __call__(self, frame: Frame) -> bool:
        small = cv2.resize(frame.image, (64, 36), interpolation=cv2.INTER_AREA)
        small = small.mean(axis=2) if small.ndim == 3 else small.astype(np.float32)
        prev, self.previous = self.previous, small
        if prev is None or frame.timestamp - self.last_pass >= self.keepalive_s:
            self.last_pass = frame.timestamp
            return True
        if float(np.abs(small - prev).mean()) >= self.threshold:
            self.last_pass = frame.timestamp
            return True
        return False


class Capture(threading.Thread):
    """Reads a source in the background; ``get`` returns the next frame to process."""

    def __init__(
        self,
        camera: str,
        source: Source,
        *,
        max_fps: float | None = None,
        motion_threshold: float | None = None,
        on_state: Callable[[str, bool, str], None] | None = None,
    ) -> None:
        super().__init__(name=f"capture-{camera}", daemon=True)
        self.camera = camera
        self.source = source
        self.min_interval = 1.0 / max_fps if max_fps else 0.0
        self.gate = MotionGate(motion_threshold) if motion_threshold else None
        self.on_state = on_state
        self.cond = threading.Condition()
        self.slot: Frame | None = None
        self.ended = False
        self.error: str | None = None
        self.online: bool | None = None  # unknown until the first open attempt
        self.captured = 0
        self.dropped = 0
        self.skipped_still = 0
        self._stop_event = threading.Event()
        self._last_delivered = -1e18

    def _set_state(self, online: bool, reason: str) -> None:
        if online != self.online:
            self.online = online
            if online:
                logger.info("camera %s online: %s", self.camera, reason)
            else:
                logger.warning("camera %s offline: %s", self.camera, reason)
            if self.on_state:
                self.on_state(self.camera, online, reason)

    def _open_with_backoff(self) -> bool:
        delay = BACKOFF_MIN_S
        while not self._stop_event.is_set():
            try:
                self.source.open()
                self._set_state(True, self.source.describe())
                return True
            except SourceError as exc:
                if self.source.finite:
                    # A missing replay file will not appear by waiting.
                    self.error = str(exc)
                    logger.error("camera %s: %s", self.camera, exc)
                    return False
                self._set_state(False, str(exc))
                logger.warning("camera %s: %s; retrying in %.0f s", self.camera, exc, delay)
                self._stop_event.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
        return False

    def _deliver(self, frame: Frame) -> None:
        with self.cond:
            if self.source.live:
                if self.slot is not None:
                    self.dropped += 1
                self.slot = frame
                self.cond.notify_all()
                return
            while self.slot is not None and not self._stop_event.is_set():
                self.cond.wait(0.1)
            self.slot = frame
            self.cond.notify_all()

    def run(self) -> None:
        try:
            delay = 0.0  # before reopening a stream that was lost soon after opening
            while not self._stop_event.is_set():
                if delay:
                    logger.warning("camera %s: reopening in %.0f s", self.camera, delay)
                    if self._stop_event.wait(delay):
                        break
                if not self._open_with_backoff():
                    break
                opened = time.monotonic()
                try:
                    while not self._stop_event.is_set():
                        frame = self.source.read()
                        if frame is None:
                            self._finish()
                            return
                        self.captured += 1
                        if self.source.live and (
                            frame.timestamp - self._last_delivered < self.min_interval
                        ):
                            continue
                        if self.gate is not None and not self.gate(frame):
                            self.skipped_still += 1
                            continue
                        self._last_delivered = frame.timestamp
                        self._deliver(frame)
                except SourceError as exc:
                    self._set_state(False, str(exc))
                finally:
                    self.source.close()
                if time.monotonic() - opened >= STABLE_S:
                    delay = 0.0
                else:
                    delay = min(max(2 * delay, BACKOFF_MIN_S), BACKOFF_MAX_S)
        except Exception:  # the thread must report, not die silently
            logger.exception("camera %s: capture thread failed", self.camera)
            self.error = "capture thread failed; see the log"
        self._finish()

    def _finish(self) -> None:
        with self.cond:
            self.ended = True
            self.cond.notify_all()

    def get(self, timeout: float) -> Frame | None:
        """The next frame, or ``None`` after ``timeout`` seconds or at the end."""
        with self.cond:
            if self.slot is None and not self.ended:
                self.cond.wait(timeout)
            frame, self.slot = self.slot, None
            self.cond.notify_all()
            return frame

    @property
    def finished(self) -> bool:
        """The source has ended and every frame has been taken."""
        with self.cond:
            return self.ended and self.slot is None

    def request_stop(self) -> None:
        """Ask the thread to stop without waiting (stop many cameras in parallel)."""
        self._stop_event.set()
        self.source.close()
        with self.cond:
            self.cond.notify_all()

    def stop(self, timeout: float = 5.0) -> None:
        self.request_stop()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)
