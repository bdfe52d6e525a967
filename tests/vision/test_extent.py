"""Following a fragment of a text line through the frame to the ends of its ink."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from agent.vision.extent import ink_extent
from agent.vision.geometry import quad_axes

CAP = 20  # cap height in pixels of the drawn line


def _line_image(
    text: str, angle: float = 0.0, gap_word: str = ""
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A gray frame with one line of dark text, the text's quad, and a fragment of it.

    ``gap_word`` is drawn after the line beyond a gap of three line heights: other text
    on the same baseline that is not part of the line.
    """
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, CAP / 22.0, 2
    (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
    img = np.full((200, 900), 210, np.uint8)
    x0, y0 = 60, 100
    cv2.putText(img, text, (x0, y0), font, scale, 30, thick, cv2.LINE_AA)
    if gap_word:
        cv2.putText(img, gap_word, (x0 + tw + 3 * th, y0), font, scale, 30, thick, cv2.LINE_AA)
    quad = np.array([[x0, y0 - th], [x0 + tw, y0 - th], [x0 + tw, y0], [x0, y0]], np.float32)
    # The middle third of the line, a bit taller than the ink, as the detector gives it.
    frag = quad.copy()
    frag[[0, 3], 0] = x0 + tw / 3
    frag[[1, 2], 0] = x0 + 2 * tw / 3
    frag[[0, 1], 1] -= 0.2 * th
    frag[[2, 3], 1] += 0.2 * th
    if angle:
        rot = cv2.getRotationMatrix2D((450.0, 100.0), angle, 1.0)
        img = cv2.warpAffine(img, rot, (900, 200), borderValue=210)

        def turn(q: np.ndarray) -> np.ndarray:
            return (np.c_[q, np.ones(4)] @ rot.T).astype(np.float32)

        quad, frag = turn(quad), turn(frag)
    return img, quad, frag


def _ends(quad: np.ndarray, u: np.ndarray) -> tuple[float, float]:
    s = quad @ u
    return float(s.min()), float(s.max())


@pytest.mark.parametrize("angle", [0.0, 8.0, -15.0])
def test_a_fragment_is_extended_to_both_ends_of_its_line(angle: float) -> None:
    """The detector's coarse map often covers the middle of a VIN line only; the frame shows
    where the characters go on, at any tilt."""
    img, quad, frag = _line_image("1HGCM82633A004352", angle)
    grown = ink_extent(img, frag)
    _, u, _, height = quad_axes(grown)
    start, end = _ends(grown, u)
    true_start, true_end = _ends(quad, u)
    assert abs(start - true_start) < 0.5 * CAP
    assert abs(end - true_end) < 0.5 * CAP
    assert height == pytest.approx(quad_axes(frag)[3], rel=1e-3)


def test_the_extent_stops_at_a_gap_wider_than_a_word_space() -> None:
    """Text further along the same baseline (a label's next field) is not part of the line."""
    img, quad, frag = _line_image("1HGCM82633A004352", gap_word="GVWR")
    _, u, _, _ = quad_axes(quad)
    _, end = _ends(ink_extent(img, frag), u)
    assert abs(end - _ends(quad, u)[1]) < 0.5 * CAP


def test_without_ink_around_it_the_quad_is_kept() -> None:
    """A fragment on a blank frame is never shrunk or moved: the map's extent stands."""
    img = np.full((100, 400), 128, np.uint8)
    quad = np.array([[100, 40], [220, 40], [220, 60], [100, 60]], np.float32)
    np.testing.assert_allclose(ink_extent(img, quad), quad, atol=1e-3)
