"""Synthetic crops of one VIN text line, as a text-line detector would hand them over.

    img, vin, kind = render_crop(np.random.default_rng(7))
    x = preprocess(img)  # 32 x 320 uint8, the recognizer's input

A crop is built in three stages.  ``carriers.sample_style`` decides what
the carrier is (stock, ink, font, prefix, neighbouring lines, relief, how it
is photographed).  This module lays the text out on an ink "page" at a
supersampled font size, then cuts the detector's imperfect quad out of it
with one perspective warp straight to the crop's natural size, so every
later effect runs on a small image.  ``photo.paint`` and
``photo.photograph`` turn that ink into a camera's grayscale JPEG.

Everything is drawn from the caller's ``np.random.Generator``, so a seed
fixes the output exactly.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import cv2
import numpy as np

from agent.vision.recognizer import preprocess
from training import carriers, fonts, photo
from training.carriers import KINDS, Style
from training.photo import Geometry
from training.vins import sample_context_line, sample_vin

logger = logging.getLogger(__name__)

#: crops-2: serif faces on most carriers (about 9 % of lines, was 2.5 %): real titles,
#: registrations and plates use them, and the reader misread a Times-like line.
GENERATOR_VERSION = "crops-2"
__all__ = [
    "GENERATOR_VERSION",
    "KINDS",
    "preprocess",
    "render_crop",
    "render_crop_with_quad",
    "text_line_ink",
]

#: Font sizes glyphs are rendered at; the warp covers the steps between them,
#: which keeps the glyph cache small enough to stay warm.
SIZE_LADDER = (12, 16, 21, 28, 37, 49, 65, 86, 114)


@lru_cache(maxsize=64)
def _star(cap: int) -> fonts.Glyph:
    r_out, r_in = cap * 0.55, cap * 0.22
    ang = np.pi / 2 + np.arange(10) * np.pi / 5
    rad = np.where(np.arange(10) % 2 == 0, r_out, r_in)
    pts = np.stack([r_out + rad * np.cos(ang), r_out - rad * np.sin(ang)], 1)
    side = int(np.ceil(2 * r_out)) + 1
    mask = np.zeros((side, side), np.uint8)
    cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    return fonts.Glyph(mask, 0, -round(cap / 2 + r_out), float(side))


def _layout(
    face: int, size: int, text: str, effect: str, tracking: float, pitch: float | None
) -> tuple[list[tuple[fonts.Glyph, float]], float]:
    """Glyphs with their pen x positions, and the advance of the whole line."""
    cap = size * fonts.faces()[face].info.cap_ratio
    out = []
    x = 0.0
    for ch in text:
        if ch == " ":
            x += fonts.glyph(face, size, " ").advance + tracking
            continue
        g = _star(round(cap)) if ch == carriers.STAR else fonts.glyph(face, size, ch, effect)
        if pitch is not None:
            out.append((g, x + (pitch - g.advance) / 2))
            x += pitch
        else:
            out.append((g, x))
            x += g.advance + tracking
    return out, x


def _paste(page: np.ndarray, g: fonts.Glyph, x: float, y: float) -> None:
    """Max-composite a glyph whose pen origin is at page coordinates (x, y)."""
    h, w = g.mask.shape
    x0, y0 = round(x) + g.left, round(y) + g.top
    px0, py0 = max(x0, 0), max(y0, 0)
    px1, py1 = min(x0 + w, page.shape[1]), min(y0 + h, page.shape[0])
    if px1 <= px0 or py1 <= py0:
        return
    region = page[py0:py1, px0:px1]
    np.maximum(region, g.mask[py0 - y0 : py1 - y0, px0 - x0 : px1 - x0], out=region)


def _font_size(face: int, cap_px: float) -> int:
    ratio = fonts.faces()[face].info.cap_ratio
    for s in SIZE_LADDER:
        if s * ratio >= cap_px:
            return s
    return SIZE_LADDER[-1]


def _context(
    page: np.ndarray, st: Style, face: int, size: int, text: str, x: float, y: float
) -> None:
    glyphs, _ = _layout(face, size, text, st.effect, st.tracking * size * 0.7, None)
    for g, gx in glyphs:
        if -g.mask.shape[1] - g.left < x + gx < page.shape[1]:
            _paste(page, g, x + gx, y)


def _barcode(
    rng: np.random.Generator,
    page: np.ndarray,
    x0: float,
    x1: float,
    y0: float,
    y1: float,
    module: float,
) -> None:
    widths = rng.integers(1, 4, size=int((x1 - x0) / module) + 2) * module
    edges = x0 + np.concatenate([[0.0], np.cumsum(widths)])
    ya, yb = max(0, round(y0)), min(page.shape[0], round(y1))
    if yb <= ya:
        return
    for i in range(0, len(edges) - 1, 2):
        a, b = max(0, round(edges[i])), min(page.shape[1], round(edges[i + 1]))
        if a >= page.shape[1]:
            break
        if b > a:
            page[ya:yb, a:b] = 255


def _compose(rng: np.random.Generator, vin: str, st: Style) -> tuple[np.ndarray, Geometry]:
    """Lay out the carrier's ink and warp the detector quad to the output crop."""
    ink, geom, _ = _compose_with_quad(rng, vin, st)
    return ink, geom


def _compose_with_quad(
    rng: np.random.Generator, vin: str, st: Style
) -> tuple[np.ndarray, Geometry, np.ndarray]:
    """``_compose`` plus the quad of the text's cap-height box in crop pixels (TL, TR, BR, BL)."""
    ss = rng.uniform(1.0, 1.4)
    size = _font_size(st.face, st.cap * ss)
    cap_r = size * fonts.faces()[st.face].info.cap_ratio
    track = st.tracking * cap_r
    pitch = None
    if st.pitch is not None:
        widest = max(fonts.glyph(st.face, size, c, st.effect).advance for c in vin)
        pitch = widest + st.pitch * cap_r
    pre, _ = _layout(st.face, size, st.prefix, st.effect, track, pitch)
    vin_g, vin_adv = _layout(st.face, size, vin, st.effect, track, pitch)
    suf, _ = _layout(st.face, size, st.suffix, st.effect, track, pitch)
    pre_adv = (max((x + g.advance for g, x in pre), default=0.0) + st.gap * cap_r) if pre else 0
    vin_g = [(g, x + pre_adv) for g, x in vin_g]
    suf_x = pre_adv + vin_adv + (st.gap * cap_r if suf else 0)
    suf = [(g, x + suf_x) for g, x in suf]

    first, fx = vin_g[0]
    last, lx = vin_g[-1]
    first_w, last_w = first.mask.shape[1], last.mask.shape[1]
    x_left, x_right = fx + first.left, lx + last.left + last_w
    # Detector boxes sometimes shave up to ~30 % off an end character.
    ml = max(st.margin_l * cap_r, -0.3 * first_w)
    mr = max(st.margin_r * cap_r, -0.3 * last_w)
    # The detector's quad is a box in its own frame, rotated by the residual
    # angle against the text: bound the rotated text there, then add margins.
    a = np.deg2rad(st.angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    centre = np.array([(x_left + x_right) / 2, -cap_r / 2])
    text = np.array([[x_left, -cap_r], [x_right, -cap_r], [x_right, 0], [x_left, 0]])
    local = (text - centre) @ rot  # rows times rot = rotation by -angle
    (lx0, ly0), (lx1, ly1) = local.min(0), local.max(0)
    slant = abs(st.shear) * cap_r  # keep sheared glyph corners inside as well
    mt, mb = st.margin_t * cap_r, st.margin_b * cap_r
    box = np.array(
        [
            [lx0 - ml - slant, ly0 - mt],
            [lx1 + mr + slant, ly0 - mt],
            [lx1 + mr + slant, ly1 + mb],
            [lx0 - ml - slant, ly1 + mb],
        ]
    )
    bw, bh = box[1, 0] - box[0, 0], box[2, 1] - box[0, 1]
    jitter = rng.normal(0, st.perspective * bh, size=(4, 2))
    # Corners may wander outwards freely but inwards only by part of the margin,
    # so perspective never cuts into the characters more than the margins allow.
    inward = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]])
    room = np.array([[max(ml, 0), mt], [max(mr, 0), mt], [max(mr, 0), mb], [max(ml, 0), mb]])
    jitter = np.where(jitter * inward > 0, np.minimum(np.abs(jitter), 0.4 * room) * inward, jitter)
    box = box + jitter
    if st.keystone:
        # One end of the quad taller than the other: the text shrinks towards it.
        end = (1, 2) if st.keystone > 0 else (0, 3)
        box[end[0], 1] -= abs(st.keystone) * bh / 2
        box[end[1], 1] += abs(st.keystone) * bh / 2
    box[:2, 0] += st.shear * bh / 2
    box[2:, 0] -= st.shear * bh / 2
    quad = box @ rot.T + centre
    ox, oy = np.floor(quad.min(0)) - 2
    pw, ph = (np.ceil(quad.max(0)) + 2 - (ox, oy)).astype(int)
    page = np.zeros((ph, pw), np.uint8)

    for g, x in (*pre, *vin_g, *suf):
        _paste(page, g, x - ox, -oy)
    if st.above or st.below:
        csize = _font_size(st.context_face, cap_r * st.context_scale)
        ccap = csize * fonts.faces()[st.context_face].info.cap_ratio
        start = (pre[0][1] if pre else fx) + rng.uniform(-2.5, 1.0) * cap_r - ox
        if st.above:
            y = -cap_r * (1 + st.line_gap) - oy
            _context(page, st, st.context_face, csize, st.above, start, y)
        if st.below:
            y = cap_r * st.line_gap + ccap - oy
            _context(page, st, st.context_face, csize, st.below, start + rng.normal(0, cap_r), y)
    if st.barcode:
        gap, tall = rng.uniform(0.3, 0.8) * cap_r, rng.uniform(1.5, 5.0) * cap_r
        y0 = -cap_r - gap - tall if st.barcode == "above" else gap
        x0 = x_left - rng.uniform(0, 2) * cap_r - ox
        _barcode(
            rng,
            page,
            x0,
            x_right + 2 * cap_r - ox,
            y0 - oy,
            y0 + tall - oy,
            cap_r * rng.uniform(0.06, 0.14),
        )
    if st.rules:
        th = max(1, round(cap_r * rng.uniform(0.04, 0.09)))
        for y in (rng.uniform(0.15, 0.9) * cap_r, -cap_r * rng.uniform(1.15, 1.9)):
            if rng.random() < 0.7:
                yi = round(y - oy)
                page[max(0, yi) : max(0, yi + th), :] = 255
    if st.comb and pitch is not None:
        # Forms with one box per character: separators sit between glyph cells.
        th = max(1, round(cap_r * 0.05))
        for i in range(len(vin) + 1):
            xi = round(pre_adv + i * pitch - ox)
            page[:, max(0, xi) : max(0, xi + th)] = 255
    if st.bold:
        k = round(abs(st.bold) * cap_r)
        if k > 0:
            kern = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
            page = cv2.dilate(page, kern) if st.bold > 0 else cv2.erode(page, kern)

    scale = st.cap / cap_r
    out_h = max(8, round(bh * scale))
    out_w = max(16, round(bw * scale * st.xscale))
    dst = np.array([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]], np.float32)
    m = cv2.getPerspectiveTransform((quad - (ox, oy)).astype(np.float32), dst)
    ink = cv2.warpPerspective(page, m, (out_w, out_h), flags=cv2.INTER_LINEAR)
    if st.bend:
        # Bow the line with a smooth vertical shift; margins absorb it.
        xs = np.arange(out_w, dtype=np.float32)
        shift = st.bend * st.cap * np.sin(np.pi * xs / out_w - 0.5 * np.pi) ** 2
        map_x = np.broadcast_to(xs, (out_h, out_w))
        map_y = np.arange(out_h, dtype=np.float32)[:, None] + (shift - shift.mean())
        ink = cv2.remap(ink, map_x, map_y.astype(np.float32), cv2.INTER_LINEAR)
    sx = out_w / bw
    vin_x0 = (lx0 - box[0, 0]) * sx
    geom = Geometry(st.cap, vin_x0, vin_x0 + (x_right - x_left) * sx, first_w * sx, last_w * sx)
    text_quad = cv2.perspectiveTransform((text - (ox, oy)).astype(np.float32)[None], m)[0]
    if st.bend:
        # The remap above moved ink at column x up by shift(x) - mean; the corners follow.
        cols = np.clip(np.round(text_quad[:, 0]).astype(int), 0, out_w - 1)
        text_quad[:, 1] -= shift[cols] - shift.mean()
    return ink, geom, text_quad


def render_crop(
    rng: np.random.Generator, vin: str | None = None, kind: str | None = None
) -> tuple[np.ndarray, str, str]:
    """One synthetic VIN line crop at its natural size: (gray uint8 HxW, vin, kind).

    ``vin`` defaults to a sampled VIN; any other non-empty text (a distractor,
    say) is rendered the same way.  ``kind`` defaults to a weighted draw.
    """
    if vin is not None and not vin.strip():
        raise ValueError("vin must be non-empty text")
    if kind is None:
        kind = KINDS[carriers.weighted_index(rng, carriers.KIND_WEIGHTS)]
    elif kind not in KINDS:
        raise ValueError(f"unknown carrier kind {kind!r}; expected one of {KINDS}")
    if vin is None:
        vin = sample_vin(rng)
    img, _, kind = _render(rng, vin, kind, None, None)
    return img, vin, kind


def _render(
    rng: np.random.Generator,
    vin: str,
    kind: str,
    cap: float | None,
    margins: tuple[float, float, float, float] | None,
) -> tuple[np.ndarray, np.ndarray, str]:
    st = carriers.sample_style(rng, kind)
    if cap is not None:
        st.cap = float(cap)
    if margins is not None:
        st.margin_l, st.margin_r, st.margin_t, st.margin_b = margins
        st.bend = float(np.clip(st.bend, -0.25, 0.25))
    if st.above == "":
        st.above = sample_context_line(rng, kind)
    if st.below == "":
        st.below = sample_context_line(rng, kind)
    ink, geom, quad = _compose_with_quad(rng, vin, st)
    gray = photo.paint(rng, ink, st, geom, photo.gain(rng, st, ink.shape[1]))
    return photo.photograph(rng, gray, st, geom), quad, kind


def render_crop_with_quad(
    rng: np.random.Generator,
    text: str | None = None,
    kind: str | None = None,
    cap: float | None = None,
    margins: tuple[float, float, float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, str, str]:
    """``render_crop`` that also returns where the text is: (gray, quad, text, kind).

    ``quad`` (4, 2) float32 is the cap-height box of ``text`` alone (no
    prefix, suffix or context lines) in crop pixels, TL, TR, BR, BL in
    reading order.  ``cap`` overrides the cap height in output pixels and
    ``margins`` (left, right, top, bottom, in cap heights) the space around
    the text, so a scene can ask for a whole label rather than a tight crop.
    """
    if text is not None and not text.strip():
        raise ValueError("text must be non-empty")
    if kind is None:
        kind = KINDS[carriers.weighted_index(rng, carriers.KIND_WEIGHTS)]
    elif kind not in KINDS:
        raise ValueError(f"unknown carrier kind {kind!r}; expected one of {KINDS}")
    if text is None:
        text = sample_vin(rng)
    img, quad, kind = _render(rng, text, kind, cap, margins)
    return img, quad, text, kind


def text_line_ink(face: int, size: int, text: str) -> tuple[np.ndarray, np.ndarray]:
    """Plain ink (uint8 mask, 255 = ink) of one text line in a font, and its cap-height quad.

    No carrier look or photo effects: for cheap clutter and printed sheets.
    """
    glyphs, _ = _layout(face, size, text, "plain", 0.0, None)
    if not glyphs:
        raise ValueError("text has no visible characters")
    cap = size * fonts.faces()[face].info.cap_ratio
    x0 = min(x + g.left for g, x in glyphs)
    x1 = max(x + g.left + g.mask.shape[1] for g, x in glyphs)
    top = min(min(g.top for g, _ in glyphs), -cap)
    bottom = max(max(g.top + g.mask.shape[0] for g, _ in glyphs), 0)
    pad = 2
    page = np.zeros((int(bottom - top) + 2 * pad, int(np.ceil(x1 - x0)) + 2 * pad), np.uint8)
    for g, x in glyphs:
        _paste(page, g, x - x0 + pad, pad - top)
    first, fx = glyphs[0]
    last, lx = glyphs[-1]
    left = fx + first.left - x0 + pad
    right = lx + last.left + last.mask.shape[1] - x0 + pad
    base = pad - top
    quad = np.array([[left, base - cap], [right, base - cap], [right, base], [left, base]])
    return page, quad.astype(np.float32)
