"""Fuzzing the image inputs of ``vin-agent read`` (issue 7: bad input gets a clear error).

Every input, however broken, must end as a decoded BGR frame or as an
``ImageInputError`` whose message says what is wrong: never another
exception, never a traceback, and never unbounded time or memory.  The
images are made here, from a small synthetic picture, with OpenCV and Pillow;
the bombs are hand-made headers that declare enormous sizes.

The builders are reused by tests/sources/test_images_fuzz.py.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import json
import shutil
import struct
import subprocess
import sys
import zlib
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from agent import imageio
from agent.fetch import MAX_BYTES
from agent.imageio import ImageInputError
from tests.conftest import REPO, run_cli

SAMPLE = REPO / "samples" / "scenes" / "scene_0000.jpg"

# Fast enough for the default suite; the deadline is generous because this
# machine may be busy (CI runners, training in the background).
FUZZ = settings(
    max_examples=150,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow],
)


# -- builders -----------------------------------------------------------------


def synthetic(h: int = 24, w: int = 32, channels: int = 3) -> np.ndarray:
    """A small picture with gradients and noise, so every codec has something to code."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:h, 0:w]
    base = ((x * 255 // max(w - 1, 1) + y * 255 // max(h - 1, 1)) // 2).astype(np.uint8)
    noise = rng.integers(0, 40, (h, w, channels), dtype=np.uint8)
    return np.dstack([base] * channels) // 2 + noise


def encode(ext: str, img: np.ndarray | None = None, params: tuple[int, ...] = ()) -> bytes:
    ok, buf = cv2.imencode(ext, synthetic() if img is None else img, list(params))
    assert ok, ext
    return buf.tobytes()


def pil_bytes(im: Image.Image, fmt: str, **kw: object) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **kw)
    return out.getvalue()


def _pil_frames() -> list[Image.Image]:
    return [Image.new("RGB", (32, 24), c) for c in ((200, 30, 30), (30, 200, 30), (30, 30, 200))]


def animated(fmt: str) -> bytes:
    """A three-frame animation (red, green, blue) as GIF, WebP or PNG (APNG)."""
    first, *rest = _pil_frames()
    extra = {"lossless": True} if fmt == "WEBP" else {}
    return pil_bytes(first, fmt, save_all=True, append_images=rest, duration=50, loop=0, **extra)


@functools.cache
def seeds() -> dict[str, bytes]:
    """Valid images of every kind the fuzzers start from."""
    img = synthetic()
    bgra = np.dstack([img, synthetic(channels=1)[:, :, 0]])
    u16 = (synthetic().astype(np.uint16) * 257).astype(np.uint16)
    rgb = Image.fromarray(img[:, :, ::-1].copy())
    out = {f"plain{ext}": encode(ext) for ext in (".jpg", ".png", ".webp", ".tiff", ".bmp")}
    out |= {
        "progressive.jpg": encode(".jpg", img, (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)),
        "gray.jpg": encode(".jpg", img[:, :, 0]),
        "cmyk.jpg": pil_bytes(rgb.convert("CMYK"), "JPEG"),
        "alpha.png": encode(".png", bgra),
        "alpha.webp": encode(".webp", bgra),
        "alpha.tiff": encode(".tiff", bgra),
        "alpha.bmp": pil_bytes(rgb.convert("RGBA"), "BMP"),
        "palette.png": pil_bytes(rgb.convert("P"), "PNG"),
        "16bit.png": encode(".png", u16),
        "16bit-gray.tiff": encode(".tiff", u16[:, :, 0]),
        "deflate.tiff": pil_bytes(rgb, "TIFF", compression="tiff_adobe_deflate"),
        "jpeg-in.tiff": pil_bytes(rgb, "TIFF", compression="jpeg"),
        "cmyk.tiff": pil_bytes(rgb.convert("CMYK"), "TIFF"),
        "lossless.webp": pil_bytes(rgb, "WEBP", lossless=True),
        "still.gif": pil_bytes(rgb, "GIF"),
        "animated.gif": animated("GIF"),
        "animated.webp": animated("WEBP"),
        "animated.png": animated("PNG"),
        "1x40.png": encode(".png", synthetic(1, 40)),
        "40x1.jpg": encode(".jpg", synthetic(40, 1)),
    }
    return out


def png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_with_size(w: int, h: int) -> bytes:
    """A valid-looking PNG (CRCs right) whose IHDR declares w x h over a few bytes of data."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + png_chunk(b"IEND", b"")
    )


def png_chunk_bomb() -> bytes:
    """A 1x1 PNG whose IDAT length field says 2 GB: OpenCV allocated that before reading."""
    data = bytearray(encode(".png", synthetic(1, 1)))
    at = data.index(b"IDAT") - 4
    data[at : at + 4] = struct.pack(">I", 0x7FFFFFF0)
    return bytes(data)


def jpeg_with_size(w: int, h: int) -> bytes:
    """A real JPEG with its SOF0 frame header patched to declare w x h."""
    data = bytearray(encode(".jpg"))
    at = data.index(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", h, w)
    return bytes(data)


def webp_vp8x_with_size(w: int, h: int) -> bytes:
    """An animated WebP (extended format) whose canvas is patched to w x h."""
    data = bytearray(animated("WEBP"))
    assert data[12:16] == b"VP8X"
    data[24:27] = (w - 1).to_bytes(3, "little")
    data[27:30] = (h - 1).to_bytes(3, "little")
    return bytes(data)


def webp_vp8l_with_size(w: int, h: int) -> bytes:
    """A lossless WebP whose VP8L header is patched to w x h (at most 16384 each)."""
    data = bytearray(encode(".webp", params=(cv2.IMWRITE_WEBP_QUALITY, 101)))
    assert data[12:16] == b"VP8L"
    bits = int.from_bytes(data[21:25], "little") & ~((1 << 28) - 1)
    data[21:25] = (bits | (w - 1) | ((h - 1) << 14)).to_bytes(4, "little")
    return bytes(data)


def bmp_with_size(w: int, h: int, os2: bool = False) -> bytes:
    """A BMP header declaring w x h over the pixel data of a small image."""
    if os2:  # BITMAPCOREHEADER: 12 bytes, 16-bit sizes; pixels for small sizes only
        header = struct.pack("<IHHHH", 12, w, h, 1, 24)
        pixels = bytes(min((w * 3 + 3) // 4 * 4 * h, 4096))
        return b"BM" + struct.pack("<IHHI", 26 + len(pixels), 0, 0, 26) + header + pixels
    data = bytearray(encode(".bmp"))
    data[18:26] = struct.pack("<ii", w, h)
    return bytes(data)


def gif_with_size(w: int, h: int) -> bytes:
    """A GIF whose logical screen is patched to w x h."""
    data = bytearray(pil_bytes(Image.fromarray(synthetic()), "GIF"))
    data[6:10] = struct.pack("<HH", w, h)
    return bytes(data)


def deflated_zeros(n: int) -> bytes:
    """A zlib stream of ``n`` zero bytes, built without ever holding them (200 MB -> 200 kB).

    Blocks ended by a full flush do not refer back, so one can be repeated.
    """
    chunk = 1 << 20
    c = zlib.compressobj(9)
    first = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
    full, rest = divmod(n, chunk)
    out = first + again * (full - 1) if full else first[:2]  # [:2]: the zlib header
    if rest:
        r = zlib.compressobj(9)
        out += (r.compress(bytes(rest)) + r.flush(zlib.Z_FULL_FLUSH))[2:]
    adler = ((n % 65521) << 16) | 1  # Adler-32 of n zeros
    return out + b"\x03\x00" + adler.to_bytes(4, "big")  # an empty final block, the checksum


def tiff_with_size(
    w: int,
    h: int,
    *,
    bigtiff: bool = False,
    big_endian: bool = False,
    tiles: tuple[int, int] | None = None,
) -> bytes:
    """A hand-made RGB TIFF (or BigTIFF) declaring w x h, deflate-compressed zeros.

    Strips: one strip, with at most 1 MB of pixels behind it.  With ``tiles``
    the image has one tile of tw x th pixels, all there: OpenCV allocates a
    tile whole, so a few hundred kB inflate to hundreds of MB.
    """
    if tiles:
        tw, th = tiles
        payload = deflated_zeros(tw * th * 3)
        layout = [(322, 4, tw), (323, 4, th), (324, 4, 0), (325, 4, len(payload))]
    else:
        payload = deflated_zeros(min(w * h * 3, 1 << 20))
        layout = [(273, 4, 0), (278, 4, h), (279, 4, len(payload))]
    tags = [
        (256, 4, w),
        (257, 4, h),
        (258, 3, 8),
        (259, 3, 8),  # Adobe deflate
        (262, 3, 2),  # RGB
        (277, 3, 3),
        *layout,
    ]
    tags.sort()
    e = ">" if big_endian else "<"
    order = b"MM" if big_endian else b"II"
    if bigtiff:
        head = order + struct.pack(e + "HHHQ", 43, 8, 0, 16)
        ifd = struct.pack(e + "Q", len(tags))
        start = 16 + 8 + 20 * len(tags) + 8
        for tag, typ, val in tags:
            val = start if tag in (273, 324) else val
            # The value is left-justified in the 8-byte field, whatever the byte order.
            packed = struct.pack(e + ("H" if typ == 3 else "I"), val).ljust(8, b"\0")
            ifd += struct.pack(e + "HHQ", tag, typ, 1) + packed
        return head + ifd + struct.pack(e + "Q", 0) + payload
    head = order + struct.pack(e + "HI", 42, 8)
    ifd = struct.pack(e + "H", len(tags))
    start = 8 + 2 + 12 * len(tags) + 4
    for tag, typ, val in tags:
        val = start if tag in (273, 324) else val
        packed = struct.pack(e + "HH", val, 0) if typ == 3 else struct.pack(e + "I", val)
        ifd += struct.pack(e + "HHI", tag, typ, 1) + packed
    return head + ifd + struct.pack(e + "I", 0) + payload


def jpeg_scan_bomb(side: int = 2000, repeats: int = 5000) -> bytes:
    """A progressive JPEG with one tiny scan repeated: each repeat is a pass over the image."""
    data = encode(".jpg", np.zeros((side, side, 3), np.uint8), (cv2.IMWRITE_JPEG_PROGRESSIVE, 1))
    i, segments = 2, []
    while data[i + 1] != 0xD9:
        end = i + 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        if data[i + 1] == 0xDA:  # entropy-coded data runs to the next real marker
            while data[end] != 0xFF or data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                end += 1
        segments.append(data[i:end])
        i = end
    smallest = min((s for s in segments if s[1] == 0xDA), key=len)
    return data[:2] + b"".join(segments) + smallest * repeats + b"\xff\xd9"


#: name -> (bytes, a phrase the refusal must contain).  Every one is a small file.
BOMBS = {
    "png-100kx100k": (lambda: png_with_size(100_000, 100_000), "pixel limit"),
    "png-chunk-length-2GB": (png_chunk_bomb, "chunk 'IDAT' declares"),
    "jpeg-65535x65535": (lambda: jpeg_with_size(65535, 65535), "pixel limit"),
    "webp-vp8x-16Mx16M": (lambda: webp_vp8x_with_size(1 << 24, 1 << 24), "pixel limit"),
    "webp-vp8l-16384x16384": (lambda: webp_vp8l_with_size(16384, 16384), "pixel limit"),
    "bmp-100kx100k": (lambda: bmp_with_size(100_000, 100_000), "pixel limit"),
    "bmp-os2-65535x65535": (lambda: bmp_with_size(65535, 65535, os2=True), "pixel limit"),
    "gif-65535x65535": (lambda: gif_with_size(65535, 65535), "pixel limit"),
    # Below OpenCV's default cap (2**30): these decoded to a 432 MB frame (964 MB peak)
    # when OpenCV was loaded before agent, as TIFF sizes were not read from the header.
    "tiff-12000x12000": (lambda: tiff_with_size(12000, 12000), "pixel limit"),
    "bigtiff-12000x12000": (lambda: tiff_with_size(12000, 12000, bigtiff=True), "pixel limit"),
    "tiff-100kx100k-big-endian": (
        lambda: tiff_with_size(100_000, 100_000, big_endian=True),
        "pixel limit",
    ),
    "tiff-64x64-tiles-8192": (lambda: tiff_with_size(64, 64, tiles=(8192, 8192)), "TIFF tiles"),
    "jpeg-5000-scans": (jpeg_scan_bomb, "scans"),
    "ppm-100kx100k": (lambda: b"P6\n100000 100000\n255\n" + bytes(64), "not a supported image"),
}


# -- helpers ------------------------------------------------------------------


def assert_clean_outcome(data: bytes, source: str = "fuzz") -> None:
    """A frame the pipeline can use, or ImageInputError naming the input: nothing else."""
    try:
        loaded = imageio.decode_image(data, source)
    except ImageInputError as exc:
        message = str(exc)
        assert message.startswith(f"{source}: ") and len(message) > len(source) + 5, message
        assert "Traceback" not in message
        return
    image = loaded.image
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] >= 1 and image.shape[1] >= 1
    assert image.shape[0] * image.shape[1] <= imageio.MAX_PIXELS


def flip_bits(data: bytes, flips: list[tuple[float, int]]) -> bytes:
    out = bytearray(data)
    for where, bit in flips:
        out[int(where * (len(out) - 1))] ^= 1 << bit
    return bytes(out)


# -- hypothesis: random and damaged bytes ---------------------------------------

MAGICS = [
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"II+\x00\x08\x00\x00\x00",
    b"RIFF\x00\x00\x00\x00WEBPVP8X",
    b"RIFF\x10\x00\x00\x00WEBPVP8L",
]


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    """Arbitrary bytes (on stdin, in a file, behind base64) decode or fail cleanly."""
    assert_clean_outcome(data)


@FUZZ
@given(
    st.sampled_from(MAGICS),
    st.binary(max_size=2048),
)
def test_random_bytes_behind_a_real_magic(magic: bytes, rest: bytes) -> None:
    """Garbage that starts like a supported format reaches the header parsers and the decoders."""
    assert_clean_outcome(magic + rest)


@FUZZ
@given(
    st.sampled_from(sorted(seeds())),
    st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)), min_size=1, max_size=8),
)
def test_bit_flipped_images(name: str, flips: list[tuple[float, int]]) -> None:
    """Bit errors anywhere in a JPEG/PNG/WebP/TIFF/BMP/GIF (headers, tables, data) are handled."""
    assert_clean_outcome(flip_bits(seeds()[name], flips), name)


@FUZZ
@given(st.sampled_from(sorted(seeds())), st.floats(0, 1, exclude_max=True))
def test_truncated_images(name: str, keep: float) -> None:
    """A file cut anywhere (an interrupted upload) decodes partially or fails cleanly."""
    data = seeds()[name]
    assert_clean_outcome(data[: int(keep * len(data))], name)


def splice(data: bytes, at: int, junk: bytes, replace: bool) -> bytes:
    at %= len(data)
    return data[:at] + junk + (data[at + len(junk) :] if replace else data[at:])


SPLICES = (
    st.sampled_from(sorted(seeds())),
    st.integers(0, 10_000),
    st.binary(min_size=1, max_size=64),
    st.booleans(),
)


@FUZZ
@given(*SPLICES)
def test_spliced_images(name: str, at: int, junk: bytes, replace: bool) -> None:
    """Bytes inserted into or written over a valid file (lengths, offsets go wrong) are handled."""
    assert_clean_outcome(splice(seeds()[name], at, junk, replace), name)


# Many more examples of the same, for the slow job (about ten seconds each).
DEEP = settings(
    max_examples=3000,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.slow
@DEEP
@given(
    st.sampled_from(sorted(seeds())),
    st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)), min_size=1, max_size=16),
)
def test_bit_flipped_images_deep(name: str, flips: list[tuple[float, int]]) -> None:
    """test_bit_flipped_images, 20 times longer and with more flips per file."""
    assert_clean_outcome(flip_bits(seeds()[name], flips), name)


@pytest.mark.slow
@DEEP
@given(*SPLICES)
def test_spliced_images_deep(name: str, at: int, junk: bytes, replace: bool) -> None:
    """test_spliced_images, 20 times longer."""
    assert_clean_outcome(splice(seeds()[name], at, junk, replace), name)


@pytest.mark.slow
@DEEP
@given(st.sampled_from(MAGICS), st.binary(max_size=8192))
def test_random_bytes_behind_a_real_magic_deep(magic: bytes, rest: bytes) -> None:
    """test_random_bytes_behind_a_real_magic, 20 times longer."""
    assert_clean_outcome(magic + rest)


@pytest.fixture(scope="module")
def empty_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("empty")


@FUZZ
@given(spec=st.text(max_size=300))
def test_any_read_argument(empty_dir: Path, spec: str) -> None:
    """Whatever string is given to ``read`` (paths, junk, NUL, non-ASCII) gives a clear outcome.

    Run in an empty directory so no string can name a real file by chance.
    """
    if spec.lower().lstrip().startswith(("http://", "https://")):
        return  # no network from a fuzzer
    with contextlib.chdir(empty_dir):
        try:
            imageio.load(spec, stdin=b"")
        except ImageInputError as exc:
            assert str(exc)


@FUZZ
@given(st.text(max_size=300) | st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef+/=-_ \n"))
def test_any_remote_image_url(spec: str) -> None:
    """The /v1/vinocr ``image_url`` field: any string is a frame or a clear ImageInputError."""
    if spec.lower().strip().startswith(("http://", "https://")):
        return
    for text in (spec, "data:image/png;base64," + spec):
        try:
            imageio.load_remote(text)
        except ImageInputError as exc:
            assert str(exc)


# -- the special images named in the issue -------------------------------------


@pytest.mark.parametrize("name", sorted(seeds()))
def test_every_seed_image_decodes(name: str) -> None:
    """16-bit, CMYK, alpha, palette, animated, 1xN: each comes out as an 8-bit BGR frame."""
    loaded = imageio.decode_image(seeds()[name], name)
    h, w = (1, 40) if name == "1x40.png" else (40, 1) if name == "40x1.jpg" else (24, 32)
    assert loaded.image.shape == (h, w, 3) and loaded.image.dtype == np.uint8


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animations_give_their_first_frame(fmt: str) -> None:
    """An animated GIF/WebP/APNG is read as its first frame (red), not refused or mixed."""
    b, g, r = imageio.decode_image(animated(fmt)).image[12, 16].tolist()
    assert r > 150 and g < 80 and b < 80


def test_16bit_and_cmyk_values_survive() -> None:
    """16-bit samples are scaled to 8 bits and CMYK JPEGs come out in the right colours."""
    half = np.full((8, 8, 3), 0x8000, np.uint16)
    for ext in (".png", ".tiff"):
        assert imageio.decode_image(encode(ext, half)).image[0, 0].tolist() == [128, 128, 128]
    cmyk = pil_bytes(Image.new("RGB", (16, 16), (200, 30, 30)).convert("CMYK"), "JPEG")
    b, g, r = imageio.decode_image(cmyk).image[8, 8].tolist()
    assert abs(r - 200) < 12 and g < 45 and b < 45


@pytest.mark.parametrize(
    "data",
    [
        png_with_size(0, 10),
        png_with_size(10, 0),
        gif_with_size(0, 0),
        bmp_with_size(0, 24),
        jpeg_with_size(32, 0),
        tiff_with_size(0, 16),
    ],
    ids=["png-0x10", "png-10x0", "gif-0x0", "bmp-0x24", "jpeg-32x0", "tiff-0x16"],
)
def test_zero_pixel_images(data: bytes) -> None:
    """A header declaring no pixels is refused with the size it declares."""
    with pytest.raises(ImageInputError, match=r"header declares \d+x\d+ pixels"):
        imageio.decode_image(data, "zero")


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".tiff", ".bmp"])
def test_one_pixel_wide_and_high(ext: str) -> None:
    """1xN and Nx1 images are images: they decode to that shape."""
    for h, w in ((1, 57), (57, 1), (1, 1)):
        assert imageio.decode_image(encode(ext, synthetic(h, w))).image.shape == (h, w, 3)


def test_os2_bitmaps_are_read_with_16_bit_sizes() -> None:
    """OS/2 BMPs store 16-bit sizes: read as 32-bit ones they looked like bombs and were refused."""
    data = bmp_with_size(8, 6, os2=True)
    assert imageio.sniff_size(data) == (8, 6)
    assert imageio.decode_image(data).image.shape == (6, 8, 3)


def test_tiff_sizes_are_read_from_the_header() -> None:
    """TIFF and BigTIFF sizes are known before decoding, like the other formats'."""
    assert imageio.sniff_size(encode(".tiff")) == (32, 24)
    assert imageio.sniff_size(tiff_with_size(640, 480)) == (640, 480)
    assert imageio.sniff_size(tiff_with_size(640, 480, bigtiff=True)) == (640, 480)
    for big in (False, True):
        be = tiff_with_size(64, 48, bigtiff=big, big_endian=True)
        assert imageio.sniff_size(be) == (64, 48)
        assert imageio.decode_image(be).image.shape == (48, 64, 3)
    assert imageio.decode_image(tiff_with_size(64, 48)).image.shape == (48, 64, 3)
    assert imageio.decode_image(tiff_with_size(48, 40, tiles=(64, 64))).image.shape == (40, 48, 3)


def test_formats_outside_the_list_are_refused() -> None:
    """PPM, PAM, PFM, HDR, Sun raster, AVIF: OpenCV reads them, but their sizes are not
    checked here, so they would slip past the pixel limit: they are refused up front."""
    img = synthetic()
    for ext in (".ppm", ".pam", ".pfm", ".hdr", ".ras", ".avif"):
        data = encode(ext, img.astype(np.float32) / 255 if ext in (".pfm", ".hdr") else img)
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None, ext
        with pytest.raises(ImageInputError, match="not a supported image"):
            imageio.decode_image(data, ext)


# -- decompression bombs: bounded time and memory, each measured on its own ------

_BOMB_RUNNER = r"""
import json, os, re, sys, time
os.environ.pop("OPENCV_IO_MAX_IMAGE_PIXELS", None)
import cv2  # imported first: OpenCV's own pixel cap is then off, agent.imageio must cope
from agent import imageio

def status(key):
    return int(re.search(key + r":\s+(\d+)", open("/proc/self/status").read()).group(1))

results = {}
for path in sys.argv[1:]:
    data = open(path, "rb").read()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current RSS: one peak per bomb
        isolated = True
    except OSError:
        isolated = False
    before = status("VmRSS")
    t0 = time.perf_counter()
    try:
        imageio.decode_image(data, os.path.basename(path))
        outcome, message = "decoded", ""
    except imageio.ImageInputError as exc:
        outcome, message = "ImageInputError", str(exc)
    except BaseException as exc:
        outcome, message = type(exc).__name__, str(exc)
    results[os.path.basename(path)] = {
        "outcome": outcome,
        "message": message,
        "seconds": time.perf_counter() - t0,
        "peak_growth_mb": (status("VmHWM") - before) / 1024,
        "isolated": isolated,
    }
print(json.dumps(results))
"""


def _run_bombs(paths: list[Path]) -> dict[str, dict]:
    proc = subprocess.run(
        [sys.executable, "-c", _BOMB_RUNNER, *map(str, paths)],
        capture_output=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return json.loads(proc.stdout.decode().splitlines()[-1])


@pytest.fixture(scope="module")
def bomb_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Decode every bomb in a fresh interpreter; one subprocess per bomb if VmHWM can't reset."""
    folder = tmp_path_factory.mktemp("bombs")
    paths = []
    for name, (make, _) in BOMBS.items():
        path = folder / name
        path.write_bytes(make())
        paths.append(path)
    results = _run_bombs(paths)
    if not all(r["isolated"] for r in results.values()):
        results = {}
        for path in paths:
            results |= _run_bombs([path])
    return results


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_bomb_is_refused_cheaply(name: str, bomb_results: dict[str, dict]) -> None:
    """A small file declaring an enormous image is refused from its header, before decoding:
    under a second and under 300 MB of peak memory, whatever OpenCV's own limits are."""
    make, phrase = BOMBS[name]
    assert len(make()) < 1_000_000
    result = bomb_results[name]
    assert result["outcome"] == "ImageInputError", result
    assert phrase in result["message"], result
    assert result["seconds"] < 2.0, result
    assert result["peak_growth_mb"] < 300, result


def test_opencv_pixel_cap_is_set_when_agent_comes_first() -> None:
    """agent/__init__.py sets OPENCV_IO_MAX_IMAGE_PIXELS before cv2 loads: a backstop for
    sizes the header checks cannot see (it only works if agent is imported before cv2)."""
    code = (
        "import os; os.environ.pop('OPENCV_IO_MAX_IMAGE_PIXELS', None)\n"
        "import agent, cv2, numpy as np\n"
        "ppm = b'P5\\n10000 10000\\n255\\n' + bytes(64)\n"
        "try:\n"
        "    cv2.imdecode(np.frombuffer(ppm, np.uint8), cv2.IMREAD_GRAYSCALE)\n"
        "    print('decoded')\n"
        "except cv2.error as exc:\n"
        "    print('capped' if 'MAX_IMAGE_PIXELS' in str(exc) else exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=60, check=False, cwd=REPO
    )
    assert proc.stdout.decode().strip() == "capped", proc.stderr.decode()[-2000:]


# -- files, pipes and devices ----------------------------------------------------


def test_files_over_the_byte_limit_are_not_read(tmp_path: Path) -> None:
    """A huge file (a video named .jpg) is refused from its size, not read into memory."""
    big = tmp_path / "huge.jpg"
    with big.open("wb") as fh:
        fh.write(encode(".jpg"))
        fh.truncate(8 * MAX_BYTES)  # sparse: no disk used
    with pytest.raises(ImageInputError, match=r"huge\.jpg: file is \d+ bytes, over the"):
        imageio.load(str(big))


def test_endless_device_is_read_only_up_to_the_limit() -> None:
    """``vin-agent read /dev/zero`` must stop at the byte limit, not fill the memory."""
    with pytest.raises(ImageInputError, match="over the byte limit"):
        imageio.load("/dev/zero")


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("", "empty input"),
        ("   ", "empty input"),
        ("frame\0.jpg", "not a valid file name"),
        ("ftp://host/x.jpg", "unsupported URL scheme 'ftp'"),
        ("file:///etc/passwd", "unsupported URL scheme 'file'"),
        ("/nonexistent/frame.jpg", "no such file"),
        ("x." * 2500, "cannot read"),  # longer than a file name may be
        ("A" * 101, "no file has that name"),  # base64-looking, but neither base64 nor a file
    ],
)
def test_read_arguments_that_are_not_images(spec: str, needle: str) -> None:
    """Odd ``read`` arguments each get a message saying what is wrong with them."""
    with pytest.raises(ImageInputError, match=needle):
        imageio.load(spec)


def test_a_directory_and_a_non_image(tmp_path: Path) -> None:
    """A directory or a text file named like an image says so."""
    (tmp_path / "dir.jpg").mkdir()
    (tmp_path / "notes.jpg").write_text("not a picture\n")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageInputError, match="is a directory"):
        imageio.load(str(tmp_path / "dir.jpg"))
    with pytest.raises(ImageInputError, match="not a supported image"):
        imageio.load(str(tmp_path / "notes.jpg"))
    with pytest.raises(ImageInputError, match=r"empty input \(0 bytes\)"):
        imageio.load(str(tmp_path / "empty.png"))


# -- base64 and data URIs ----------------------------------------------------------

_PNG = encode(".png")
_B64 = base64.b64encode(_PNG).decode()


def _both(spec: str) -> list[imageio.LoadedImage | ImageInputError]:
    """The outcome through ``read`` (load) and through /v1/vinocr (load_remote)."""
    outcomes: list[imageio.LoadedImage | ImageInputError] = []
    for fn in (imageio.load, imageio.load_remote):
        try:
            outcomes.append(fn(spec))
        except ImageInputError as exc:
            outcomes.append(exc)
    return outcomes


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("data:text/plain;base64," + _B64, "MIME type 'text/plain', not an image"),
        ("data:application/pdf;base64," + _B64, "MIME type 'application/pdf'"),
        ("data:image/png," + _B64, "without ';base64,'"),
        ("data:image/png;base64,", "empty base64 payload"),
        ("data:image/png;base64,  \n ", "empty base64 payload"),
        ("data:image/png;base64," + _B64[:40] + "=" + _B64[41:], "not valid base64"),
        ("data:image/png;base64," + _B64 + "A", "not valid base64"),  # 4k+1 characters
        ("data:image/png;base64," + _B64.rstrip("=") + "=====", "not valid base64"),
        ("data:image/png;base64," + _B64[:100] + "é" + _B64[100:], "unexpected character 'é'"),
        ("data:image/png;base64," + _B64[:100] + "\0" + _B64[100:], "unexpected character"),
        ("data:image/png;base64," + _B64[:100] + "%2B" + _B64[100:], "unexpected character '%'"),
        (
            "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" * 9).decode(),
            "truncated or corrupt PNG image (its header does not give a size)",
        ),
        ("data:image/png;base64," + base64.b64encode(b"hello " * 20).decode(), "not a supported"),
        ("data:image/png;base64," + _B64[: len(_B64) // 2 // 4 * 4], "truncated or corrupt PNG"),
        ("data:image/png;base64," + "A" * (MAX_BYTES * 4 // 3 + 8), "over the"),
        (base64.b64encode(b"hello " * 20).decode(), "not a supported image"),
        ("A" * (MAX_BYTES * 4 // 3 + 8), "over the"),
    ],
    ids=[
        "mime-text",
        "mime-pdf",
        "not-base64-uri",
        "empty",
        "only-whitespace",
        "padding-in-the-middle",
        "one-char-too-many",
        "excess-padding",
        "non-ascii",
        "nul",
        "percent-encoded",
        "png-magic-only",
        "text-not-image",
        "half-a-png",
        "oversize-uri",
        "plain-base64-text",
        "oversize-plain",
    ],
)
def test_bad_base64_and_data_uris(spec: str, needle: str) -> None:
    """Each broken base64 / data URI gives an ImageInputError saying what is wrong,
    through ``read`` and through the HTTP endpoint alike."""
    for outcome in _both(spec):
        assert isinstance(outcome, ImageInputError), outcome
        assert needle in str(outcome)


@pytest.mark.parametrize(
    "spec",
    [
        _B64,
        _B64.rstrip("="),
        "data:image/png;base64," + _B64,
        "DATA:IMAGE/PNG;BASE64," + _B64,
        "data:;base64," + _B64,
        "data:image/png;charset=binary;base64," + _B64,
        "data:image/png;base64," + "\n".join(_B64[i : i + 76] for i in range(0, len(_B64), 76)),
        "data:image/png;base64," + " \t".join(_B64[i : i + 10] for i in range(0, len(_B64), 10)),
        base64.urlsafe_b64encode(_PNG).decode(),
        "data:image/png;base64," + base64.urlsafe_b64encode(_PNG).decode().rstrip("="),
    ],
    ids=[
        "plain",
        "unpadded",
        "data-uri",
        "data-uri-upper-case",
        "data-uri-no-mime",
        "data-uri-params",
        "mime-line-breaks",
        "spaces-and-tabs",
        "url-safe",
        "url-safe-unpadded",
    ],
)
def test_lenient_base64_variants_decode(spec: str) -> None:
    """Real clients wrap lines, drop padding, use the URL-safe alphabet or upper-case the
    scheme: those decode to the same frame."""
    expected = imageio.decode_image(_PNG).image
    if not spec.lower().startswith("data:") and "-" not in spec and "_" not in spec:
        assert imageio.looks_like_base64(spec)
    for outcome in _both(spec):
        assert isinstance(outcome, imageio.LoadedImage), outcome
        assert np.array_equal(outcome.image, expected)


def test_remote_inputs_never_read_files(tmp_path: Path) -> None:
    """/v1/vinocr must not open a server-side path because a request named one."""
    path = tmp_path / "secret.png"
    path.write_bytes(_PNG)
    outcome = _both(str(path))
    assert isinstance(outcome[0], imageio.LoadedImage)
    assert isinstance(outcome[1], ImageInputError)


# -- the CLI: bad inputs among good ones --------------------------------------------


@pytest.mark.integration
def test_read_cli_with_a_mix_of_bad_inputs(cli: list[str], tmp_path: Path) -> None:
    """One JSON object per input, in input order; each bad one says why; exit 0; no traceback.

    The good sample sits in the middle, so a bad input can neither stop nor shift the rest.
    """
    files = {
        "zero.jpg": b"",
        "random.jpg": bytes(np.random.default_rng(3).integers(0, 256, 5000, dtype=np.uint8)),
        "truncated.webp": seeds()["plain.webp"][:60],
        "flipped.png": flip_bits(seeds()["plain.png"], [(0.02, 3), (0.5, 1)]),
        "bomb.png": png_with_size(100_000, 100_000),
        "bomb.tiff": tiff_with_size(100_000, 100_000),
        "chunk-bomb.png": png_chunk_bomb(),
        "scans.jpg": jpeg_scan_bomb(),
        "notes.txt": b"just some text\n",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "folder.jpg").mkdir()
    bad_before = [str(tmp_path / n) for n in list(files)[:5]]
    bad_after = [str(tmp_path / n) for n in list(files)[5:]] + [
        str(tmp_path / "folder.jpg"),
        str(tmp_path / "missing.jpg"),
        "/dev/zero",
        "",
        "data:text/plain;base64,aGVsbG8=",
        "data:image/png;base64,iVBORw0KGgo" + "é",
    ]
    inputs = [*bad_before, str(SAMPLE), *bad_after]
    proc = run_cli(cli, "read", *inputs)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert b"Traceback" not in proc.stderr
    outs = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.strip()]
    assert [o["input"] for o in outs] == inputs
    good = len(bad_before)
    for i, out in enumerate(outs):
        if i == good:
            assert out["width"] > 0 and out["height"] > 0
            continue
        assert out["success"] is False and out["vin"] is None, out
        assert len(out["message"]) > 10, out


@pytest.mark.integration
def test_tampered_model_stops_read_naming_the_file(cli: list[str], tmp_path: Path) -> None:
    """One flipped byte in a shipped model: ``read`` refuses to start (exit 1), names the
    file on stderr, prints no results and no traceback."""
    models = tmp_path / "models"
    shutil.copytree(REPO / "models", models)
    target = models / "recognizer.tflite"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    proc = run_cli(cli, "read", "--models-dir", str(models), str(SAMPLE))
    assert proc.returncode == 1
    assert b"recognizer.tflite" in proc.stderr
    assert b"Traceback" not in proc.stderr
    assert proc.stdout.strip() == b""
    verify = run_cli(cli, "models", "verify", "--models-dir", str(models))
    assert verify.returncode == 1 and b"recognizer.tflite" in verify.stdout + verify.stderr
