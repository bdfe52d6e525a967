"""What surrounds VIN carriers in a synthetic frame, and how the camera records it.

Helpers for ``training.scenes``: carrier panels (whole labels rendered by
``training.crops`` with wide margins, printed sheets of text lines), their
tints, backgrounds (car paint, textures, gradients, blurred shapes), clutter
(text in many fonts, plates, barcodes) and the photograph step (light, blur,
noise, JPEG).  Images are float32 BGR in 0..1 until ``photograph`` turns them
into uint8.

Large random fields are made at 1/8 resolution and upsampled, and fine
noise comes from ``photo.texture``'s fixed bank rather than fresh normal
draws: at 1920x1080 a fresh draw alone would cost more than a whole scene.
"""

from __future__ import annotations

import logging
import re
import string
from functools import lru_cache

import cv2
import numpy as np

from training import crops, fonts
from training.carriers import KINDS
from training.photo import LUMA, texture
from training.vins import sample_context_line, sample_distractor

logger = logging.getLogger(__name__)

#: Car paint in BGR: white, black, silvers, greys, red, blues, green, beige, yellow, orange.
PAINTS = np.array(
    [
        (0.92, 0.92, 0.9),
        (0.04, 0.04, 0.05),
        (0.72, 0.7, 0.68),
        (0.5, 0.5, 0.5),
        (0.3, 0.3, 0.32),
        (0.08, 0.08, 0.62),
        (0.55, 0.25, 0.08),
        (0.3, 0.1, 0.03),
        (0.12, 0.35, 0.1),
        (0.55, 0.7, 0.78),
        (0.05, 0.7, 0.85),
        (0.05, 0.35, 0.85),
    ],
    np.float32,
)
_LETTERS = string.ascii_uppercase
#: 15-19 VIN-alphabet characters: a distractor no detector can tell from a VIN by its look.
NEAR_MISS = re.compile(r"^[A-Z0-9]{15,19}$")
_WORDS = ("AIRBAG", "WARNING", "TIRE", "PSI", "kPa", "SEAT", "LOAD", "OIL", "CAUTION", "LOT")


def tint(rng: np.random.Generator, kind: str) -> np.ndarray:
    """A BGR multiplier with unit luma, so gray panels keep their gray values in colour."""
    c = 1 + rng.normal(0, 0.05, 3)
    u = rng.random()
    if kind in ("door_label", "windshield_label", "barcode_label") and u < 0.25:
        c = np.array([rng.uniform(0.3, 0.8), rng.uniform(0.85, 1.0), 1.0])  # cream, yellow
    elif kind == "metal_plate" and u < 0.2:
        c = np.array([0.45, 0.75, 0.9])  # brass
    elif kind == "chassis_etch" and u < 0.5:
        c = PAINTS[int(rng.random() * len(PAINTS))] + 0.05
    elif kind == "screen":
        c[0] += 0.1
    return (c / float(LUMA @ c)).astype(np.float32)


def background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A float32 BGR frame: paint, plastic, paper or a cluttered scene, with fine texture."""
    sw, sh = max(16, w // 8), max(16, h // 8)
    u = rng.random()
    if u < 0.4:
        base = PAINTS[int(rng.random() * len(PAINTS))] * rng.uniform(0.7, 1.2)
    else:
        base = rng.uniform(0.05, 0.9, 3).astype(np.float32)
        base = base.mean() + (base - base.mean()) * np.float32(rng.uniform(0, 0.8))
    low = np.empty((sh, sw, 3), np.float32)
    low[:] = base
    # Broad light and colour variation.
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    ramp = (xx * np.cos(a) + yy * np.sin(a)) / max(sw, sh)
    low *= (1 + rng.uniform(-0.6, 0.6) * ramp)[..., None]
    low *= (1 + rng.uniform(0.05, 0.4) * texture(rng, "blotch", sh, sw, rng.uniform(0.3, 1)))[
        ..., None
    ]
    for _ in range(int(rng.integers(0, 25) if u > 0.3 else rng.integers(0, 4))):
        _shape(rng, low, sw, sh)
    if rng.random() < 0.7:
        low = cv2.GaussianBlur(low, (0, 0), rng.uniform(0.5, 3))
    img = cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)
    for _ in range(int(rng.integers(0, 6))):
        _edge(rng, img, w, h)
    name = ("grain", "rough", "brushed", "paper", "white")[int(rng.random() * 5)]
    detail = texture(rng, name, h, w, rng.uniform(0.5, 3))
    img += (float(rng.uniform(0.005, 0.08)) * detail)[..., None]
    if u < 0.4 and rng.random() < 0.5:
        # Metallic flake: tiny sparkles in the paint.
        img += (float(rng.uniform(0.01, 0.05)) * texture(rng, "white", h, w))[..., None]
    return np.clip(img, 0, 1, out=img)


def _shape(rng: np.random.Generator, img: np.ndarray, w: int, h: int) -> None:
    c3 = rng.uniform(0, 1, 3)
    colour = [float(v) for v in c3.mean() + (c3 - c3.mean()) * rng.uniform(0, 0.8)]
    c = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
    r = int(rng.uniform(2, max(w, h) / 3))
    k = int(rng.random() * 4)
    if k == 0:
        cv2.rectangle(img, c, (c[0] + r, c[1] + int(rng.uniform(2, r + 3))), colour, -1)
    elif k == 1:
        cv2.circle(img, c, r, colour, -1, cv2.LINE_AA)
    elif k == 2:
        axes = (r, int(rng.uniform(1, r + 1)))
        cv2.ellipse(img, c, axes, rng.uniform(0, 180), 0, 360, colour, -1, cv2.LINE_AA)
    else:
        pts = (rng.uniform(-r, r, (5, 2)) + c).astype(np.int32)
        cv2.fillPoly(img, [cv2.convexHull(pts)], colour, cv2.LINE_AA)


def _edge(rng: np.random.Generator, img: np.ndarray, w: int, h: int) -> None:
    """Sharp full-resolution structure: panel gaps, seals, trim edges, wires."""
    p0 = (int(rng.uniform(-w / 2, w)), int(rng.uniform(-h / 2, h)))
    p1 = (int(rng.uniform(0, 1.5 * w)), int(rng.uniform(0, 1.5 * h)))
    colour = [float(v) for v in rng.uniform(0, 1, 3)]
    cv2.line(img, p0, p1, colour, int(rng.integers(1, 12)), cv2.LINE_AA)


@lru_cache(maxsize=1)
def print_faces() -> tuple[int, ...]:
    """About 40 faces spread over the font list, for sheets and clutter.

    All 269-odd faces at every ladder size overflow the glyph cache and rendering
    glyphs then took a third of the scene time; carriers keep the full choice.
    """
    n = len(fonts.faces())
    return tuple(range(0, n, max(1, n // 40)))


def ladder_size(face: int, cap: float) -> int:
    """The smallest glyph-cache font size whose cap height reaches ``cap``."""
    ratio = fonts.faces()[face].info.cap_ratio
    return next((s for s in crops.SIZE_LADDER if s * ratio >= cap), crops.SIZE_LADDER[-1])


def crop_panel(
    rng: np.random.Generator, text: str, kind: str, cap: float
) -> tuple[np.ndarray, np.ndarray]:
    """A whole label around ``text``: BGR float panel and the text's quad in it."""
    # Big caps make big crops and every crop effect scales with area.
    m = rng.uniform((0.3, 0.3, 0.4, 0.4), (2.5, 2.5, 2.8, 2.8)) * (1.0 if cap < 40 else 0.6)
    margins = (float(m[0]), float(m[1]), float(m[2]), float(m[3]))
    img, quad, _, _ = crops.render_crop_with_quad(rng, text, kind, cap, margins)
    panel = img.astype(np.float32)[..., None] * (tint(rng, kind) / 255)
    if rng.random() < 0.35:
        # A plate rim or a sticker edge in another shade.
        t = max(1, round(cap * rng.uniform(0.1, 0.5)))
        rim = [float(v) for v in rng.uniform(0.05, 0.95) * tint(rng, "screen")] + [0.0]
        panel = cv2.copyMakeBorder(panel, t, t, t, t, cv2.BORDER_CONSTANT, value=rim)
        quad = quad + t
    return np.clip(panel, 0, 1), quad


def sheet_panel(
    rng: np.random.Generator, cap: float, texts: list[str], main: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Printed lines (document, screen): BGR float panel and each line's cap-height quad.

    Line ``main`` is set at ``cap``; the others vary in size and sometimes in font.
    """
    dark = rng.random() < 0.25
    stock = rng.uniform(0.05, 0.25) if dark else rng.uniform(0.7, 1.0)
    ink = rng.uniform(0.7, 1.0) if dark else rng.uniform(0.0, 0.35)
    pool = print_faces()
    face = pool[int(rng.random() * len(pool))]
    size = ladder_size(face, cap)
    rows = []
    for i, t in enumerate(texts):
        f = face if (i == main or rng.random() < 0.7) else pool[int(rng.random() * len(pool))]
        s = size if i == main else ladder_size(f, cap * rng.uniform(0.5, 1.3))
        rows.append(crops.text_line_ink(f, s, t))
    pad = size * rng.uniform(0.3, 1.5)
    width = int(max(m.shape[1] for m, _ in rows) + 2 * pad)
    gap = size * rng.uniform(-0.1, 0.5)
    height = int(sum(m.shape[0] for m, _ in rows) + gap * (len(rows) - 1) + 2 * pad)
    page = np.zeros((height, width), np.uint8)
    quads = []
    y = pad
    for m, q in rows:
        x = int(
            pad
            + (0 if rng.random() < 0.7 else rng.uniform(0, max(0.0, width - 2 * pad - m.shape[1])))
        )
        yi = int(y)
        np.maximum(
            page[yi : yi + m.shape[0], x : x + m.shape[1]],
            m,
            out=page[yi : yi + m.shape[0], x : x + m.shape[1]],
        )
        quads.append(q + np.float32([x, yi]))
        y += m.shape[0] + gap
    g = stock + (ink - stock) * page.astype(np.float32) / 255
    g += float(rng.uniform(0.0, 0.04)) * texture(rng, "paper", height, width)
    panel = g[..., None] * tint(rng, "document")
    return np.clip(panel, 0, 1), quads


def sheet_line(rng: np.random.Generator) -> str:
    """A line for a printed sheet: mostly carrier context, sometimes a distractor."""
    if rng.random() < 0.75:
        return sample_context_line(rng, KINDS[int(rng.random() * len(KINDS))])
    return sample_distractor(rng)


def plate_text(rng: np.random.Generator) -> str:
    """Licence-plate-like strings from a few countries' patterns."""
    d = "0123456789"

    def pick(chars: str, n: int) -> str:
        return "".join(chars[int(i)] for i in rng.random(n) * len(chars))

    patterns = (
        lambda: f"{pick(d, 1)}{pick(_LETTERS, 3)}{pick(d, 3)}",
        lambda: f"{pick(_LETTERS, 2)} {pick(d, 3)} {pick(_LETTERS, 2)}",
        lambda: f"{pick(_LETTERS, 2)}-{pick(_LETTERS, 2)} {pick(d, 4)}",
        lambda: f"{pick(_LETTERS, 2)}{pick(d, 2)} {pick(_LETTERS, 3)}",
        lambda: f"{pick(_LETTERS, 3)} {pick(d, 4)}",
    )
    return patterns[int(rng.random() * len(patterns))]()


def _clutter_string(rng: np.random.Generator) -> str:
    text = _any_string(rng)
    # Cheap clutter is neither labelled nor ignored, so it must look unlike a VIN.
    return plate_text(rng) if NEAR_MISS.match(text) else text


def _any_string(rng: np.random.Generator) -> str:
    u = rng.random()
    if u < 0.35:
        return sample_context_line(rng, KINDS[int(rng.random() * len(KINDS))])
    if u < 0.55:
        return sample_distractor(rng)
    if u < 0.7:
        return plate_text(rng)
    if u < 0.85:
        return " ".join(_WORDS[int(i)] for i in rng.random(int(rng.integers(1, 4))) * len(_WORDS))
    return "".join(str(int(v)) for v in rng.random(int(rng.integers(2, 9))) * 10)


def clutter_text(rng: np.random.Generator, img: np.ndarray) -> None:
    """A line of text in a random font, size, angle and colour, straight onto the frame."""
    h, w = img.shape[:2]
    pool = print_faces()
    face = pool[int(rng.random() * len(pool))]
    cap = float(np.exp(rng.uniform(np.log(6), np.log(60))))
    size = ladder_size(face, cap)
    ink, _ = crops.text_line_ink(face, size, _clutter_string(rng))
    scale = cap / (size * fonts.faces()[face].info.cap_ratio)
    m = cv2.getRotationMatrix2D((0, 0), rng.normal(0, 20) if rng.random() < 0.8 else 90, scale)
    m[:, 2] = (rng.uniform(-0.1, 1) * w, rng.uniform(0, 1) * h)
    _blend(rng, img, ink, m)


def barcode(rng: np.random.Generator, img: np.ndarray) -> None:
    """A 1-D barcode, sometimes with digits under it."""
    h, w = img.shape[:2]
    bars = np.repeat(rng.random(int(rng.integers(20, 60))) < 0.5, rng.integers(1, 4, 1)[0])
    height = int(rng.integers(10, 40))
    ink = np.zeros((height, len(bars) + 8), np.uint8)
    ink[:, 4:-4] = bars * 255
    scale = rng.uniform(0.7, 5)
    m = cv2.getRotationMatrix2D((0, 0), rng.normal(0, 15), scale)
    m[:, 2] = (rng.uniform(0, 0.9) * w, rng.uniform(0, 0.9) * h)
    _blend(rng, img, ink, m)


def _blend(rng: np.random.Generator, img: np.ndarray, ink: np.ndarray, m: np.ndarray) -> None:
    """Paint ``ink`` (uint8 coverage) through affine ``m`` in a colour contrasting the spot."""
    h, w = img.shape[:2]
    ih, iw = ink.shape
    corners = np.array([[0, 0, 1], [iw, 0, 1], [iw, ih, 1], [0, ih, 1]], np.float64) @ m.T
    x0, y0 = np.maximum(np.floor(corners.min(0)) - 1, 0).astype(int)
    x1, y1 = np.minimum(np.ceil(corners.max(0)) + 1, (w, h)).astype(int)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    m = m.copy()
    m[:, 2] -= (x0, y0)
    alpha = cv2.warpAffine(ink, m, (int(x1 - x0), int(y1 - y0)), flags=cv2.INTER_LINEAR)
    roi = img[y0:y1, x0:x1]
    local = float(roi.mean())
    level = rng.uniform(0, 0.35) if local > 0.45 else rng.uniform(0.65, 1)
    colour = np.clip(level + rng.normal(0, 0.08, 3), 0, 1).astype(np.float32)
    a = alpha.astype(np.float32)[..., None] * np.float32(rng.uniform(0.5, 1) / 255)
    roi += a * (colour - roi)


def photograph(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Light, optics, sensor and codec on the whole frame -> BGR uint8."""
    h, w = img.shape[:2]
    field = rng.uniform(0.55, 1.2, (3, 4, 1)) * (1 + rng.normal(0, 0.04, (1, 1, 3)))
    img *= cv2.resize(field.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.15:
        # Sun or flash: a broad bright spot.
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.4) * max(w, h)
        spot = np.zeros((h // 8 + 1, w // 8 + 1), np.float32)
        cv2.circle(spot, (int(cx / 8), int(cy / 8)), int(r / 8), 1.0, -1)
        spot = cv2.GaussianBlur(spot, (0, 0), r / 16 + 1)
        img += cv2.resize(spot, (w, h))[..., None] * np.float32(rng.uniform(0.2, 0.7))
    u = rng.random()
    if u < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.6))
    elif u < 0.6:
        n = int(rng.integers(3, 9))
        k = np.zeros((n, n), np.float32)
        k[n // 2] = 1 / n
        rot = cv2.getRotationMatrix2D((n / 2 - 0.5, n / 2 - 0.5), rng.uniform(0, 180), 1)
        k = cv2.warpAffine(k, rot, (n, n))
        img = cv2.filter2D(img, -1, k / max(float(k.sum()), 1e-6))
    if rng.random() < 0.12:
        f = rng.uniform(0.35, 0.7)
        small = cv2.resize(img, (int(w * f), int(h * f)), interpolation=cv2.INTER_AREA)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    img += (float(rng.uniform(0.004, 0.035)) * texture(rng, "white", h, w))[..., None]
    # Saturating conversion in one pass; it mirrors the rare slightly negative noise
    # sample to a slightly positive one, which no one can see.
    out = cv2.convertScaleAbs(img, alpha=255.0, beta=0.5)
    if rng.random() < 0.3:
        gamma = np.exp(rng.uniform(-0.4, 0.4))
        lut = np.clip(((np.arange(256) / 255) ** gamma) * 255 + 0.5, 0, 255).astype(np.uint8)
        out = cv2.LUT(out, lut)
    if rng.random() < 0.8:
        q = int(rng.uniform(35, 95))
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, q])
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
        out = decoded if decoded is not None else out
    return out
