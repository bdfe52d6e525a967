"""How a VIN carrier reaches the camera's sensor: surfaces, light, optics, codec.

``paint`` turns the warped ink mask from ``training.crops`` into the gray
image a camera would record of the carrier (stock texture, ink, wear,
relief shading, rivets, creases); ``photograph`` adds what happens on the
way to a JPEG (uneven light, shadows, glare, windshield glass, screen
moiré, blur, lost resolution, noise, compression).  Everything runs at the
crop's output size, where it is cheap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from training.carriers import Style

logger = logging.getLogger(__name__)

#: cv2's BGR2GRAY weights.
LUMA = np.array([0.114, 0.587, 0.299], np.float32)


@dataclass
class Geometry:
    """Where the VIN ended up in the output crop, for effects that must spare it."""

    cap: float
    vin_x0: float
    vin_x1: float
    first_w: float
    last_w: float


def _norm(a: np.ndarray) -> np.ndarray:
    a = a - a.mean()
    return (a / (a.std() + 1e-6)).astype(np.float32)


@lru_cache(maxsize=1)
def _bank() -> dict[str, np.ndarray]:
    """Zero-mean, unit-variance textures, made once per process from a fixed seed."""
    g = np.random.default_rng(0x5EED)

    def noise() -> np.ndarray:
        return g.standard_normal((256, 1024)).astype(np.float32)

    def blur(a: np.ndarray, s: float) -> np.ndarray:
        return cv2.GaussianBlur(a, (0, 0), s)

    fibres = cv2.blur(np.maximum(noise() - 2.5, 0), (9, 1)) + cv2.blur(
        np.maximum(noise() - 2.5, 0), (1, 9)
    )
    pits = blur(np.maximum(noise() - 2.0, 0), 1.0)
    return {
        "white": _norm(noise()),
        "grain": _norm(blur(noise(), 0.7)),
        "brushed": _norm(cv2.blur(noise(), (61, 1)) + 0.3 * _norm(blur(noise(), 12))),
        "paper": _norm(blur(noise(), 1.0) + 2.0 * fibres + 0.8 * _norm(blur(noise(), 10))),
        "rough": _norm(blur(noise(), 1.2) + 1.5 * _norm(blur(noise(), 5)) - 2.0 * pits),
        "blotch": _norm(blur(noise(), 18)),
    }


def texture(rng: np.random.Generator, name: str, h: int, w: int, zoom: float = 1.0) -> np.ndarray:
    """An h x w window of a bank texture, magnified by ``zoom``."""
    src = _bank()[name]
    sh, sw = max(2, round(h / zoom)), max(2, round(w / zoom))
    if sh > src.shape[0] or sw > src.shape[1]:
        src = np.tile(src, (-(-sh // src.shape[0]), -(-sw // src.shape[1])))
    y = int(rng.random() * (src.shape[0] - sh + 1))
    x = int(rng.random() * (src.shape[1] - sw + 1))
    win = src[y : y + sh, x : x + sw]
    if rng.random() < 0.5:
        win = win[::-1]
    if (sh, sw) != (h, w):
        return cv2.resize(win, (w, h), interpolation=cv2.INTER_LINEAR)
    return win.copy()  # callers modify it in place; the bank must stay intact


def _relief(rng: np.random.Generator, ink: np.ndarray, cap: float, strength: float) -> np.ndarray:
    """Emboss shading: light from above-ish, highlights and shadows along edges."""
    b = cv2.GaussianBlur(ink, (0, 0), max(0.5, 0.05 * cap))
    ang = rng.uniform(0.6, 2.5)  # radians from +x; mostly top lighting
    d = max(1.0, 0.08 * cap)
    dx, dy = round(d * np.cos(ang)), -round(d * np.sin(ang))
    shifted = np.roll(b, (dy, dx), axis=(0, 1))
    return (b - shifted) * strength


def paint(
    rng: np.random.Generator, ink_u8: np.ndarray, st: Style, geom: Geometry, gain: np.ndarray
) -> np.ndarray:
    """Stock, ink and surface relief, as the camera's gray image (H x W float32).

    ``gain`` is the per-channel BGR transmission of everything between the
    carrier and the sensor (white balance, tinted glass, a screen's
    subpixels), shape (3,) or (3, W).  Every colour step is linear per
    channel, so folding the BGR2GRAY weights in here gives exactly the gray
    image that painting in colour and calling cv2.cvtColor would give, at a
    third of the cost.
    """
    h, w = ink_u8.shape
    cap = geom.cap
    wg = LUMA[:, None] * gain.reshape(3, -1).astype(np.float32)
    bg = (wg * np.asarray(st.bg, np.float32)[:, None]).sum(0)
    fg = (wg * np.asarray(st.fg, np.float32)[:, None]).sum(0)
    white = wg.sum(0)
    ink = ink_u8.astype(np.float32) * np.float32(1 / 255)
    # Python floats only: a NumPy float64 scalar would promote arrays to float64.
    base = 1.0 + float(st.texture_amp) * texture(rng, st.texture, h, w, rng.uniform(0.5, 2.0))
    if st.watermark:
        yy, xx = np.ogrid[0:h, 0:w]
        p1, p2 = cap * rng.uniform(0.4, 1.5), cap * rng.uniform(1.5, 6.0)
        wave = np.cos(2 * np.pi * (yy / p1 + rng.uniform(0.2, 0.8) * np.sin(xx / p2)))
        base += float(st.watermark * (1 if rng.random() < 0.5 else -1)) * (0.5 + 0.5 * wave) ** 6
    alpha = ink * np.float32(st.ink_alpha)
    if st.wear:
        mottle = texture(rng, "blotch", h, w, rng.uniform(0.3, 1.0))
        mottle += texture(rng, "grain", h, w)
        alpha *= np.clip(1.0 - float(st.wear) * (0.6 + 0.5 * mottle), 0.15, 1.0)
    stock = base * bg
    img = stock + alpha * (fg - stock)
    if st.relief:
        img += _relief(rng, ink, cap, 0.8 * float(st.relief)) * white
    wmean = float(white.mean())
    if st.rivets:
        yc = h / 2 + rng.normal(0, 0.1 * h)
        r = cap * rng.uniform(0.3, 0.5)
        for xc in (
            geom.vin_x0 - rng.uniform(0.9, 2.0) * cap,
            geom.vin_x1 + rng.uniform(0.9, 2) * cap,
        ):
            c = (round(xc * 4), round(yc * 4))
            cv2.circle(img, c, round(r * 4), 0.15 * wmean, -1, cv2.LINE_AA, 2)
            cv2.circle(img, c, round(r * 2.6), 0.85 * wmean, -1, cv2.LINE_AA, 2)
    if st.crease:
        yy, xx = np.ogrid[0:h, 0:w]
        a = rng.uniform(0, np.pi)
        d = (xx - rng.uniform(0, w)) * np.sin(a) + (yy - rng.uniform(0, h)) * np.cos(a)
        width = rng.uniform(0.5, 2.5)
        line = np.exp(-((d / width) ** 2)) * rng.uniform(-0.25, 0.25)
        step = np.tanh(d / (width * 3)) * rng.uniform(-0.06, 0.06)
        img *= (1.0 + line + step).astype(np.float32)
    return img.astype(np.float32, copy=False)


def gain(rng: np.random.Generator, st: Style, w: int) -> np.ndarray:
    """Per-channel BGR transmission from carrier to sensor: (3,) or (3, W) for screens."""
    out = 1 + rng.normal(0, 0.04, 3)  # white balance
    if st.glass:
        tint = np.array([rng.uniform(0.8, 1.0), rng.uniform(0.85, 1.0), rng.uniform(0.6, 0.85)])
        out = out * tint * rng.uniform(0.55, 0.95)
    if st.screen:
        # Subpixel stripes: each channel lit on its own third of the pixel pitch.
        p = st.screen
        x = np.arange(w)[None, :] + np.array([[0], [p / 3], [2 * p / 3]])
        out = out[:, None] * (
            1 - rng.uniform(0.05, 0.35) * (0.5 + 0.5 * np.cos(2 * np.pi * x / p)) ** 2
        )
    return out.astype(np.float32)


def photograph(rng: np.random.Generator, g: np.ndarray, st: Style, geom: Geometry) -> np.ndarray:
    """Light, optics, sensor and codec on the camera's gray image -> uint8.

    JPEG's luma coding is the same for gray input, so compressing gray loses
    nothing that a colour JPEG converted to gray would keep.
    """
    h, w = g.shape
    cap = geom.cap
    yy, xx = np.ogrid[0:h, 0:w]
    if st.screen:
        rows = 1 - rng.uniform(0, 0.25) * (0.5 + 0.5 * np.cos(2 * np.pi * yy / st.screen)) ** 4
        f = rng.uniform(0.02, 0.2, 2) * rng.choice([-1, 1], 2)
        moire = np.cos(2 * np.pi * (f[0] * xx + f[1] * yy) + rng.uniform(0, 6))
        g *= (rows * (1 + rng.uniform(0, 0.2) * moire)).astype(np.float32)
    # Uneven illumination and exposure: a smooth random field.
    field = rng.uniform(0.65, 1.15, (2, 3)).astype(np.float32) * rng.uniform(0.7, 1.15)
    g *= cv2.resize(field, (w, h), interpolation=cv2.INTER_CUBIC)
    if st.glass:
        # Reflections on glass are broad soft bands, larger than the characters.
        a = rng.uniform(0, np.pi)
        d = xx * np.cos(a) + yy * np.sin(a)
        refl = np.zeros((h, w), np.float32)
        for _ in range(int(rng.integers(1, 4))):
            width = rng.uniform(0.5, 3.0) * max(h, cap)
            refl += rng.uniform(0.3, 1.0) * np.exp(-(((d - rng.uniform(-w, w)) / width) ** 2))
        refl *= 1 + 0.3 * texture(rng, "blotch", h, w, max(1.0, h / 12))
        sky = np.array([rng.uniform(0.8, 1.0), rng.uniform(0.75, 0.95), rng.uniform(0.6, 0.9)])
        g += refl * np.float32(st.glass * float(LUMA @ sky))
    if st.frit:
        # Ceramic dots growing towards the windshield edge, in front of the plate.
        pitch = rng.uniform(0.3, 0.8) * cap
        a = rng.uniform(0, np.pi / 6)
        u = xx * np.cos(a) + yy * np.sin(a)
        v = yy * np.cos(a) - xx * np.sin(a)
        cell = np.hypot((u / pitch) % 1 - 0.5, (v / pitch) % 1 - 0.5)
        ramp = (yy / h if rng.random() < 0.5 else 1 - yy / h) * rng.uniform(0.3, 0.9) - 0.1
        g *= np.where(cell < 0.5 * np.clip(ramp, 0, 1), np.float32(0.08), np.float32(1))
    if rng.random() < 0.15:
        a = rng.uniform(0, 2 * np.pi)
        d = (xx - rng.uniform(0, w)) * np.cos(a) + (yy - rng.uniform(0, h)) * np.sin(a)
        edge = 0.5 + 0.5 * np.tanh(d / rng.uniform(1.0, 0.6 * cap + 2))
        g *= (1 - rng.uniform(0.25, 0.6) * edge).astype(np.float32)
    if st.glare:
        for _ in range(int(rng.integers(1, 3))):
            rx, ry = rng.uniform(0.5, 4) * cap, rng.uniform(0.3, 2) * cap
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            g += np.float32(st.glare) * np.exp(-(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2))
    if rng.random() < 0.08:
        _occlude(rng, g, geom)
    # Soft shoulder instead of a hard clip: glare washes print out without
    # erasing it, as a camera with highlight roll-off would.
    np.maximum(g, 0, out=g)
    hi = g > 0.8
    if hi.any():
        g[hi] = 0.8 + 0.2 * np.tanh((g[hi] - 0.8) * 5)
    if rng.random() < 0.6:
        g = cv2.GaussianBlur(g, (0, 0), rng.uniform(0.2, 0.045 * cap + 0.3))
    if rng.random() < 0.15:
        n = max(3, round(rng.uniform(0.05, 0.18) * cap) | 1)
        k: np.ndarray = np.zeros((n, n), np.float32)
        k[n // 2] = 1 / n
        rot = cv2.getRotationMatrix2D((n / 2 - 0.5, n / 2 - 0.5), rng.uniform(-30, 30), 1)
        k = cv2.warpAffine(k, rot, (n, n))
        g = cv2.filter2D(g, -1, k / max(k.sum(), 1e-6))
    if rng.random() < 0.2:
        # Phone pipelines sharpen, leaving halos around strokes.
        soft = cv2.GaussianBlur(g, (0, 0), rng.uniform(0.8, 2.0))
        amount = float(rng.uniform(0.3, 1.2))
        g = g + amount * (g - soft)
    if rng.random() < 0.25 and cap > 14:
        f = rng.uniform(8, 14) / cap
        small = cv2.resize(
            g, (max(4, round(w * f)), max(4, round(h * f))), interpolation=cv2.INTER_AREA
        )
        interp = (cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_NEAREST)[rng.integers(3)]
        g = cv2.resize(small, (w, h), interpolation=interp)
    g += float(rng.uniform(0.003, 0.03)) * texture(rng, "white", h, w)
    out: np.ndarray = np.clip(g * 255 + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < 0.65:
        q = int(15 + 80 * rng.random() ** 0.6)
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, q])
        decoded = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if ok else None
        if decoded is not None:
            out = decoded
    if rng.random() < 0.3:
        gamma = np.exp(rng.uniform(-0.4, 0.4))
        lut = np.clip(((np.arange(256) / 255) ** gamma) * 255 + 0.5, 0, 255).astype(np.uint8)
        out = cv2.LUT(out, lut)
    return out


def _occlude(rng: np.random.Generator, img: np.ndarray, geom: Geometry) -> None:
    """Something in front of one line end; never hides more than 30 % of a VIN character."""
    h, w = img.shape[:2]
    left = rng.random() < 0.5
    reach = rng.uniform(0, 0.3)
    if left:
        edge = geom.vin_x0 + reach * geom.first_w
    else:
        edge = geom.vin_x1 - reach * geom.last_w
    ys = np.linspace(0, h, 6)
    xs = edge + rng.normal(0, 0.05 * geom.cap, 6)
    xs = np.minimum(xs, edge) if left else np.maximum(xs, edge)
    far = -w if left else 2 * w
    pts = [(far, -1.0), *zip(xs, ys, strict=True), (far, float(h + 1))]
    shade = float(rng.uniform(0.05, 0.9))
    cv2.fillPoly(img, [np.round(np.array(pts) * 16).astype(np.int32)], shade, cv2.LINE_AA, 4)
