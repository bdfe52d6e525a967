"""Where a text line's ink is: move a detected line across its axis onto its band
of ink (``ink_band``) and extend a fragment along it (``ink_extent``).

The detector's map is coarse (one map cell is 12 frame pixels of a 1920x1080
frame): its quads are a cell or two off in height and often cover only part
of a VIN line.  The frame itself still shows where the characters are: rows
of stroke energy across the line, columns along it, at full resolution.
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


#: The band is searched this many line heights across, centred on the quad.
BAND_SPAN = 3.0
#: Rows of the rectified search strip at most.
BAND_ROWS = 96
#: A row is ink when its stroke energy reaches this fraction of the line's peak.
BAND_FRACTION = 0.35
#: A dip below this fraction of the peak followed by a rise ends the band.
#: Both measured on the labelled quads of 300 generated scenes (band height /
#: labelled height, p10/p50/p90): 0.35 alone 1.02/1.15/3.0 (merged with the
#: next label line); with the valley rule 1.00/1.13/1.50; 0.5 with it
#: 0.93/1.02/1.32, which read fewer lost VINs back (17 of 58 against 19).
BAND_VALLEY = 0.75
#: Smoothing of the row profile, in line heights.
BAND_SMOOTH = 0.1


def ink_band(gray: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """The quad moved and resized across its axis to the band of ink it lies on.

    The detector's map is 1/4 of its input, so a small line's height is known
    to a cell or two (a 20-px line comes out anywhere from 12 to 36 px tall);
    the rows of the full-resolution frame say where the characters' strokes
    start and end.
    """
    c, u, length, height = quad_axes(np.asarray(quad, np.float32))
    if length <= 0 or height <= 0:
        return np.asarray(quad, np.float32)
    # Three heights: a quad twice too tall or half off its line still has the line inside.
    span = BAND_SPAN * height
    rows = int(np.clip(round(span), 8, BAND_ROWS))
    strip = rectify(gray, _line_quad(c, u, -length / 2, length / 2, span), rows)
    px = strip.shape[0] / span  # strip rows per frame pixel
    energy = np.abs(np.diff(strip.astype(np.float32), axis=1)).mean(axis=1)
    k = max(1, round(BAND_SMOOTH * height * px))
    energy = np.convolve(energy, np.ones(k, np.float32) / k, mode="same")
    # The strongest row within half a height of the centre: the quad lies on its line.
    mid = len(energy) // 2
    half = max(1, round(0.5 * height * px))
    peak = mid - half + int(np.argmax(energy[mid - half : mid + half + 1]))
    if energy[peak] <= 0:
        return np.asarray(quad, np.float32)
    ink = energy >= BAND_FRACTION * energy[peak]
    valley = BAND_VALLEY * energy[peak]

    def walk(i: int, step: int) -> int:
        # Stop at the end of the ink, or where energy rises again out of a
        # valley: the next label line, closer than a gap of empty rows.
        while 0 <= i + step < len(ink) and ink[i + step]:
            if energy[i] < valley and energy[i + step] > energy[i]:
                break
            i += step
        return i

    top, bottom = walk(peak, -1), walk(peak, 1)
    new_h = (bottom - top + 1) / px
    shift = ((top + bottom + 1) / 2 - len(energy) / 2) / px
    n = np.array([-u[1], u[0]], np.float32)
    return _line_quad(c + shift * n, u, -length / 2, length / 2, new_h)
