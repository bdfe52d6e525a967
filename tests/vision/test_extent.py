"""Following a fragment of a text line through the frame to the ends of its ink."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from agent.vision.extent import _line_quad, ink_band, ink_extent
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
    # Tight on the ink, as the scene generator labels a line.
    rows = np.nonzero((img[:, x0 : x0 + tw] < 120).any(axis=1))[0]
    top, bottom = float(rows.min()), float(rows.max() + 1)
    quad = np.array([[x0, top], [x0 + tw, top], [x0 + tw, bottom], [x0, bottom]], np.float32)
    # The middle third of the line, a bit taller than the ink, as the detector gives it.
    if gap_word:
        cv2.putText(img, gap_word, (x0 + tw + 3 * th, y0), font, scale, 30, thick, cv2.LINE_AA)
    th = bottom - top
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


def _off_band(quad: np.ndarray, scale: float, shift: float) -> np.ndarray:
    """The quad ``scale`` times as tall and moved ``shift`` of its height across the line,
    as the detector's coarse map often gives it."""
    c, u, length, height = quad_axes(quad)
    n = np.array([-u[1], u[0]], np.float32)
    return _line_quad(c + shift * height * n, u, -length / 2, length / 2, scale * height)


@pytest.mark.parametrize("angle", [0.0, 8.0, -15.0])
@pytest.mark.parametrize(("scale", "shift"), [(1.8, 0.0), (0.6, 0.15), (1.5, -0.3), (1.3, 0.3)])
def test_a_quad_off_its_line_is_moved_onto_its_band_of_ink(
    angle: float, scale: float, shift: float
) -> None:
    """The map gives a small line's height to a cell or two: a crop twice too tall takes in
    the next label line, one half too short cuts the characters. The rows of the frame
    say where the strokes are."""
    img, quad, _ = _line_image("1HGCM82633A004352", angle)
    band = ink_band(img, _off_band(quad, scale, shift))
    c, _, length, height = quad_axes(band)
    tc, tu, true_length, true_height = quad_axes(quad)
    assert 0.9 * true_height <= height <= 1.3 * true_height
    assert abs(float((c - tc) @ np.array([-tu[1], tu[0]]))) < 0.15 * true_height
    assert length == pytest.approx(true_length, rel=1e-3)  # along the line it is unchanged


def test_the_band_stops_between_two_close_label_lines() -> None:
    """Label lines are set a third of a height apart; on a grainy photo the rows between them
    never fall empty, so the band ends in the valley of stroke energy between the lines
    instead (without that rule it spreads over the whole search strip). The quad is twice
    too tall and a tenth of a height off centre towards the other line: on generated scenes
    nine in ten detections are within that offset."""
    img, quad, _ = _line_image("1HGCM82633A004352")
    cv2.putText(
        img,
        "GVWR 2449KG 5399LB",
        (60, 100 + round(1.35 * CAP)),
        cv2.FONT_HERSHEY_SIMPLEX,
        CAP / 22.0,
        30,
        2,
        cv2.LINE_AA,
    )
    grain = np.random.default_rng(0).normal(0, 30, img.shape)
    img = np.clip(cv2.GaussianBlur(img, (0, 0), 1.2) + grain, 0, 255).astype(np.uint8)
    band = ink_band(img, _off_band(quad, 2.0, 0.1))
    c, _, _, height = quad_axes(band)
    tc, tu, _, true_height = quad_axes(quad)
    assert height <= 1.5 * true_height
    assert abs(float((c - tc) @ np.array([-tu[1], tu[0]]))) < 0.25 * true_height


def test_without_ink_the_band_is_the_quad() -> None:
    """A blank strip has no band to move to: the detector's quad stands."""
    img = np.full((100, 400), 128, np.uint8)
    quad = np.array([[100, 40], [220, 40], [220, 60], [100, 60]], np.float32)
    np.testing.assert_allclose(ink_band(img, quad), quad, atol=1e-3)
