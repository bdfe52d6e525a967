"""What each kind of VIN carrier looks like.

``sample_style`` draws the look of one crop for a carrier kind: stock and
ink colours (BGR, 0..1, so tinted stock gives the gray contrast a camera
really records), font and glyph effect, relief, prefix and delimiters,
neighbouring lines, detector margins and optics.  ``training.crops`` lays
the text out from it and ``training.photo`` photographs the result.

Probabilities here are guesses from looking at real carriers; their job is
breadth, so that no real photograph falls far outside what was generated.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from training import fonts

logger = logging.getLogger(__name__)

KINDS = (
    "door_label",
    "dash_plate",
    "metal_plate",
    "chassis_etch",
    "document",
    "windshield_label",
    "screen",
    "barcode_label",
)
#: Door labels and dash plates are what a phone or Pi camera sees most.
KIND_WEIGHTS = (0.22, 0.14, 0.11, 0.11, 0.12, 0.10, 0.10, 0.10)
#: Share of crops per kind with a flash or sun glare spot.
GLARE = {
    "door_label": 0.3,
    "dash_plate": 0.25,
    "metal_plate": 0.25,
    "chassis_etch": 0.2,
    "document": 0.0,
    "windshield_label": 0.3,
    "screen": 0.35,
    "barcode_label": 0.2,
}
STAR = "\u2605"


@dataclass
class Style:
    """Everything random about one crop except the VIN and the noise itself."""

    kind: str
    face: int
    context_face: int
    effect: str = "plain"  # fonts.glyph effect: plain, dots:<rows>, stencil
    cap: float = 20.0  # cap height in output pixels
    tracking: float = 0.1  # extra gap between characters, in cap heights
    pitch: float | None = None  # fixed cell padding in cap heights (stamping dies, comb boxes)
    xscale: float = 1.0
    shear: float = 0.0
    angle: float = 0.0
    perspective: float = 0.01
    keystone: float = 0.0  # extra height of one crop end: a label seen at an angle
    bend: float = 0.0  # baseline bow in cap heights: stickers on curved surfaces
    bold: float = 0.0  # dilation (+) or erosion (-) in cap heights
    prefix: str = ""
    suffix: str = ""
    gap: float = 0.5
    above: str | None = None  # "" = sample a context line for the kind
    below: str | None = None
    context_scale: float = 1.0
    line_gap: float = 0.6
    barcode: str | None = None
    rules: bool = False
    comb: bool = False
    margin_l: float = 0.4
    margin_r: float = 0.4
    margin_t: float = 0.3
    margin_b: float = 0.3
    bg: tuple[float, float, float] = (0.9, 0.9, 0.9)
    fg: tuple[float, float, float] = (0.1, 0.1, 0.1)
    ink_alpha: float = 1.0
    texture: str = "grain"
    texture_amp: float = 0.03
    relief: float = 0.0  # + raised (embossed), - sunk (stamped, dot-peen)
    wear: float = 0.0
    watermark: float = 0.0
    crease: bool = False
    rivets: bool = False
    glass: float = 0.0
    frit: bool = False  # the windshield's black halftone border over the plate
    screen: float = 0.0  # pixel pitch in output pixels of a photographed display
    glare: float = 0.0


def _gray(v: float, tint: float, rng: np.random.Generator) -> tuple[float, float, float]:
    t = rng.normal(0, tint, 3)
    return tuple(float(np.clip(v * (1 + c), 0, 1)) for c in t)  # type: ignore[return-value]


def _colour(rng: np.random.Generator, lo: float, hi: float) -> tuple[float, float, float]:
    c = rng.uniform(lo, hi, 3)
    return (float(c[0]), float(c[1]), float(c[2]))


def _luma(c: tuple[float, float, float]) -> float:
    return 0.114 * c[0] + 0.587 * c[1] + 0.299 * c[2]


def weighted_index(rng: np.random.Generator, weights: Sequence[float] | np.ndarray) -> int:
    """Index drawn with probability proportional to ``weights``.

    Ten times cheaper than ``rng.choice(n, p=...)``, which matters at a few
    dozen draws per crop.
    """
    c = np.cumsum(weights)
    return min(int(np.searchsorted(c, rng.random() * c[-1], side="right")), len(c) - 1)


def _uniform_index(rng: np.random.Generator, n: int) -> int:
    return int(rng.random() * n)


def _face(rng: np.random.Generator, probs: dict[str, float], italic: float = 0.04) -> int:
    cats = list(probs)
    fams = fonts.families()[cats[weighted_index(rng, list(probs.values()))]]
    members = fams[_uniform_index(rng, len(fams))]
    faces = fonts.faces()
    upright = [i for i in members if not faces[i].info.italic]
    pool = members if (not upright or rng.random() < italic) else upright
    return pool[_uniform_index(rng, len(pool))]


def _choice(rng: np.random.Generator, options: dict[str, float]) -> str:
    return list(options)[weighted_index(rng, list(options.values()))]


def _light_on_dark(rng: np.random.Generator, st: Style, p_dark: float, metal: bool) -> None:
    if rng.random() < p_dark:
        st.bg = _gray(rng.uniform(0.03, 0.22), 0.15, rng)
        st.fg = _gray(rng.uniform(0.6, 0.95), 0.05, rng)
    elif metal:
        st.bg = _gray(rng.uniform(0.45, 0.85), 0.06, rng)
        st.fg = _gray(rng.uniform(0.02, 0.2), 0.1, rng)
    else:
        st.bg = _gray(rng.uniform(0.75, 0.98), 0.06, rng)
        st.fg = _gray(rng.uniform(0.0, 0.25), 0.1, rng)


def _context(rng: np.random.Generator, st: Style, above: float, below: float) -> None:
    st.above = "" if rng.random() < above else None
    st.below = "" if rng.random() < below else None


_DOOR_PREFIX = {"": 0.35, "VIN ": 0.2, "VIN:": 0.2, "V.I.N. ": 0.1, "VIN NO. ": 0.05, "VIN/": 0.1}


def _door_label(rng: np.random.Generator, st: Style) -> None:
    st.face = _face(rng, {"sans": 0.6, "mono": 0.2, "ocr": 0.1, "serif": 0.1})
    u = rng.random()
    if u < 0.55:
        _light_on_dark(rng, st, 0.0, False)
    elif u < 0.75:
        _light_on_dark(rng, st, 0.0, True)
        st.texture, st.texture_amp = "brushed", rng.uniform(0.02, 0.08)
    elif u < 0.93:
        _light_on_dark(rng, st, 1.0, False)
    else:
        st.bg, st.fg = _colour(rng, 0.55, 0.95), _gray(rng.uniform(0, 0.2), 0.1, rng)
        st.bg = (st.bg[0] * 0.6, st.bg[1], st.bg[2])  # cream / yellow stock
    st.prefix = _choice(rng, _DOOR_PREFIX)
    if rng.random() < 0.15:
        # Whatever follows the VIN on the same printed line, usually cut by the box.
        st.suffix = _choice(rng, {"MADE IN USA": 1, "TYPE: MPV": 1, "MFD 05/19": 1, "PASS CAR": 1})
        st.gap = rng.uniform(0.8, 2.0)
    _context(rng, st, 0.6, 0.6)
    st.watermark = rng.uniform(0.03, 0.12) if rng.random() < 0.3 else 0.0
    st.crease = rng.random() < 0.15
    st.barcode = "below" if rng.random() < 0.08 else None


def _dash_plate(rng: np.random.Generator, st: Style) -> None:
    st.face = _face(rng, {"sans": 0.45, "mono": 0.3, "ocr": 0.15, "serif": 0.1})
    _light_on_dark(rng, st, 0.45, True)
    st.texture, st.texture_amp = "brushed", rng.uniform(0.03, 0.12)
    if rng.random() < 0.55:
        st.relief = rng.uniform(0.3, 1.0)
    st.pitch = rng.uniform(0.05, 0.3) if rng.random() < 0.4 else None
    st.glass = rng.uniform(0.05, 0.35)
    st.frit = rng.random() < 0.12
    st.rivets = rng.random() < 0.3


def _metal_plate(rng: np.random.Generator, st: Style) -> None:
    st.face = _face(rng, {"sans": 0.45, "mono": 0.3, "ocr": 0.15, "serif": 0.1})
    u = rng.random()
    if u < 0.75:
        st.bg = _gray(rng.uniform(0.45, 0.85), 0.05, rng)
    elif u < 0.9:
        st.bg = (rng.uniform(0.25, 0.4), rng.uniform(0.5, 0.65), rng.uniform(0.6, 0.8))  # brass
    else:
        st.bg = _gray(rng.uniform(0.08, 0.25), 0.1, rng)
    st.texture = _choice(rng, {"brushed": 0.6, "rough": 0.2, "grain": 0.2})
    st.texture_amp = rng.uniform(0.04, 0.15)
    if rng.random() < 0.6:
        # Embossed or stamped: the characters are the plate itself, seen by shading.
        st.relief = rng.uniform(0.9, 1.8) * (1 if rng.random() < 0.6 else -1)
        st.fg = _gray(_luma(st.bg) * rng.uniform(0.3, 1.3), 0.05, rng)
        st.ink_alpha = rng.uniform(0.0, 0.5)
    else:
        st.fg = _gray(rng.uniform(0.0, 0.2), 0.05, rng) if _luma(st.bg) > 0.4 else (0.9, 0.9, 0.9)
    st.pitch = rng.uniform(0.05, 0.3) if rng.random() < 0.5 else None
    _context(rng, st, 0.45, 0.45)
    st.rivets = rng.random() < 0.35


def _chassis_etch(rng: np.random.Generator, st: Style) -> None:
    st.face = _face(rng, {"mono": 0.5, "sans": 0.4, "ocr": 0.1})
    u = rng.random()
    if u < 0.45:
        st.bg = _gray(rng.uniform(0.25, 0.6), 0.08, rng)  # bare or primed steel
    elif u < 0.8:
        st.bg = _colour(rng, 0.05, 0.8)  # body paint
    else:
        st.bg = (rng.uniform(0.1, 0.2), rng.uniform(0.2, 0.35), rng.uniform(0.3, 0.5))  # rust
    st.texture = _choice(rng, {"rough": 0.6, "brushed": 0.2, "grain": 0.2})
    st.texture_amp = rng.uniform(0.06, 0.25)
    if rng.random() < 0.4:
        st.effect = f"dots:{rng.integers(7, 12)}"
    if rng.random() < 0.8:
        st.relief = -rng.uniform(0.7, 1.8)
    # Cut grooves read darker (shadow) or brighter (fresh metal under paint).
    dark = rng.random() < 0.65
    st.fg = _gray(rng.uniform(0.0, 0.2), 0.05, rng) if dark else _gray(0.85, 0.05, rng)
    st.ink_alpha = rng.uniform(0.35, 0.9) if st.relief else rng.uniform(0.7, 1.0)
    st.wear = rng.uniform(0.1, 0.5)
    st.pitch = rng.uniform(0.05, 0.35) if rng.random() < 0.7 else None
    d = _choice(rng, {"": 0.3, "*": 0.5, STAR: 0.2})
    st.prefix, st.suffix = d, d
    st.gap = rng.uniform(0.15, 0.6)


def _document(rng: np.random.Generator, st: Style) -> None:
    st.face = _face(rng, {"mono": 0.35, "sans": 0.3, "serif": 0.3, "ocr": 0.05})
    st.bg = _gray(rng.uniform(0.85, 1.0), 0.03, rng)
    if rng.random() < 0.35:
        c = _colour(rng, 0.75, 1.0)  # tinted security paper
        st.bg = (c[0], c[1], c[2])
    st.fg = _gray(rng.uniform(0.0, 0.3), 0.1, rng)
    if rng.random() < 0.2:
        st.fg = (rng.uniform(0.3, 0.6), rng.uniform(0.0, 0.2), rng.uniform(0.0, 0.15))  # blue ink
    st.texture, st.texture_amp = "paper", rng.uniform(0.02, 0.07)
    if rng.random() < 0.25:
        st.effect = f"dots:{rng.integers(7, 10)}"  # impact printer
    st.wear = rng.uniform(0.0, 0.35)
    st.watermark = rng.uniform(0.03, 0.1) if rng.random() < 0.35 else 0.0
    st.prefix = _choice(rng, {"": 0.7, "VIN: ": 0.2, "VIN ": 0.1})
    _context(rng, st, 0.5, 0.3)
    st.context_scale = rng.uniform(0.5, 1.0)
    st.rules = rng.random() < 0.35
    if rng.random() < 0.1:
        st.comb, st.pitch = True, rng.uniform(0.3, 0.7)
    st.crease = rng.random() < 0.1


def _windshield_label(rng: np.random.Generator, st: Style) -> None:
    st.face = _face(rng, {"sans": 0.55, "mono": 0.3, "ocr": 0.1, "serif": 0.05})
    st.bold = rng.uniform(0.0, 0.06)
    st.bg = _gray(rng.uniform(0.85, 1.0), 0.03, rng)
    if rng.random() < 0.45:
        fluo = [(0.2, 1.0, 1.0), (0.2, 0.6, 1.0), (0.3, 1.0, 0.6), (0.7, 0.5, 1.0)]
        st.bg = fluo[rng.integers(len(fluo))]
    st.fg = _gray(rng.uniform(0.0, 0.2), 0.1, rng)
    if rng.random() < 0.7:
        st.prefix, st.suffix = "*", "*"
        st.gap = rng.uniform(0.05, 0.4)
    elif rng.random() < 0.5:
        st.prefix = "VIN: "
    _context(rng, st, 0.4, 0.3)
    st.glass = rng.uniform(0.0, 0.3)


def _screen(rng: np.random.Generator, st: Style) -> None:
    st.face = _face(rng, {"sans": 0.55, "mono": 0.35, "serif": 0.1})
    if rng.random() < 0.35:
        st.bg = _gray(rng.uniform(0.05, 0.2), 0.1, rng)
        st.fg = _gray(rng.uniform(0.75, 1.0), 0.05, rng)
    else:
        st.bg = _gray(rng.uniform(0.85, 1.0), 0.03, rng)
        st.fg = _gray(rng.uniform(0.0, 0.3), 0.05, rng)
        if rng.random() < 0.2:
            st.fg = (rng.uniform(0.5, 0.8), rng.uniform(0.2, 0.4), rng.uniform(0.0, 0.1))
    st.texture, st.texture_amp = "grain", 0.01
    st.prefix = _choice(rng, {"": 0.6, "VIN: ": 0.25, "VIN ": 0.15})
    _context(rng, st, 0.3, 0.3)
    st.screen = rng.uniform(2.0, 4.5)


def _barcode_label(rng: np.random.Generator, st: Style) -> None:
    st.face = _face(rng, {"ocr": 0.35, "mono": 0.35, "sans": 0.3})
    _light_on_dark(rng, st, 0.0, rng.random() < 0.25)
    st.barcode = "above" if rng.random() < 0.8 else "below"
    if rng.random() < 0.5:
        st.prefix, st.suffix = "*", "*"
        st.gap = rng.uniform(0.05, 0.4)
    st.above = "" if (st.barcode == "below" and rng.random() < 0.4) else None
    st.below = "" if rng.random() < 0.3 else None


_KIND_STYLERS = {
    "door_label": _door_label,
    "dash_plate": _dash_plate,
    "metal_plate": _metal_plate,
    "chassis_etch": _chassis_etch,
    "document": _document,
    "windshield_label": _windshield_label,
    "screen": _screen,
    "barcode_label": _barcode_label,
}


def sample_style(rng: np.random.Generator, kind: str) -> Style:
    """The look of one crop of ``kind``; context lines are left as "" to fill in."""
    st = Style(kind=kind, face=0, context_face=0)
    _KIND_STYLERS[kind](rng, st)
    st.glare = rng.uniform(0.15, 0.5) if rng.random() < GLARE[kind] else 0.0
    info = fonts.faces()[st.face].info
    # Stamped and dotted characters need more pixels than print to stay legible.
    low = 11.0 if kind == "chassis_etch" or st.effect != "plain" else 8.0
    st.cap = float(np.exp(rng.uniform(np.log(low), np.log(48.0))))
    st.tracking = rng.uniform(-0.04, 0.3) if rng.random() < 0.85 else rng.uniform(0.3, 0.8)
    if st.pitch is not None:
        st.tracking = 0.0
    st.xscale = float(np.exp(rng.uniform(np.log(0.75), np.log(1.3))))
    st.shear = float(np.clip(rng.normal(0, 0.06), -0.2, 0.2))
    st.angle = float(np.clip(rng.normal(0, 1.8), -4, 4))
    st.perspective = rng.uniform(0, 0.04)
    if rng.random() < 0.25:
        st.keystone = rng.uniform(0.05, 0.35) * (1 if rng.random() < 0.5 else -1)
    if rng.random() < 0.2:
        st.bold += rng.uniform(0.02, 0.045)
    elif rng.random() < 0.1 and info.weight > 0.15:
        st.bold = -rng.uniform(0.01, 0.03)
    if info.weight > 0.22:
        st.bold = min(st.bold, 0.0)  # black fonts fill their counters when dilated
    # Detector boxes: mostly snug, sometimes loose enough to show neighbours,
    # sometimes shaving an end character (clamped to 30 % in crops).
    st.margin_l, st.margin_r = (
        rng.uniform(-0.3, 0.0) if rng.random() < 0.12 else rng.uniform(0.05, 1.2) for _ in range(2)
    )
    st.margin_t, st.margin_b = (
        rng.uniform(0.6, 1.6) if rng.random() < 0.25 else rng.uniform(0.06, 0.6) for _ in range(2)
    )
    if rng.random() < 0.15:
        st.bend = rng.uniform(-1, 1) * min(0.25, 1.5 * min(st.margin_t, st.margin_b))
    st.line_gap = rng.uniform(0.35, 0.9)
    if st.context_scale == 1.0:
        st.context_scale = rng.uniform(0.6, 1.1)
    st.context_face = st.face if rng.random() < 0.7 else _face(rng, {"sans": 0.7, "mono": 0.3})
    _ensure_contrast(rng, st)
    return st


def _ensure_contrast(rng: np.random.Generator, st: Style) -> None:
    """Keep crops readable: print must stand out from the stock's own texture.

    Some crops are made deliberately faint, but the signal (ink contrast plus
    relief shading) always stays well above the texture's amplitude.
    """
    bg, fg = np.array(st.bg), np.array(st.fg)
    if rng.random() < 0.12:
        fg = bg + (fg - bg) * rng.uniform(0.3, 0.6)
    lb = _luma(st.bg)
    signal = abs(_luma((fg[0], fg[1], fg[2])) - lb) * st.ink_alpha + 0.35 * abs(st.relief)
    if signal < 0.15:
        fg = np.clip(bg + (-0.35 if lb > 0.45 else 0.35), 0, 1)
        st.ink_alpha = max(st.ink_alpha, 0.7)
        signal = abs(_luma((fg[0], fg[1], fg[2])) - lb) * st.ink_alpha + 0.35 * abs(st.relief)
    st.texture_amp = min(st.texture_amp, signal / (3.0 * max(lb, 0.2)))
    st.fg = (float(fg[0]), float(fg[1]), float(fg[2]))
