"""Image inputs: paths, http(s) URLs, base64, data URIs and stdin bytes -> BGR frames.

Every failure is an :class:`ImageInputError` with a message a user can act
on; nothing here raises anything else for bad input.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from agent.fetch import MAX_BYTES, URL_TIMEOUT_S, FetchError, UrlPolicy, fetch
from agent.imageheader import (
    SUPPORTED_FORMATS,
    image_kind,
    sniff_size,
    structure_problem,
)

logger = logging.getLogger(__name__)

MAX_PIXELS = 50_000_000
_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*?);base64,", re.I)
_B64_CHARS = re.compile(r"^[A-Za-z0-9+/=\s_-]+$")


class ImageInputError(ValueError):
    """An input could not be turned into an image; the message says why."""


@dataclass(frozen=True)
class LoadedImage:
    """A decoded frame and where it came from."""

    image: np.ndarray  # BGR uint8, EXIF orientation applied
    source: str
    n_bytes: int


def decode_image(data: bytes, source: str = "input", max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Decode JPEG/PNG/WebP/BMP/TIFF (and GIF) bytes to BGR, refusing bombs before decoding."""
    if not data:
        raise ImageInputError(f"{source}: empty input (0 bytes)")
    if len(data) > MAX_BYTES:
        raise ImageInputError(f"{source}: {len(data)} bytes is over the {MAX_BYTES} byte limit")
    kind = image_kind(data)
    if kind is None:
        raise ImageInputError(f"{source}: not a supported image ({SUPPORTED_FORMATS})")
    size = sniff_size(data)
    if size is None:
        raise ImageInputError(
            f"{source}: truncated or corrupt {kind} image (its header does not give a size)"
        )
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageInputError(f"{source}: {kind} header declares {w}x{h} pixels")
    if w * h > max_pixels:
        raise ImageInputError(
            f"{source}: image declares {w}x{h} pixels, over the {max_pixels} pixel limit; "
            "refusing to decode it (a decompression bomb or a far too large photo)"
        )
    problem = structure_problem(data, kind, max_pixels)
    if problem:
        raise ImageInputError(f"{source}: {problem}")
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        # IMREAD_COLOR applies EXIF orientation and converts gray/alpha/16-bit to 8-bit BGR.
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageInputError(f"{source}: cannot decode {kind} image: {exc.err or exc}") from None
    if image is None or image.size == 0:
        raise ImageInputError(
            f"{source}: truncated or corrupt {kind} image (or a {kind} variant OpenCV cannot read)"
        )
    return LoadedImage(image=image, source=source, n_bytes=len(data))


def decode_base64(text: str, source: str = "base64") -> bytes:
    """Bytes from a base64 string or a ``data:image/...;base64,`` URI.

    Whitespace and line breaks are ignored, missing padding is added, and the
    URL-safe alphabet (``-`` and ``_``) is accepted.
    """
    limit = MAX_BYTES * 4 // 3 + 4
    if len(text) > 2 * limit:  # before copying it around below
        raise ImageInputError(f"{source}: base64 payload is over the {MAX_BYTES} byte limit")
    match = _DATA_URI.match(text)
    if match:
        mime = (match.group("mime") or "").lower()
        if mime and not mime.startswith("image/"):
            raise ImageInputError(f"{source}: data URI has MIME type {mime!r}, not an image")
        text = text[match.end() :]
    elif text[:5].lower() == "data:":
        raise ImageInputError(f"{source}: data URI without ';base64,' is not supported")
    text = "".join(text.split())
    if not text:
        raise ImageInputError(f"{source}: empty base64 payload")
    if len(text) > limit:
        raise ImageInputError(f"{source}: base64 payload is over the {MAX_BYTES} byte limit")
    if not _B64_CHARS.match(text):
        at, char = next((i, c) for i, c in enumerate(text) if not _B64_CHARS.match(c))
        raise ImageInputError(
            f"{source}: not valid base64 (unexpected character {char!r} at position {at})"
        )
    altchars = b"-_" if ("-" in text or "_" in text) else None
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=altchars, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageInputError(f"{source}: not valid base64 ({exc})") from None


def fetch_url(
    url: str,
    timeout: float = URL_TIMEOUT_S,
    max_bytes: int = MAX_BYTES,
    policy: UrlPolicy | None = None,
) -> bytes:
    """GET an http(s) URL under ``policy`` (default: timeout and size cap only)."""
    try:
        return fetch(url, policy or UrlPolicy(timeout_s=timeout, max_bytes=max_bytes))
    except FetchError as exc:
        raise ImageInputError(str(exc)) from None


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_PATH_MAX = 4096


def looks_like_base64(text: str) -> bool:
    # No test on a leading "/": every JPEG's base64 starts with "/9j/".  Paths
    # are told apart by existing, or by characters base64 lacks (".", "-").
    return len(text) >= 64 and bool(_B64_CHARS.match(text[:4096]))


def _load_uri(spec: str, policy: UrlPolicy | None) -> LoadedImage | None:
    """A data URI or an http(s) URL loaded; any other ``scheme://`` refused; else None."""
    if spec[:5].lower() == "data:":
        return decode_image(decode_base64(spec, "data URI"), "data URI")
    if spec.lower().startswith(("http://", "https://")):
        return decode_image(fetch_url(spec, policy=policy), spec)
    scheme = _SCHEME.match(spec)
    if scheme:
        raise ImageInputError(
            f"{spec[:80]}: unsupported URL scheme {scheme.group(1)!r}; only http and https"
            " URLs are fetched (or send a data URI or base64)"
        )
    return None


def load_remote(spec: str, policy: UrlPolicy | None = None) -> LoadedImage:
    """Load an image sent by someone else: http(s) URL, data URI or base64, never a path.

    The ``/v1/vinocr`` endpoint uses this: a server must not read its own files
    because a request named one.
    """
    spec = spec.strip()
    loaded = _load_uri(spec, policy)
    if loaded is not None:
        return loaded
    if not spec:
        raise ImageInputError("image_url is empty; send an http(s) URL, a data URI or base64")
    return decode_image(decode_base64(spec), "base64 input")


def read_file(path: str | os.PathLike[str], source: str | None = None) -> bytes:
    """A file's bytes, refusing (without reading them) files over the byte limit.

    Pipes and devices are read up to the limit only: ``vin-agent read /dev/zero``
    must not fill the memory.
    """
    name = source if source is not None else os.fspath(path)
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            if stat.S_ISDIR(st.st_mode):
                raise ImageInputError(f"{name}: is a directory, not an image file")
            if stat.S_ISREG(st.st_mode) and st.st_size > MAX_BYTES:
                raise ImageInputError(
                    f"{name}: file is {st.st_size} bytes, over the {MAX_BYTES} byte limit"
                )
            data = fh.read(MAX_BYTES + 1)
    except ImageInputError:
        raise
    except FileNotFoundError:
        raise ImageInputError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageInputError(f"{name}: is a directory, not an image file") from None
    except OSError as exc:
        raise ImageInputError(f"{name}: cannot read ({exc.strerror or exc})") from None
    except ValueError:  # a NUL character in the name
        raise ImageInputError(f"{name!r}: not a valid file name") from None
    if len(data) > MAX_BYTES:
        raise ImageInputError(f"{name}: more than {MAX_BYTES} bytes, over the byte limit")
    return data


def load_file(path: str | os.PathLike[str], source: str | None = None) -> LoadedImage:
    """Load an image file (never a URL or base64, whatever its name looks like)."""
    name = source if source is not None else os.fspath(path)
    return decode_image(read_file(path, name), name)


def load(spec: str, stdin: bytes | None = None, policy: UrlPolicy | None = None) -> LoadedImage:
    """Load one ``read`` INPUT: path, URL, base64, data URI, or ``-`` for stdin bytes."""
    if spec == "-":
        return decode_image(stdin or b"", "stdin")
    if not spec.strip():
        raise ImageInputError(
            "empty input: give an image path, an http(s) URL, base64, a data URI or '-'"
        )
    loaded = _load_uri(spec, policy)
    if loaded is not None:
        return loaded
    path = Path(spec)
    try:
        # Longer than PATH_MAX: base64, not a path (and stat would only fail, slowly).
        exists = len(spec) <= _PATH_MAX and path.exists()
    except (OSError, ValueError):  # a name longer than NAME_MAX, or with a NUL in it
        exists = False
    if exists or not looks_like_base64(spec):
        return load_file(path, spec)
    try:
        data = decode_base64(spec, "base64 input")
    except ImageInputError as exc:
        if len(spec) <= _PATH_MAX:  # could have been meant as a path
            raise ImageInputError(f"{exc}; and no file has that name") from None
        raise
    return decode_image(data, "base64 input")
