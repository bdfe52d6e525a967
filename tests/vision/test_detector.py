"""The detector's whole-frame and tiled passes, on the shipped model and real sample frames."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pytest

from agent.vision.detector import Detector, _cut_by_tile, _duplicate, quads_from_map
from agent.vision.geometry import quad_axes
from agent.vision.manifest import load_manifest
from tests.conftest import REPO, count_calls

SCENES = REPO / "samples" / "scenes"


def _box(x0: int, y0: int, x1: int, y1: int) -> dict[str, int]:
    return {"xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1}


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(load_manifest())  # the shipped models, wherever the package is installed


def _counting(detector: Detector, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count invocations of the real model (it still runs)."""
    return count_calls(monkeypatch, detector.model, "invoke")


def _distant_label() -> np.ndarray:
    """A 1920x1080 frame with a sample scene shrunk to half in its lower right corner."""
    scene = cv2.imread(str(SCENES / "scene_0000.jpg"), cv2.IMREAD_GRAYSCALE)
    assert scene is not None
    big = np.full((1080, 1920), 128, np.uint8)
    small = cv2.resize(scene, (scene.shape[1] // 2, scene.shape[0] // 2), cv2.INTER_AREA)
    y0, x0 = 1080 - small.shape[0] - 20, 1920 - small.shape[1] - 40
    big[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    return big


def _turned_lines(dets: list[Any], w: int) -> Callable[[dict[str, int]], bool]:
    """Whether a box of the portrait frame is one of ``dets`` (found in the landscape
    frame, w wide) turned a quarter counter-clockwise, within 1.5 px."""
    mapped = []
    for det in dets:
        q = np.stack([det.quad[:, 1], w - 1 - det.quad[:, 0]], axis=1)
        mapped.append((q[:, 0].min(), q[:, 1].min(), q[:, 0].max(), q[:, 1].max()))

    def is_mapped(b: dict[str, int]) -> bool:
        return any(
            max(abs(b["xmin"] - x0), abs(b["ymin"] - y0), abs(b["xmax"] - x1), abs(b["ymax"] - y1))
            <= 1.5
            for x0, y0, x1, y1 in mapped
        )

    return is_mapped


def test_hysteresis_extends_a_line_over_its_weaker_cells_only() -> None:
    """The map is often strong at a line's core and weaker along the rest of it: cells
    above the low threshold extend a line found above the high one, but a region that
    never reaches the high threshold is still no line."""
    prob = np.zeros((40, 80), np.float32)
    prob[10:12, 10:60] = 0.6  # the whole line, weakly
    prob[10:12, 30:40] = 0.9  # its core
    prob[25:27, 10:60] = 0.6  # weak everywhere: not a line
    (strict,) = quads_from_map(prob, 0.8)
    assert quad_axes(strict[0])[2] < 20
    (found,) = quads_from_map(prob, 0.8, low=0.5)
    _, _, length, _ = quad_axes(found[0])
    centre = found[0].mean(axis=0)
    assert length > 45 and centre[1] < 15


def test_duplicates_are_judged_by_iou() -> None:
    line = _box(100, 100, 400, 130)
    assert _duplicate(line, _box(110, 102, 410, 132))  # the same line, outlined again
    assert not _duplicate(line, _box(150, 105, 220, 125))  # a fragment must not hide the line
    assert not _duplicate(line, _box(100, 140, 400, 170))  # the next label line
    assert not _duplicate(line, _box(390, 100, 700, 130))  # touching end to end


def test_a_line_on_an_inner_tile_edge_is_cut_but_not_on_the_frame_edge() -> None:
    # A tile at (0, 0), 1000x600 of a 1800x1000 frame: its right and bottom edges are inner.
    assert _cut_by_tile(_box(900, 100, 999, 130), 0, 0, 1000, 600, 1800, 1000)
    assert _cut_by_tile(_box(100, 580, 300, 599), 0, 0, 1000, 600, 1800, 1000)
    assert not _cut_by_tile(_box(0, 100, 300, 130), 0, 0, 1000, 600, 1800, 1000)
    assert not _cut_by_tile(_box(100, 100, 300, 130), 0, 0, 1000, 600, 1800, 1000)


def test_large_frames_are_also_searched_in_tiles(
    detector: Detector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 1920x1080 frame gets four tile passes besides the whole frame; tiles only add.

    The sample scene is pasted small into a large frame, as a distant label
    would be; every line the whole-frame pass found is kept (alone, or as a
    part of a longer line), and what tiles add does not repeat a line already
    found.
    """
    big = _distant_label()
    calls = _counting(detector, monkeypatch)
    whole = detector.detect(big, tiles=False, turned=False)
    assert len(calls) == 1
    tiled = detector.detect(big, turned=False)
    assert len(calls) == 1 + 5
    # Kept as found or as fragments of a joined line: a whole-frame line joined
    # from fragments may be joined again with a longer line a tile found.
    flat = [p for d in tiled for p in (d, *d.parts)]
    keys = {tuple(d.box.values()) for d in flat}
    for d in whole:
        assert all(tuple(p.box.values()) in keys for p in (d.parts or (d,)))
    added = [d for d in flat if all(d.box != w.box for w in whole)]
    for d in added:
        if not d.parts:
            assert not any(_duplicate(d.box, o.box) for o in flat if o is not d and not o.parts)
    assert [d.score for d in tiled] == sorted((d.score for d in tiled), reverse=True)


def test_frames_smaller_than_the_input_are_not_tiled(
    detector: Detector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tiles start at the detector input's size: below it the whole-frame pass already
    enlarges the frame, and four more passes would be paid for a rare frame size."""
    frame = cv2.imread(str(SCENES / "scene_0000.jpg"), cv2.IMREAD_GRAYSCALE)
    assert frame is not None
    frame = cv2.resize(frame, (600, 360))  # smaller than the 640x384 input
    calls = _counting(detector, monkeypatch)
    assert [d.box for d in detector.detect(frame, turned=False)] == [
        d.box for d in detector.detect(frame, tiles=False, turned=False)
    ]
    assert len(calls) == 2
    detector.detect(cv2.resize(frame, (640, 384)), turned=False)  # the input's size: tiled
    assert len(calls) == 2 + 5


def test_the_quarter_turned_pass_finds_lines_of_a_portrait_photo(
    detector: Detector,
) -> None:
    """A label photographed in portrait has vertical lines; the turned pass sees them upright.

    The sample frame turned counter-clockwise is turned back exactly by the
    pass, so it must find every line the upright frame gives, mapped into the
    portrait frame's pixels.
    """
    frame = cv2.imread(str(SCENES / "scene_0000.jpg"), cv2.IMREAD_GRAYSCALE)
    assert frame is not None
    w = frame.shape[1]
    upright = detector.detect(frame, tiles=False, turned=False)
    assert upright, "the sample scene should give at least one line"
    portrait = cv2.rotate(frame, cv2.ROTATE_90_COUNTERCLOCKWISE)
    found = detector.detect(portrait, tiles=False, turned=True)
    plain = [d.box for d in detector.detect(portrait, tiles=False, turned=False)]
    is_mapped = _turned_lines(upright, w)

    for d in found:
        if d.box not in plain:
            # Added by the turned pass: exactly an upright line, mapped, or a line
            # joined from one and a collinear fragment the portrait pass found.
            assert is_mapped(d.box) or any(is_mapped(p.box) for p in d.parts), d.box
    for det in upright:
        # (x, y) of the frame is (y, w - 1 - x) of the portrait.
        expected = np.stack([det.quad[:, 1], w - 1 - det.quad[:, 0]], axis=1)
        xs, ys = expected[:, 0], expected[:, 1]
        box = _box(int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
        # Found by the turned pass at that place, or already by the portrait pass itself.
        assert any(_duplicate(d.box, box) for d in found), det.box


def _line(x0: float, y0: float, length: float, height: float, angle: float = 0.0) -> Any:
    from agent.vision.detector import Detection
    from agent.vision.geometry import order_quad, quad_box

    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    corners = np.array([[0, 0], [length, 0], [length, height], [0, height]], np.float32)
    quad = order_quad(corners @ np.array([[c, s], [-s, c]], np.float32) + (x0, y0))
    return Detection(quad, quad_box(quad, 2000, 2000), 0.5)


def test_collinear_fragments_of_a_line_are_joined_and_kept() -> None:
    """A VIN line broken in two by the map is offered whole, with its fragments to fall back on."""
    from agent.vision.detector import join_fragments

    for angle in (0.0, 20.0, 90.0):
        a = _line(100, 300, 200, 30, angle)
        # b continues a after a gap of one line height, along the line's direction.
        u = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))], np.float32)
        b = _line(*(np.array([100, 300]) + u * 230), 210, 30, angle)
        out = join_fragments([a, b], 2000, 2000)
        assert len(out) == 1, angle
        joined = out[0]
        assert {id(p) for p in joined.parts} == {id(a), id(b)}
        length = np.linalg.norm(joined.quad[1] - joined.quad[0])
        height = np.linalg.norm(joined.quad[3] - joined.quad[0])
        assert length == pytest.approx(440, abs=1.5) and height == pytest.approx(30, abs=1.0)


def test_stacked_crossing_distant_or_different_lines_are_not_joined() -> None:
    from agent.vision.detector import join_fragments

    base = _line(100, 300, 200, 30)
    others = [
        _line(100, 340, 200, 30),  # the next label line
        _line(330, 300, 200, 30, 90.0),  # across it
        _line(400, 300, 200, 30),  # too far along: 100 px > 1.5 line heights
        _line(330, 300, 200, 60),  # twice as tall
    ]
    for other in others:
        assert len(join_fragments([base, other], 2000, 2000)) == 2


def test_the_quarter_turned_frame_is_searched_in_tiles_too(
    detector: Detector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small lines of a portrait photo need the tiles as much as level ones (2,000
    generated scenes: +1.5 points exact); the turned tiles' lines map back exactly.

    A distant label in a 1920x1080 frame, turned to portrait: the turned pass sees
    the landscape frame, so every line it adds must be one the landscape frame's own
    search (whole and tiles) gives, mapped into portrait pixels.
    """
    big = _distant_label()
    portrait = cv2.rotate(big, cv2.ROTATE_90_COUNTERCLOCKWISE)
    landscape = [d for det in detector.detect(big) for d in (det, *det.parts)]
    own = [d.box for det in detector.detect(portrait) for d in (det, *det.parts)]
    calls = _counting(detector, monkeypatch)
    found = detector.detect(portrait, turned=True)
    assert len(calls) == 2 * 5  # whole frame and four tiles, level and turned
    w = big.shape[1]
    is_mapped = _turned_lines(landscape, w)

    added = [d for det in found for d in (det.parts or (det,)) if d.box not in own]
    assert added, "the turned pass should add the landscape label's lines"
    assert all(is_mapped(d.box) for d in added)
