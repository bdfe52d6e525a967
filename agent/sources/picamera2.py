"""Raspberry Pi cameras through picamera2 (libcamera).

picamera2 comes from apt on Raspberry Pi OS (``python3-picamera2``) and is
imported only when this source is opened, so the package imports anywhere.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.sources.base import Frame, Source, SourceError

logger = logging.getLogger(__name__)

#: libcamera's AfModeEnum values, so libcamera need not be imported here.
AF_MODES = {"manual": 0, "auto": 1, "continuous": 2}


class Picamera2Config(BaseModel):
    """A Raspberry Pi camera module."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["picamera2"] = Field(description="Raspberry Pi camera through picamera2")
    camera_num: int = Field(0, ge=0, description="which camera, for boards with two")
    width: int = Field(1920, gt=0, description="main stream width (recognition)")
    height: int = Field(1080, gt=0, description="main stream height (recognition)")
    fps: float = Field(10.0, gt=0, le=120, description="frame rate requested from the sensor")
    autofocus: Literal["continuous", "auto", "manual"] = Field(
        "continuous", description="autofocus mode (cameras with autofocus, e.g. Camera Module 3)"
    )
    lens_position: float | None = Field(
        None, ge=0, description="fixed focus in dioptres when autofocus = manual"
    )


class Picamera2Source(Source):
    def __init__(self, config: Picamera2Config) -> None:
        self.config = config
        self.cam: Any = None
        self.index = 0
        self.fps = config.fps

    def describe(self) -> str:
        return f"picamera2 camera {self.config.camera_num}"

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise SourceError(
                "picamera2 is not installed: on Raspberry Pi OS run "
                "`sudo apt install python3-picamera2` and create the venv with "
                f"--system-site-packages ({exc})"
            ) from None
        c = self.config
        try:
            cam = Picamera2(c.camera_num)
            # RGB888 is B, G, R in memory: OpenCV's order, no conversion needed.
            frame_us = int(1_000_000 / c.fps)
            controls: dict[str, Any] = {"FrameDurationLimits": (frame_us, frame_us)}
            if "AfMode" in cam.camera_controls:
                controls["AfMode"] = AF_MODES[c.autofocus]
                if c.autofocus == "manual" and c.lens_position is not None:
                    controls["LensPosition"] = c.lens_position
            config = cam.create_video_configuration(
                main={"size": (c.width, c.height), "format": "RGB888"},
                controls=controls,
                buffer_count=4,
            )
            cam.configure(config)
            cam.start()
        except (RuntimeError, IndexError, OSError) as exc:
            raise SourceError(
                f"{self.describe()}: cannot start ({exc}); check the ribbon cable, "
                "`rpicam-hello --list-cameras`, and that no other program holds the camera"
            ) from None
        self.cam = cam
        logger.info("opened %s at %dx%d, %.1f fps", self.describe(), c.width, c.height, c.fps)

    def read(self) -> Frame | None:
        if self.cam is None:
            raise SourceError(f"{self.describe()}: not open")
        try:
            image = self.cam.capture_array("main")
        except (RuntimeError, OSError) as exc:
            raise SourceError(f"{self.describe()}: capture failed ({exc})") from None
        self.index += 1
        return Frame(image, time.time(), self.index)

    def close(self) -> None:
        if self.cam is not None:
            try:
                self.cam.stop()
                self.cam.close()
            except (RuntimeError, OSError) as exc:
                logger.warning("%s: error while closing: %s", self.describe(), exc)
            self.cam = None
