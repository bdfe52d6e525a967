"""USB/V4L2 cameras, RTSP/HTTP streams and video files through OpenCV.

A video file is paced at its own frame rate by default, as a camera would
deliver it; ``realtime = false`` processes every frame as fast as possible
(replays, tests) and stamps frames with media time, so visit timing is the
same whatever the speed of the machine.
"""

from __future__ import annotations

import logging
import os
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
        ms = int(self.config.open_timeout_s * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
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
        self.cap = cap
        self._start_wall, self._start_mono = time.time(), time.monotonic()
        logger.info("opened %s (%s fps)", self.describe(), self.fps or "unknown")

    def read(self) -> Frame | None:
        import cv2

        if self.cap is None:
            raise SourceError(f"{self.describe()}: not open")
        ok, image = self.cap.read()
        if not ok or image is None:
            if self.file:
                return None
            raise SourceError(f"{self.describe()}: no frame (stream lost or stalled)")
        self.index += 1
        if self.file:
            media_s = self.cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
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
        if self.cap is not None:
            self.cap.release()
            self.cap = None
