"""Image inputs: every bad input becomes a clear ImageInputError, good ones decode."""

from __future__ import annotations

import base64
import http.server
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent import imageio
from agent.imageio import ImageInputError


def _img(h: int = 48, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


def _encode(ext: str, img: np.ndarray | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, _img() if img is None else img)
    assert ok
    return buf.tobytes()


def _png_bomb(w: int, h: int) -> bytes:
    """A tiny PNG whose header declares an enormous canvas."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".bmp", ".tiff"])
def test_supported_formats_decode_and_sniff(ext: str) -> None:
    """All five promised formats decode to BGR of the right size."""
    data = _encode(ext)
    loaded = imageio.decode_image(data, f"x{ext}")
    assert loaded.image.shape == (48, 64, 3)
    if ext != ".tiff":
        assert imageio.sniff_size(data) == (64, 48)


def test_gray_and_alpha_become_bgr() -> None:
    """Gray and BGRA inputs come out as 3-channel frames the pipeline expects."""
    gray = _encode(".png", _img()[:, :, 0])
    bgra = _encode(".png", np.dstack([_img(), np.full((48, 64), 255, np.uint8)]))
    assert imageio.decode_image(gray).image.shape == (48, 64, 3)
    assert imageio.decode_image(bgra).image.shape == (48, 64, 3)


def test_decompression_bomb_refused_before_decoding() -> None:
    """A 100 kpx x 100 kpx PNG header must be refused by the pixel limit, not decoded."""
    with pytest.raises(ImageInputError, match=r"over the .* pixel limit"):
        imageio.decode_image(_png_bomb(100_000, 100_000), "bomb.png")


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "empty input"),
        (b"hello, not an image at all", "not a supported image"),
        (_encode(".jpg")[:200], "truncated or corrupt"),
        (_encode(".png")[:60], "truncated or corrupt"),
    ],
)
def test_bad_bytes_clear_errors(data: bytes, needle: str) -> None:
    """Corrupt, truncated and non-image bytes give a message, never a traceback."""
    with pytest.raises(ImageInputError, match=needle):
        imageio.decode_image(data, "input")


def test_base64_and_data_uri() -> None:
    """Base64 (padded or not) and image data URIs decode; wrong MIME and junk are refused."""
    data = _encode(".png")
    b64 = base64.b64encode(data).decode()
    assert imageio.load(b64).image.shape == (48, 64, 3)
    assert imageio.load(b64.rstrip("=")).image.shape == (48, 64, 3)
    assert imageio.load("data:image/png;base64," + b64).source == "data URI"
    with pytest.raises(ImageInputError, match="MIME type 'text/plain'"):
        imageio.load("data:text/plain;base64," + b64)
    with pytest.raises(ImageInputError, match="not valid base64"):
        imageio.decode_base64("!!!not base64!!!")


def test_jpeg_base64_starting_with_a_slash() -> None:
    """Every JPEG's base64 starts with '/9j/': it must not be mistaken for a file path."""
    b64 = base64.b64encode(_encode(".jpg")).decode()
    assert b64.startswith("/9j/")
    assert imageio.load(b64).source == "base64 input"


def test_paths(tmp_path: Path) -> None:
    """A file decodes; a missing file and a directory say so."""
    f = tmp_path / "frame.jpg"
    f.write_bytes(_encode(".jpg"))
    assert imageio.load(str(f)).image.shape == (48, 64, 3)
    with pytest.raises(ImageInputError, match="no such file"):
        imageio.load(str(tmp_path / "missing.jpg"))
    with pytest.raises(ImageInputError, match="is a directory"):
        imageio.load(str(tmp_path))


def test_exif_orientation_honoured() -> None:
    """A JPEG tagged 'rotate 90 CW' (orientation 6) comes out portrait."""
    jpg = _encode(".jpg", _img(40, 80))
    # APP1 Exif segment: big-endian TIFF with one IFD entry, Orientation (0x0112) = 6.
    tiff = b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 1)
    tiff += struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack(">I", 0)
    app1 = b"Exif\x00\x00" + tiff
    seg = b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
    rotated = jpg[:2] + seg + jpg[2:]
    assert imageio.decode_image(jpg).image.shape[:2] == (40, 80)
    assert imageio.decode_image(rotated).image.shape[:2] == (80, 40)


@pytest.fixture
def http_server() -> Iterator[str]:
    body = _encode(".jpg")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/frame.jpg":
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.integration
def test_urls(http_server: str) -> None:
    """A URL on a real local server decodes; a 404, a dead port and ftp are clear errors."""
    assert imageio.load(http_server + "/frame.jpg").image.shape == (48, 64, 3)
    with pytest.raises(ImageInputError, match="HTTP 404"):
        imageio.load(http_server + "/nope.jpg")
    with pytest.raises(ImageInputError, match="cannot fetch"):
        imageio.fetch_url("http://127.0.0.1:9/x.jpg", timeout=2)
    with pytest.raises(ImageInputError, match="only http and https"):
        imageio.fetch_url("ftp://127.0.0.1/x.jpg")
