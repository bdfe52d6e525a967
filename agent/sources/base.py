"""What every camera source hands the pipeline, and how it fails."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np


class SourceError(RuntimeError):
    """A camera or stream cannot be opened or has been lost; the message says what to do."""


@dataclass(frozen=True)
class Frame:
    """One captured frame, BGR, with its wall-clock capture time."""

    image: np.ndarray
    timestamp: float
    index: int
    name: str = ""  # file name for replays, empty for live cameras


class Source(abc.ABC):
    """A camera, stream or replay.  ``read`` blocks until the next frame.

    ``read`` returns ``None`` when a finite source (file, directory without
    watch) is exhausted and raises :class:`SourceError` when a live source
    is lost; the capture thread then reopens it with backoff.
    """

    #: True when the source ends by itself (a file, a directory without watch).
    finite: bool = False
    #: True when frames should be dropped rather than queued when inference
    #: is slower than capture (live cameras, paced video).
    live: bool = True
    #: Frames per second the source delivers at, when known (pacing, stats).
    fps: float | None = None

    @abc.abstractmethod
    def open(self) -> None:
        """Acquire the device or stream; raise SourceError with advice on failure."""

    @abc.abstractmethod
    def read(self) -> Frame | None:
        """The next frame, ``None`` at the end of a finite source."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the device; safe to call twice."""

    def describe(self) -> str:
        return type(self).__name__
