"""USB/V4L2 cameras, RTSP/HTTP streams and video files through OpenCV.

A video file is paced at its own frame rate by default, as a camera would
deliver it; ``realtime = false`` processes every frame as fast as possible
(replays, tests) and stamps frames with media time, so visit timing is the
same whatever the speed of the machine.

A stream that stalls (socket open, nothing sent) fails its read after
``read_timeout_s`` through FFmpeg's interrupt callback, so the capture
thread reopens it.  ``close`` may be called from another thread while a
read is blocked (``Capture.stop`` at SIGTERM/SIGHUP): releasing a
``cv2.VideoCapture`` under a running ``read`` crashes the process
(SIGSEGV), so the release is then left to the reading thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.sources.base import Frame, Source, SourceError

logger = logging.getLogger(__name__)


class OpenCVConfig(BaseModel):
    """A V4L2 device, a stream URL or a video file."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["opencv"] = Field(description="capture through OpenCV")
    url: str = Field(
        description="device number (0), device path (/dev/video0), rtsp:// or http:// "
        "stream URL, or a video file path"
    )
    width: int | None = Field(None, gt=0, description="requested capture width (devices)")
    height: int | None = Field(None, gt=0, description="requested capture height (devices)")
    realtime: bool = Field(
        True,
        description="video files: deliver at the file's frame rate and drop frames when "
        "inference is slower (like a camera); false processes every frame",
    )
    open_timeout_s: float = Field(10.0, gt=0, description="give up opening a stream after this")
    read_timeout_s: float = Field(
        10.0, gt=0, description="a stream that delivers nothing for this long is reopened"
    )


def _is_file(url: str) -> bool:
    return "://" not in url and not url.isdigit() and not url.startswith("/dev/")


class OpenCVSource(Source):
    def __init__(self, config: OpenCVConfig) -> None:
        self.config = config
        self.file = _is_file(config.url)
        self.finite = self.file
        self.live = not self.file or config.realtime
        self.cap: Any = None
        self.index = 0
        self._lock = threading.Lock()
        self._reading = False  # a read is running (the capture thread)
        self._orphan: Any = None  # closed during that read: released when it returns
        self._start_wall = 0.0
        self._start_mono = 0.0

    def describe(self) -> str:
        # Stream URLs may carry credentials; never log them.
        url = self.config.url
        if "@" in url and "://" in url:
            scheme, rest = url.split("://", 1)
            url = f"{scheme}://***@{rest.split('@', 1)[1]}"
        return f"opencv {url}"

    def open(self) -> None:
        import cv2

        url = self.config.url
        if self.file and not os.path.exists(url):
            raise SourceError(f"{url}: no such video file")
        if url.startswith("/dev/") and not os.path.exists(url):
            raise SourceError(f"{url}: no such camera device; check the cable and `ls /dev/video*`")
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(self.config.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(self.config.read_timeout_s * 1000),
        ]
        target: int | str = int(url) if url.isdigit() else url
        cap = cv2.VideoCapture(target, cv2.CAP_ANY, params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"{self.describe()}: cannot open; check the device or URL, and that the user "
                "running vin-agent may read it (group video)"
            )
        if self.config.width and self.config.height and not self.file:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.config.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.config.height)
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 1000 else None
        with self._lock:
            self.cap = cap
        self._start_wall, self._start_mono = time.time(), time.monotonic()
        logger.info("opened %s (%s fps)", self.describe(), self.fps or "unknown")

    def read(self) -> Frame | None:
        import cv2

        with self._lock:
            cap = self.cap
            if cap is None:
                raise SourceError(f"{self.describe()}: not open")
            self._reading = True
        try:
            ok, image = cap.read()
        finally:
            with self._lock:
                self._reading = False
                orphan, self._orphan = self._orphan, None
        if orphan is not None:  # closed by another thread while we were reading
            orphan.release()
            raise SourceError(f"{self.describe()}: closed")
        if not ok or image is None:
            if self.file:
                return None
            raise SourceError(f"{self.describe()}: no frame (stream lost or stalled)")
        self.index += 1
        if self.file:
            media_s = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if not media_s and self.fps:
                media_s = self.index / self.fps
            if self.config.realtime:
                # Pace like a camera: wait until this frame's moment has come.
                delay = self._start_mono + media_s - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            stamp = self._start_wall + media_s
        else:
            stamp = time.time()
        return Frame(image, stamp, self.index)

    def close(self) -> None:
        with self._lock:
            cap, self.cap = self.cap, None
            if cap is not None and self._reading:
                self._orphan = cap  # the reading thread releases it when its read returns
                return
        if cap is not None:
            cap.release()
