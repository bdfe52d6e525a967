"""Image inputs: paths, http(s) URLs, base64, data URIs and stdin bytes -> BGR frames.

Every failure is an :class:`ImageInputError` with a message a user can act
on; nothing here raises anything else for bad input.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from agent.fetch import MAX_BYTES, URL_TIMEOUT_S, FetchError, UrlPolicy, fetch

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


def sniff_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, GIF, BMP, WebP or JPEG header, without decoding."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
            w, h = struct.unpack(">II", data[16:24])
            return int(w), int(h)
        if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
            w, h = struct.unpack("<HH", data[6:10])
            return int(w), int(h)
        if data[:2] == b"BM" and len(data) >= 26:
            w, h = struct.unpack("<ii", data[18:26])
            return abs(int(w)), abs(int(h))
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
            chunk = data[12:16]
            if chunk == b"VP8X":
                w = 1 + int.from_bytes(data[24:27], "little")
                h = 1 + int.from_bytes(data[27:30], "little")
                return w, h
            if chunk == b"VP8L":
                b = int.from_bytes(data[21:25], "little")
                return 1 + (b & 0x3FFF), 1 + ((b >> 14) & 0x3FFF)
            if chunk == b"VP8 ":
                w, h = struct.unpack("<HH", data[26:30])
                return int(w & 0x3FFF), int(h & 0x3FFF)
        if data[:2] == b"\xff\xd8":
            i = 2
            while i + 9 < len(data):
                if data[i] != 0xFF:
                    i += 1
                    continue
                marker = data[i + 1]
                if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                    i += 2
                    continue
                length = int.from_bytes(data[i + 2 : i + 4], "big")
                if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD):
                    h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                    return int(w), int(h)
                i += 2 + length
    except struct.error:
        return None
    return None


def decode_image(data: bytes, source: str = "input", max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Decode JPEG/PNG/WebP/BMP/TIFF bytes to BGR, refusing bombs before decoding."""
    if not data:
        raise ImageInputError(f"{source}: empty input (0 bytes)")
    if len(data) > MAX_BYTES:
        raise ImageInputError(f"{source}: {len(data)} bytes is over the {MAX_BYTES} byte limit")
    size = sniff_size(data)
    if size is not None:
        w, h = size
        if w == 0 or h == 0:
            raise ImageInputError(f"{source}: image header declares {w}x{h} pixels")
        if w * h > max_pixels:
            raise ImageInputError(
                f"{source}: image declares {w}x{h} pixels, over the {max_pixels} pixel limit; "
                "refusing to decode it (a decompression bomb or a far too large photo)"
            )
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        # IMREAD_COLOR applies EXIF orientation and converts gray/alpha/16-bit to 8-bit BGR.
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageInputError(f"{source}: cannot decode image: {exc.err or exc}") from None
    if image is None or image.size == 0:
        kind = "truncated or corrupt image" if size is not None else "not a supported image"
        raise ImageInputError(f"{source}: {kind} (JPEG, PNG, WebP, BMP or TIFF expected)")
    return LoadedImage(image=image, source=source, n_bytes=len(data))


def decode_base64(text: str, source: str = "base64") -> bytes:
    """Bytes from a base64 string or a ``data:image/...;base64,`` URI."""
    match = _DATA_URI.match(text)
    if match:
        mime = (match.group("mime") or "").lower()
        if mime and not mime.startswith("image/"):
            raise ImageInputError(f"{source}: data URI has MIME type {mime!r}, not an image")
        text = text[match.end() :]
    elif text.startswith("data:"):
        raise ImageInputError(f"{source}: data URI without ';base64,' is not supported")
    text = "".join(text.split())
    if len(text) > MAX_BYTES * 4 // 3 + 4:
        raise ImageInputError(f"{source}: base64 payload is over the {MAX_BYTES} byte limit")
    if not text or not _B64_CHARS.match(text):
        raise ImageInputError(f"{source}: not valid base64 (unexpected characters)")
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


def looks_like_base64(text: str) -> bool:
    # No test on a leading "/": every JPEG's base64 starts with "/9j/".  Paths
    # are told apart by existing, or by characters base64 lacks (".", "-").
    return len(text) >= 64 and bool(_B64_CHARS.match(text[:4096]))


def load_remote(spec: str, policy: UrlPolicy | None = None) -> LoadedImage:
    """Load an image sent by someone else: http(s) URL, data URI or base64, never a path.

    The ``/v1/vinocr`` endpoint uses this: a server must not read its own files
    because a request named one.
    """
    spec = spec.strip()
    if spec.startswith("data:"):
        return decode_image(decode_base64(spec, "data URI"), "data URI")
    if spec.lower().startswith(("http://", "https://")):
        return decode_image(fetch_url(spec, policy=policy), spec)
    scheme = _SCHEME.match(spec)
    if scheme:
        raise ImageInputError(
            f"unsupported URL scheme {scheme.group(1)!r}; send an http(s) URL, a data URI or base64"
        )
    if not spec:
        raise ImageInputError("image_url is empty; send an http(s) URL, a data URI or base64")
    return decode_image(decode_base64(spec), "base64 input")


def load(spec: str, stdin: bytes | None = None, policy: UrlPolicy | None = None) -> LoadedImage:
    """Load one ``read`` INPUT: path, URL, base64, data URI, or ``-`` for stdin bytes."""
    if spec == "-":
        return decode_image(stdin or b"", "stdin")
    if spec.startswith("data:"):
        return decode_image(decode_base64(spec, "data URI"), "data URI")
    if spec.lower().startswith(("http://", "https://")):
        return decode_image(fetch_url(spec, policy=policy), spec)
    scheme = _SCHEME.match(spec)
    if scheme:
        raise ImageInputError(
            f"{spec}: unsupported URL scheme {scheme.group(1)!r}; only http and https are fetched"
        )
    path = Path(spec)
    try:
        exists = path.exists()
    except OSError:  # e.g. a base64 string longer than a file name may be
        exists = False
    if exists or not looks_like_base64(spec):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ImageInputError(f"{spec}: no such file") from None
        except IsADirectoryError:
            raise ImageInputError(f"{spec}: is a directory, not an image file") from None
        except OSError as exc:
            raise ImageInputError(f"{spec}: cannot read ({exc.strerror})") from None
        return decode_image(data, spec)
    return decode_image(decode_base64(spec), "base64 input")
