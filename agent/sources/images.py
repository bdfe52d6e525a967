"""Replay a directory or glob of images in name order; optionally watch for new ones.

``watch = true`` suits cameras that drop JPEGs by FTP: files are picked up
as they arrive, once they have stopped changing, and read again whenever
they change (cameras that overwrite one ``snapshot.jpg``).  A file that
cannot be decoded is skipped with a warning naming it; when watching, a
later change retries it too (an upload that paused for longer than
``settle_s`` is read once it is complete, not lost).
"""

from __future__ import annotations

import glob
import logging
import os
import stat
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agent import imageio
from agent.sources.base import Frame, Source, SourceError

logger = logging.getLogger(__name__)

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


class ImagesConfig(BaseModel):
    """A directory or glob of image files."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["images"] = Field(description="replay image files")
    path: str = Field(description="directory, or glob pattern such as /srv/ftp/cam1/*.jpg")
    watch: bool = Field(False, description="keep running and pick up new files as they arrive")
    poll_s: float = Field(0.5, gt=0, description="how often to look for new files when watching")
    settle_s: float = Field(
        1.0, ge=0, description="a new file is read once its size has not changed for this long"
    )
    interval_s: float = Field(
        0.0, ge=0, description="pause between files, to imitate a camera (0: as fast as possible)"
    )


class ImagesSource(Source):
    live = False

    def __init__(self, config: ImagesConfig) -> None:
        self.config = config
        self.finite = not config.watch
        # name -> (size, mtime) when it was taken: a watched file that changes after that
        # is read again (a camera that overwrites snapshot.jpg, an upload that paused
        # longer than settle_s and failed to decode).
        self.seen: dict[str, tuple[int, int]] = {}
        self.queue: list[str] = []
        self.index = 0
        # name -> ((size, mtime), when that was first seen): a file is read once it settles
        self._sizes: dict[str, tuple[tuple[int, int], float]] = {}
        self._closed = False

    def describe(self) -> str:
        return f"images {self.config.path}" + (" (watching)" if self.config.watch else "")

    def _pattern(self) -> str:
        p = self.config.path
        return os.path.join(p, "*") if os.path.isdir(p) else p

    def _scan(self) -> list[str]:
        names = sorted(f for f in glob.glob(self._pattern()) if f.lower().endswith(EXTENSIONS))
        ready, now = [], time.monotonic()
        for f in names:
            if f in self.seen and not self.config.watch:
                continue
            try:
                st = os.stat(f)
            except OSError:  # gone again (renamed by the uploader)
                continue
            sig = (st.st_size, st.st_mtime_ns)
            if f in self.seen:
                if self.seen[f] == sig:
                    continue
                if f not in self._sizes:
                    logger.info("%s changed since it was read; reading it again", f)
            if not stat.S_ISREG(st.st_mode):
                # A directory, FIFO or device named like an image: reading a FIFO would block.
                logger.warning("skipping %s: not a regular file", f)
                self.seen[f] = sig
                continue
            if not self.config.watch:
                ready.append(f)
                continue
            # A file still being written (FTP upload) changes between polls.
            last = self._sizes.get(f)
            if last is None or last[0] != sig:
                self._sizes[f] = (sig, now)
            elif now - last[1] >= self.config.settle_s:
                ready.append(f)
        return ready

    def open(self) -> None:
        self._closed = False
        base = Path(self.config.path)
        if not base.is_dir() and not glob.has_magic(self.config.path):
            raise SourceError(
                f"{self.config.path}: no such directory; give a directory or a glob pattern"
            )
        self.queue = self._scan()
        if not self.queue and not self.config.watch:
            raise SourceError(f"{self.config.path}: no image files ({', '.join(EXTENSIONS)})")

    def read(self) -> Frame | None:
        while True:
            while self.queue:
                name = self.queue.pop(0)
                self._sizes.pop(name, None)
                try:
                    # Taken before reading: a change during or after the read means a retry.
                    st = os.stat(name)
                except OSError as exc:  # gone since the scan
                    logger.warning("skipping %s: %s", name, exc.strerror or exc)
                    self.seen[name] = (-1, -1)
                    continue
                self.seen[name] = (st.st_size, st.st_mtime_ns)
                try:
                    image = imageio.load_file(name).image
                except imageio.ImageInputError as exc:
                    # One bad file must not stop a replay or a watched drop folder;
                    # when watching, it is read again if it changes.
                    logger.warning("skipping %s", exc)
                    continue
                if self.config.interval_s:
                    time.sleep(self.config.interval_s)
                self.index += 1
                return Frame(image, time.time(), self.index, os.path.basename(name))
            if not self.config.watch or self._closed:
                return None
            time.sleep(self.config.poll_s)
            self.queue = self._scan()

    def close(self) -> None:
        self._closed = True
        self.queue = []
