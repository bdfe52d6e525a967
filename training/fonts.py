"""Fonts for the synthetic VIN renderer: discovery, vetting and glyph caching.

System TTF/OTF fonts (the Debian packages listed in ``training/fonts.txt``)
are vetted once per process: a font is kept only when it renders every
character a VIN carrier needs with distinct, non-empty glyphs, which drops
symbol and dingbat fonts whatever they are called.  With no usable font
file at all (a bare CI machine) OpenCV's built-in Hershey fonts stand in so
that the pipeline and its tests still run.

``FONT_DIRS`` (os.pathsep-separated) overrides the directories searched.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import ImageFont

logger = logging.getLogger(__name__)

DEFAULT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts")
FONT_SUFFIXES = (".ttf", ".otf")
#: Every glyph a crop may show: VIN characters, I/O/Q for distractors, delimiters.
REQUIRED_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*:.-"
#: Fonts that pass the glyph test but whose shapes no VIN carrier uses
#: (calligraphy, maths) or that are too faint to survive downscaling.
EXCLUDED_NAMES = ("Z003", "MathTeX", "StandardSymbols", "D050000L", "Inverted", "Outline")
#: Stems thinner than this fraction of the cap height vanish at 8 px caps.
MIN_WEIGHT = 0.06
_SERIF_HINTS = ("serif", "roman", "tinos", "times", "c059", "p052", "bookman", "typewriter")
_PROBE_SIZE = 32
#: Glyph cache entries kept per process before the cache is dropped.
_CACHE_LIMIT = 150_000


@dataclass(frozen=True)
class FontInfo:
    """A vetted font and the properties the renderer chooses by."""

    path: str
    family: str
    style: str
    category: str  # "ocr", "mono", "serif" or "sans"
    italic: bool
    #: Stem width of "I" over cap height: about 0.1 is light, 0.25 is black.
    weight: float
    #: Cap height in pixels per pixel of font size.
    cap_ratio: float


@dataclass(frozen=True)
class Glyph:
    """One rendered character; ``top`` is relative to the baseline (negative above)."""

    mask: np.ndarray
    left: int
    top: int
    advance: float


def font_dirs() -> tuple[str, ...]:
    env = os.environ.get("FONT_DIRS")
    if env:
        return tuple(d for d in env.split(os.pathsep) if d)
    return DEFAULT_DIRS


def _font_files(dirs: tuple[str, ...]) -> list[str]:
    files: set[str] = set()
    for d in dirs:
        root = Path(d)
        if root.is_dir():
            files.update(
                str(p) for p in root.rglob("*") if p.suffix.lower() in FONT_SUFFIXES and p.is_file()
            )
    return sorted(files)


def _probe(font: ImageFont.FreeTypeFont, ch: str) -> np.ndarray:
    im = font.getmask(ch, mode="L")
    return np.asarray(im, dtype=np.uint8).reshape(im.size[1], im.size[0])


def _vet(path: str) -> FontInfo | None:
    """A FontInfo when ``path`` renders REQUIRED_CHARS legibly, else None."""
    try:
        font = ImageFont.truetype(path, _PROBE_SIZE)
        name, sub = font.getname()
        family, style = name or Path(path).stem, sub or "Regular"
        if any(x.lower() in f"{path} {family} {style}".lower() for x in EXCLUDED_NAMES):
            return None
        notdef = _probe(font, "\U0010fffd")
        glyphs = {c: _probe(font, c) for c in REQUIRED_CHARS}
    except (OSError, ValueError):
        return None
    for g in glyphs.values():
        if g.size == 0 or not g.any():
            return None
        if g.shape == notdef.shape and np.array_equal(g, notdef):
            return None
    a, b, eight = glyphs["A"], glyphs["B"], glyphs["8"]
    if (a.shape == b.shape and np.array_equal(a, b)) or (
        b.shape == eight.shape and np.array_equal(b, eight)
    ):
        return None
    _, top, _, bottom = font.getbbox("H", anchor="ls")
    cap = max(1, bottom - top) / _PROBE_SIZE
    stem = glyphs["I"]
    # The middle row of "I" is its stem, even in fonts whose "I" has serifs.
    weight = float((stem[stem.shape[0] // 2] > 127).sum()) / (cap * _PROBE_SIZE)
    if weight < MIN_WEIGHT:
        return None
    mono = len({round(font.getlength(c), 2) for c in "I1WM0."}) == 1
    name = f"{Path(path).stem} {family} {style}".lower()
    if "ocr" in name:
        category = "ocr"
    elif mono:
        category = "mono"
    elif any(h in name for h in _SERIF_HINTS):
        category = "serif"
    else:
        category = "sans"
    italic = any(h in style.lower() for h in ("italic", "oblique", "inclined"))
    return FontInfo(path, family, style, category, italic, weight, cap)


@lru_cache(maxsize=4)
def discover(dirs: tuple[str, ...] | None = None) -> tuple[FontInfo, ...]:
    """Vetted fonts, one per (family, style), sorted by path for determinism."""
    seen: set[tuple[str, str]] = set()
    out = []
    for path in _font_files(dirs or font_dirs()):
        info = _vet(path)
        if info is None or (info.family, info.style) in seen:
            continue
        seen.add((info.family, info.style))
        out.append(info)
    logger.info("%d usable fonts in %s", len(out), ", ".join(dirs or font_dirs()))
    return tuple(out)


class Face:
    """A font that renders cached glyphs at integer pixel sizes."""

    def __init__(self, info: FontInfo) -> None:
        self.info = info
        self._sizes: dict[int, ImageFont.FreeTypeFont] = {}

    def _font(self, size: int) -> ImageFont.FreeTypeFont:
        font = self._sizes.get(size)
        if font is None:
            font = self._sizes[size] = ImageFont.truetype(self.info.path, size)
        return font

    def render(self, ch: str, size: int) -> Glyph:
        font = self._font(size)
        im, (left, top) = font.getmask2(ch, mode="L", anchor="ls")
        mask = np.asarray(im, dtype=np.uint8).reshape(im.size[1], im.size[0])
        return Glyph(mask, left, top, font.getlength(ch))


class HersheyFace(Face):
    """OpenCV's vector font, used only when no font file is usable."""

    def __init__(self, info: FontInfo, font_id: int, thickness_ratio: float) -> None:
        super().__init__(info)
        self._id = font_id
        self._thick = thickness_ratio
        (_, h), _ = cv2.getTextSize("H", font_id, 1.0, 1)
        self._unit_cap = max(1, h)

    def render(self, ch: str, size: int) -> Glyph:
        scale = size * self.info.cap_ratio / self._unit_cap
        thick = max(1, round(size * self._thick))
        (w, h), base = cv2.getTextSize(ch, self._id, scale, thick)
        pad = thick + 2
        canvas = np.zeros((h + base + 2 * pad, w + 2 * pad), np.uint8)
        cv2.putText(canvas, ch, (pad, pad + h), self._id, scale, 255, thick, cv2.LINE_AA)
        return Glyph(canvas, -pad, -(pad + h), float(w))


def _hershey_faces() -> list[Face]:
    specs = [
        ("Hershey Simplex", cv2.FONT_HERSHEY_SIMPLEX, "sans", 0.06),
        ("Hershey Simplex Bold", cv2.FONT_HERSHEY_SIMPLEX, "sans", 0.11),
        ("Hershey Duplex", cv2.FONT_HERSHEY_DUPLEX, "sans", 0.08),
        ("Hershey Plain", cv2.FONT_HERSHEY_PLAIN, "mono", 0.07),
        ("Hershey Complex", cv2.FONT_HERSHEY_COMPLEX, "serif", 0.07),
        ("Hershey Triplex", cv2.FONT_HERSHEY_TRIPLEX, "serif", 0.09),
    ]
    return [
        HersheyFace(FontInfo(f"hershey:{name}", name, "Regular", cat, False, t, 0.7), fid, t)
        for name, fid, cat, t in specs
    ]


@lru_cache(maxsize=1)
def faces() -> tuple[Face, ...]:
    """All faces the renderer may use, in a fixed order."""
    infos = discover()
    if not infos:
        logger.warning("no usable TTF/OTF fonts found; falling back to Hershey fonts")
        return tuple(_hershey_faces())
    return tuple(Face(i) for i in infos)


@lru_cache(maxsize=1)
def families() -> dict[str, tuple[tuple[int, ...], ...]]:
    """Face indices grouped by family, per category.

    Sampling a family first and a style second keeps a family with 40
    weights and widths from drowning out one with four.  An empty category
    borrows every family so that any category can always be asked for.
    """
    groups: dict[str, dict[str, list[int]]] = {}
    for i, f in enumerate(faces()):
        groups.setdefault(f.info.category, {}).setdefault(f.info.family, []).append(i)
    everything = tuple(tuple(v) for g in groups.values() for v in g.values())
    out = {}
    for cat in ("ocr", "mono", "serif", "sans"):
        fams = groups.get(cat, {})
        out[cat] = tuple(tuple(fams[k]) for k in sorted(fams)) or everything
    return out


_cache: dict[tuple[int, int, str, str], Glyph] = {}


def glyph(face: int, size: int, ch: str, effect: str = "plain") -> Glyph:
    """Cached glyph of ``ch`` at ``size`` px, optionally post-processed.

    ``effect`` is "plain", "dots:<rows>" (dot-matrix on a grid of that many
    rows per cap height) or "stencil" (bridges cut through the strokes).
    """
    key = (face, size, ch, effect)
    g = _cache.get(key)
    if g is not None:
        return g
    if len(_cache) >= _CACHE_LIMIT:
        # Drop the older half (dicts keep insertion order): common glyphs
        # come straight back, rare ones stay out.
        for k in list(_cache)[: _CACHE_LIMIT // 2]:
            del _cache[k]
    if effect == "plain":
        g = faces()[face].render(ch, size)
    else:
        base = glyph(face, size, ch)
        cap = size * faces()[face].info.cap_ratio
        if effect.startswith("dots:"):
            g = _dotted(base, cap / int(effect[5:]))
        elif effect == "stencil":
            g = _stencil(base, ch)
        else:
            raise ValueError(f"unknown glyph effect {effect!r}")
    _cache[key] = g
    return g


@lru_cache(maxsize=64)
def _dot(cell: int) -> np.ndarray:
    r = cell * 0.42
    yy, xx = np.mgrid[:cell, :cell] + 0.5 - cell / 2
    return np.clip((r + 0.5 - np.hypot(yy, xx)) * 255, 0, 255).astype(np.uint8)


def _dotted(g: Glyph, cell_f: float) -> Glyph:
    """Dot-matrix / dot-peen version: sample the glyph on a grid, draw discs."""
    cell = max(2, round(cell_f))
    if g.mask.size == 0:
        return g
    # Anchor the grid on the baseline so dots line up from glyph to glyph.
    y0 = (g.top // cell) * cell
    x0 = (g.left // cell) * cell
    h, w = g.mask.shape
    rows = -(-(g.top - y0 + h) // cell)
    cols = -(-(g.left - x0 + w) // cell)
    canvas = np.zeros((rows * cell, cols * cell), np.uint8)
    canvas[g.top - y0 : g.top - y0 + h, g.left - x0 : g.left - x0 + w] = g.mask
    cov = canvas.reshape(rows, cell, cols, cell).mean(axis=(1, 3))
    on = (cov > 80).astype(np.uint8)
    return Glyph(np.kron(on, _dot(cell)), x0, y0, g.advance)


def _stencil(g: Glyph, ch: str) -> Glyph:
    """Stencil look: thin gaps where a real stencil needs bridges."""
    m = g.mask.copy()
    h, w = m.shape
    if h < 4 or w < 4:
        return g
    gap = max(1, round(h * 0.07))
    if ch in "0ABDOPQR4689":
        # Closed counters: a vertical bridge through top and bottom bowls.
        c = w // 2
        m[:, c - gap // 2 : c - gap // 2 + gap] = 0
    else:
        c = h // 2
        m[c - gap // 2 : c - gap // 2 + gap, :] = 0
    return Glyph(m, g.left, g.top, g.advance)


def summary() -> list[str]:
    """Human-readable list of the faces in use, for logs and reports."""
    return [f"{f.info.family} {f.info.style} [{f.info.category}]" for f in faces()]
