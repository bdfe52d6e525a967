"""Where a text line's ink ends: extend a detected fragment along its axis.

The detector's map is coarse (one map cell is 12 frame pixels of a 1920x1080
frame) and often covers only part of a VIN line.  The frame itself still
shows where the characters go on: this follows the fragment's band through
the full-resolution frame, column by column, and stops at the first gap
wider than a word space.
"""

from __future__ import annotations

import numpy as np

from agent.vision.geometry import quad_axes, rectify

#: The band is sampled at this height (pixels), whatever the line's size.
BAND_HEIGHT = 16
#: How far to look past each end of the fragment, in line heights: a whole
#: VIN at a generous pitch, since the fragment may be its first character.
REACH = 16.0
#: A column is ink when its stroke energy reaches this fraction of the
#: fragment's own median.
INK_FRACTION = 0.5
#: The line ends at a run of empty columns this long, in line heights.
MAX_GAP = 0.5
#: Smoothing of the energy profile, in line heights (about a stroke's spacing).
SMOOTH = 0.25


def _line_quad(c: np.ndarray, u: np.ndarray, start: float, end: float, height: float) -> np.ndarray:
    n = np.array([-u[1], u[0]], np.float32)
    a, b = c + start * u, c + end * u
    half = n * height / 2
    return np.array([a - half, b - half, b + half, a + half], np.float32)


def ink_extent(gray: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """The quad extended along its axis to the ends of the ink it lies on.

    Never shorter than the given quad: the map's own extent is kept where the
    frame shows no more ink.
    """
    c, u, length, height = quad_axes(np.asarray(quad, np.float32))
    if length <= 0 or height <= 0:
        return np.asarray(quad, np.float32)
    reach = REACH * height
    strip = rectify(
        gray, _line_quad(c, u, -length / 2 - reach, length / 2 + reach, height), BAND_HEIGHT
    )
    px = strip.shape[1] / (length + 2 * reach)  # strip pixels per frame pixel
    s = strip.astype(np.float32)
    energy = np.abs(np.diff(s, axis=1)).mean(axis=0)
    k = max(1, round(SMOOTH * height * px))
    energy = np.convolve(energy, np.ones(k, np.float32) / k, mode="same")
    lo = round(reach * px)
    hi = min(len(energy), round((reach + length) * px))
    if hi <= lo:
        return np.asarray(quad, np.float32)
    ref = float(np.median(energy[lo:hi]))
    if ref <= 0:
        return np.asarray(quad, np.float32)
    ink = energy >= INK_FRACTION * ref
    gap = max(1, round(MAX_GAP * height * px))

    def walk(start: int, step: int) -> int:
        last, i = start, start
        while 0 <= i < len(ink) and abs(i - last) <= gap:
            if ink[i]:
                last = i
            i += step
        return last

    left, right = walk(lo, -1), walk(hi - 1, 1)
    start = left / px - reach - length / 2
    end = right / px - reach - length / 2
    return _line_quad(c, u, min(start, -length / 2), max(end, length / 2), height)
