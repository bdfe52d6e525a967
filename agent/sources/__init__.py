"""Camera sources: one module, one config model and one class per key.

Hardware libraries are imported in ``open``, never at module top level, so
the package imports on any machine.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from agent.sources.base import Frame, Source, SourceError
from agent.sources.images import ImagesConfig, ImagesSource
from agent.sources.opencv import OpenCVConfig, OpenCVSource
from agent.sources.picamera2 import Picamera2Config, Picamera2Source

#: Source key -> (config model, class).
SOURCES: dict[str, tuple[type, type[Source]]] = {
    "images": (ImagesConfig, ImagesSource),
    "opencv": (OpenCVConfig, OpenCVSource),
    "picamera2": (Picamera2Config, Picamera2Source),
}

SourceConfig = Annotated[ImagesConfig | OpenCVConfig | Picamera2Config, Field(discriminator="type")]


def make_source(config: ImagesConfig | OpenCVConfig | Picamera2Config) -> Source:
    _, cls = SOURCES[config.type]
    return cls(config)  # type: ignore[call-arg]


__all__ = ["SOURCES", "Frame", "Source", "SourceConfig", "SourceError", "make_source"]
