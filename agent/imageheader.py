"""Image headers read without decoding: the format, the declared size, and what
makes a file unsafe to hand to OpenCV (PNG chunk lengths, TIFF tiles, JPEG scans).

``agent.imageio`` refuses bombs with these before any pixel is allocated.
"""

from __future__ import annotations

import struct

#: Formats decoded, by their magic bytes.  Anything else is refused before
#: OpenCV sees it: OpenCV also decodes PBM/PGM/PPM, JPEG 2000, Radiance HDR,
#: Sun raster, AVIF and more, whose sizes are not read here, so they would
#: escape the pixel limit (a 20-byte PPM header can declare gigapixels).
_MAGIC = (
    (b"\xff\xd8", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),  # BigTIFF
    (b"MM\x00+", "TIFF"),
)
SUPPORTED_FORMATS = "JPEG, PNG, WebP, BMP or TIFF expected"
#: Progressive JPEG scans each pass over the whole image, so a small file of
#: thousands of scans keeps a core busy for minutes.  libjpeg-turbo suggests
#: a limit of 500 (TJPARAM_SCANLIMIT); real files have at most a few dozen.
MAX_JPEG_SCANS = 500
#: PNG's own limit on a chunk length (2**31 - 1).
_PNG_MAX_CHUNK = 0x7FFFFFFF

# TIFF tags read from the first IFD, and the integer field types libtiff accepts for them.
_TIFF_WIDTH, _TIFF_HEIGHT, _TIFF_TILE_W, _TIFF_TILE_H = 256, 257, 322, 323
_TIFF_INTS = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 16: "Q", 17: "q"}


def image_kind(data: bytes) -> str | None:
    """The format name from the magic bytes, or None for anything not decoded here."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    return None


def _tiff_fields(data: bytes) -> dict[int, int]:
    """Width, height and tile size from a TIFF or BigTIFF's first IFD (the page OpenCV reads).

    A tag given twice keeps its largest value, so a duplicate cannot hide a
    huge size from this check.
    """
    e = "<" if data[:2] == b"II" else ">"
    (version,) = struct.unpack(e + "H", data[2:4])
    if version == 43:  # BigTIFF: 8-byte offsets and counts, 20-byte entries
        off_fmt, inline, entry_size = "Q", 8, 20
        (ifd,) = struct.unpack(e + "Q", data[8:16])
        (count,) = struct.unpack(e + "Q", data[ifd : ifd + 8])
        first = ifd + 8
    else:
        off_fmt, inline, entry_size = "I", 4, 12
        (ifd,) = struct.unpack(e + "I", data[4:8])
        (count,) = struct.unpack(e + "H", data[ifd : ifd + 2])
        first = ifd + 2
    fields: dict[int, int] = {}
    wanted = (_TIFF_WIDTH, _TIFF_HEIGHT, _TIFF_TILE_W, _TIFF_TILE_H)
    for k in range(min(count, 4096)):
        entry = data[first + k * entry_size : first + (k + 1) * entry_size]
        if len(entry) < entry_size:
            break
        tag, typ = struct.unpack(e + "HH", entry[:4])
        if tag not in wanted or typ not in _TIFF_INTS:
            continue
        fmt = e + _TIFF_INTS[typ]
        value = entry[4 + inline :]
        if struct.calcsize(fmt) > inline:  # an 8-byte integer in classic TIFF: stored elsewhere
            (at,) = struct.unpack(e + off_fmt, value)
            value = data[at : at + struct.calcsize(fmt)]
        (v,) = struct.unpack(fmt, value[: struct.calcsize(fmt)])
        fields[tag] = max(int(v), fields.get(tag, int(v)))
    return fields


def sniff_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, GIF, BMP, WebP, TIFF or JPEG header, without decoding.

    None when the header cannot be read (truncated, corrupt, or another format).
    """
    try:
        kind = image_kind(data)
        if kind == "PNG":
            if data[12:16] != b"IHDR":  # libpng requires IHDR first
                return None
            w, h = struct.unpack(">II", data[16:24])
            return int(w), int(h)
        if kind == "GIF":
            w, h = struct.unpack("<HH", data[6:10])
            return int(w), int(h)
        if kind == "BMP":
            (header,) = struct.unpack("<I", data[14:18])
            if header == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
                w, h = struct.unpack("<HH", data[18:22])
            else:
                w, h = struct.unpack("<ii", data[18:26])
            return abs(int(w)), abs(int(h))
        if kind == "WebP":
            chunk = data[12:16]
            if chunk == b"VP8X" and len(data) >= 30:
                w = 1 + int.from_bytes(data[24:27], "little")
                h = 1 + int.from_bytes(data[27:30], "little")
                return w, h
            if chunk == b"VP8L" and data[20:21] == b"\x2f" and len(data) >= 25:
                b = int.from_bytes(data[21:25], "little")
                return 1 + (b & 0x3FFF), 1 + ((b >> 14) & 0x3FFF)
            if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
                w, h = struct.unpack("<HH", data[26:30])
                return int(w & 0x3FFF), int(h & 0x3FFF)
            return None
        if kind == "TIFF":
            fields = _tiff_fields(data)
            if _TIFF_WIDTH not in fields or _TIFF_HEIGHT not in fields:
                return None
            return fields[_TIFF_WIDTH], fields[_TIFF_HEIGHT]
        if kind == "JPEG":
            return _jpeg_size(data)
    except struct.error:
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the JPEG markers up to the first SOFn; None if a scan (SOS) or the end comes first."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        if marker in (0xDA, 0xD9):  # a scan or the end before any frame header
            return None
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(w), int(h)
        i += 2 + length
    return None


def structure_problem(data: bytes, kind: str, max_pixels: int) -> str | None:
    """What makes a file with a sane header still unsafe to hand to OpenCV, if anything."""
    if kind == "PNG":
        # OpenCV's PNG reader allocates each chunk's declared length before reading
        # it: one corrupt length makes a 69-byte file cost gigabytes.
        pos = 8
        while pos + 8 <= len(data):
            length = int.from_bytes(data[pos : pos + 4], "big")
            tag = data[pos + 4 : pos + 8]
            if length > _PNG_MAX_CHUNK or pos + 12 + length > len(data):
                name = tag.decode("latin-1").encode("unicode_escape").decode()
                return (
                    f"truncated or corrupt PNG: chunk {name!r} declares {length} bytes"
                    f" but the file has {max(0, len(data) - pos - 12)} left"
                )
            pos += 12 + length
            if tag == b"IEND":
                break
    elif kind == "TIFF":
        fields = _tiff_fields(data)
        tw, th = fields.get(_TIFF_TILE_W, 0), fields.get(_TIFF_TILE_H, 0)
        if tw * th > max_pixels:
            return (
                f"TIFF tiles of {tw}x{th} pixels are over the {max_pixels} pixel limit;"
                " refusing to decode it"
            )
    elif kind == "JPEG":
        scans = data.count(b"\xff\xda")
        if scans > MAX_JPEG_SCANS:
            return (
                f"JPEG has {scans} scans, over the limit of {MAX_JPEG_SCANS}; refusing to"
                " decode it (real photos have a few dozen at most: this would keep a CPU"
                " core busy for a long time)"
            )
    return None
