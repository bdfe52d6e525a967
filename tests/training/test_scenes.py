"""Synthetic detector scenes: determinism, frame sizes, quads, rotations, labels, targets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("PIL", reason="the generator renders fonts with Pillow (dev/train extras)")

from agent.vision.detector import STRIDE, quads_from_map
from agent.vision.geometry import quad_height
from training import crops, detector_data, scene_parts, scenes, vins
from training.detector_eval import match, polygon_iou

N_SCENES = 40


@pytest.fixture(scope="module")
def sample() -> list[scenes.Scene]:
    return [scenes.render_scene(scenes.scene_rng(100, i)) for i in range(N_SCENES)]


def _inside(q: np.ndarray, w: int, h: int) -> bool:
    return bool(
        (q[:, 0] >= 0).all() and (q[:, 0] <= w - 1).all() and (q[:, 1] >= 0).all()
    ) and bool((q[:, 1] <= h - 1).all())


def test_scenes_are_deterministic_per_seed_and_index() -> None:
    """Training sets are named by seed and regenerated on demand: a scene may depend only on
    (seed, index), never on global state or on which scenes were made before it."""
    a = scenes.render_scene(scenes.scene_rng(3, 5))
    scenes.render_scene(scenes.scene_rng(3, 4))
    b = scenes.render_scene(scenes.scene_rng(3, 5))
    assert np.array_equal(a.image, b.image) and a.rotation == b.rotation
    assert [ln.text for ln in a.lines] == [ln.text for ln in b.lines]
    for la, lb in zip(a.lines, b.lines, strict=True):
        assert np.array_equal(la.quad, lb.quad)
    c = scenes.render_scene(scenes.scene_rng(4, 5))
    assert a.image.shape != c.image.shape or not np.array_equal(a.image, c.image)


def test_frames_are_bgr_within_the_supported_size_range(sample: list[scenes.Scene]) -> None:
    """The agent sees 640x480 to 1920x1080 frames, landscape or portrait, in colour."""
    for sc in sample:
        h, w, ch = sc.image.shape
        assert ch == 3 and sc.image.dtype == np.uint8
        assert 480 <= min(h, w) <= 1080 and 640 <= max(h, w) <= 1920
    assert any(sc.image.shape[0] > sc.image.shape[1] for sc in sample), "no portrait frame"
    assert len({sc.image.shape[:2] for sc in sample}) > 5


def test_quads_lie_inside_the_frame_and_labels_are_vins(sample: list[scenes.Scene]) -> None:
    """A label cut by the frame edge or a distractor labelled as a VIN would teach the
    detector to outline things the recognizer can never read as a VIN."""
    n_lines = n_ignored = 0
    for sc in sample:
        h, w = sc.image.shape[:2]
        for ln in sc.lines:
            assert ln.quad.shape == (4, 2) and ln.quad.dtype == np.float32
            assert _inside(ln.quad, w, h)
            assert vins.is_vin_shaped(ln.text)
            assert ln.kind in crops.KINDS
            assert ln.height >= 6
            for q in sc.ignore:
                assert polygon_iou(q, ln.quad) < 0.1, "a labelled VIN is also ignored"
        n_lines += len(sc.lines)
        n_ignored += len(sc.ignore)
    assert n_lines >= N_SCENES * 0.8
    assert n_ignored > 0, "no VIN-like distractors were drawn"
    counts = [len(sc.lines) for sc in sample]
    assert 0 in counts and max(counts) >= 2


def test_distractor_strings_are_not_vins_and_cheap_clutter_is_not_vin_like() -> None:
    """Clutter is neither labelled nor ignored, so it must never look like a VIN; near-miss
    distractors are ignored in training instead of being taught as negatives."""
    rng = np.random.default_rng(0)
    for _ in range(1000):
        assert not scenes.is_near_miss(scene_parts._clutter_string(rng))
    assert scenes.is_near_miss("1HGCM82633A00435")  # 16 characters
    assert not scenes.is_near_miss("P215/65R16 98H")


def test_whole_photo_rotations_occur_and_move_pixels_and_quads_together(
    sample: list[scenes.Scene],
) -> None:
    """Phones store sideways and upside-down photos; the quad corners must follow the
    characters, so TL->TR of an upright line points the other way after a half turn."""
    assert {0, 90, 180, 270} <= {sc.rotation for sc in sample}
    seed = scenes.scene_rng
    up = scenes.render_scene(seed(9, 1), 800, 600, 0, 1)
    half = scenes.render_scene(seed(9, 1), 800, 600, 180, 1)
    quarter = scenes.render_scene(seed(9, 1), 600, 800, 90, 1)
    assert np.array_equal(half.image, cv2.rotate(up.image, cv2.ROTATE_180))
    assert np.array_equal(quarter.image, cv2.rotate(up.image, cv2.ROTATE_90_CLOCKWISE))
    assert len(up.lines) == len(half.lines) == len(quarter.lines) == 1
    q0, q180, q90 = up.lines[0].quad, half.lines[0].quad, quarter.lines[0].quad
    np.testing.assert_allclose(q180, np.stack([799 - q0[:, 0], 599 - q0[:, 1]], 1), atol=1e-3)
    np.testing.assert_allclose(q90, np.stack([599 - q0[:, 1], q0[:, 0]], 1), atol=1e-3)
    d0, d180, d90 = q0[1] - q0[0], q180[1] - q180[0], q90[1] - q90[0]
    np.testing.assert_allclose(d180, -d0, atol=1e-3)
    np.testing.assert_allclose(d90, [-d0[1], d0[0]], atol=1e-3)


def test_upright_lines_read_left_to_right() -> None:
    """Quads are in reading order: on upright photos almost every VIN's TL->TR edge points
    right (a few carriers are placed at any angle), and the TL->BL edge points down."""
    rightwards = total = 0
    for i in range(12):
        sc = scenes.render_scene(scenes.scene_rng(21, i), 800, 600, 0, 1)
        for ln in sc.lines:
            along, down = ln.quad[1] - ln.quad[0], ln.quad[3] - ln.quad[0]
            rightwards += along[0] > 0
            total += 1
            assert along[0] * down[1] - along[1] * down[0] > 0, "corners not clockwise"
    assert total >= 10 and rightwards >= total - 2


def test_crop_quad_is_tight_around_the_text() -> None:
    """The VIN quad from a rendered crop spans its text only: ink lies inside, and the
    quad's top edge runs left to right across the crop."""
    rng = np.random.default_rng(5)
    for _ in range(6):
        _img, quad, text, _ = crops.render_crop_with_quad(rng, cap=30, margins=(2, 2, 2, 2))
        assert len(text) == 17
        assert quad[1, 0] - quad[0, 0] > 10 * 30 * 0.5
        h = float(np.linalg.norm(quad[3] - quad[0]))
        assert 24 < h < 36


def test_target_map_covers_each_line_and_inference_recovers_it(
    sample: list[scenes.Scene],
) -> None:
    """The training target is exactly what ``quads_from_map`` undoes: run the runtime's own
    post-processing on a perfect target map and the VIN quads must come back."""
    checked = 0
    for sc in sample[:20]:
        x, y, w, lb = detector_data.prepare(sc)
        assert x.shape == (384, 640) and y.shape == w.shape == (96, 160)
        found = [lb.to_frame((q + 0.5) * STRIDE - 0.5) for q, _ in quads_from_map(y, 0.5)]
        big = []
        for ln in sc.lines:
            qi = detector_data.to_input(ln.quad, lb)
            hin = quad_height(qi)
            if hin < detector_data.MIN_INPUT_HEIGHT:
                continue
            core = np.zeros_like(y)
            detector_data.fill_core(core, detector_data.shrink(detector_data.to_map(qi)), 1)
            assert core.any() and (y[core > 0] == 1).all()
            assert (w[core > 0] >= detector_data.WEIGHT_UNIT).all()
            if hin >= 12:
                big.append(ln.quad)
        gt_hit, _ = match(found, big)
        assert gt_hit.all()
        checked += len(big)
        for q in sc.ignore:
            c = np.round(detector_data.to_map(detector_data.to_input(q.mean(0), lb))).astype(int)
            if 0 <= c[1] < 96 and 0 <= c[0] < 160 and y[c[1], c[0]] == 0:
                assert w[c[1], c[0]] == 0
    assert checked >= 5


def test_split_arrays_do_not_depend_on_chunking() -> None:
    """Cached training arrays are keyed by seed and count only."""
    a = detector_data.make_split(8, 3, workers=1, progress=False, chunk=2)
    b = detector_data.make_split(8, 3, workers=1, progress=False, chunk=3)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k])
    assert a["x"].dtype == np.uint8 and a["y"].max() <= 1


def test_cli_writes_frames_labels_and_quads(tmp_path: Path) -> None:
    """The CLI's files are what people and other tools read: one labels.csv row per VIN
    (an empty VIN for frames without one) and quads.json keyed by file name."""
    out = tmp_path / "scenes"
    assert scenes.main(["--seed", "5", "--n", "3", "--out", str(out), "--preview"]) == 0
    files = sorted(p.name for p in out.glob("scene_*.jpg"))
    assert len(files) == 3 and (out / "preview.jpg").exists()
    with open(out / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["file"] for r in rows} == set(files)
    quads = json.loads((out / "quads.json").read_text())
    assert set(quads) == set(files)
    for name in files:
        vins_csv = sorted(r["vin"] for r in rows if r["file"] == name and r["vin"])
        assert vins_csv == sorted(e["vin"] for e in quads[name])
        img = cv2.imread(str(out / name))
        for e in quads[name]:
            assert _inside(np.array(e["quad"]), img.shape[1], img.shape[0])
