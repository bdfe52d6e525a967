"""Detector training arrays: letterboxed scenes and the target maps inference undoes.

A scene becomes what ``agent.vision.detector.Detector`` sees (gray,
letterboxed to 640x384) plus, at stride 4, a target map and a loss weight
map.  The target is each VIN quad shrunk to SHRINK_ALONG x SHRINK_ACROSS
about its centre, filled where map pixel centres fall inside it, so that
``quads_from_map`` (minAreaRect over pixel centres, grown back by the
inverse fractions, centres mapped by ``(m + 0.5) * STRIDE - 0.5``) gives
the quad back.

Weights: 0 over VIN-like distractors and occluded VINs (``Scene.ignore``)
and over VINs lower than MIN_INPUT_HEIGHT detector pixels, which no stride-4
map can outline to IoU 0.5; small VIN cores weigh more so that a line of 20
map pixels counts about as much as one of 2000.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import re
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agent.vision.detector import INPUT_HEIGHT, INPUT_WIDTH, SHRINK_ACROSS, SHRINK_ALONG, STRIDE
from agent.vision.geometry import Letterbox, expand_quad, letterbox, quad_height
from training.scenes import GENERATOR_VERSION, Scene, render_scene, scene_rng

logger = logging.getLogger(__name__)

MAP_H, MAP_W = INPUT_HEIGHT // STRIDE, INPUT_WIDTH // STRIDE
#: VINs lower than this in detector input pixels are left out of the loss.
MIN_INPUT_HEIGHT = 4.0
#: Weight maps are stored as uint8 in units of 1/WEIGHT_UNIT.
WEIGHT_UNIT = 32
#: Scenes per worker job; the arrays do not depend on it (scenes are seeded one by one).
CHUNK = 16


def to_input(points: np.ndarray, lb: Letterbox) -> np.ndarray:
    """Frame pixels -> detector input pixels (the inverse of ``Letterbox.to_frame``)."""
    return (np.asarray(points, np.float32) * lb.scale + (lb.pad_x, lb.pad_y)).astype(np.float32)


def to_map(points: np.ndarray) -> np.ndarray:
    """Detector input pixels -> map pixels with map pixel centres at integers."""
    return ((np.asarray(points, np.float32) + 0.5) / STRIDE - 0.5).astype(np.float32)


def shrink(quad: np.ndarray) -> np.ndarray:
    """The training core of a line: SHRINK_ALONG of its length, SHRINK_ACROSS of its height."""
    return expand_quad(quad, SHRINK_ALONG - 1, SHRINK_ACROSS - 1)


def fill_core(mask: np.ndarray, quad: np.ndarray, value: int) -> None:
    """Set ``mask`` pixels whose centres lie half a pixel inside ``quad`` (map coordinates),
    plus the centre line, which keeps cores thinner than a pixel connected, not dashed.

    Inference measures a component as the spread of its pixel centres plus one pixel.  On
    a line at any angle but exactly 0 or 90 degrees the centres inside a band reach out to
    its edges, so the band is inset by half a pixel per side to come back at its own size.
    """
    length = float(np.linalg.norm(quad[1] - quad[0]) + np.linalg.norm(quad[2] - quad[3])) / 2
    a, b = (quad[0] + quad[3]) / 2, (quad[1] + quad[2]) / 2
    pa, pb = (int(v) for v in np.round(a * 16)), (int(v) for v in np.round(b * 16))
    cv2.line(mask, tuple(pa), tuple(pb), value, 1, cv2.LINE_8, 4)
    height = quad_height(quad)
    if height <= 1 or length <= 1:
        return
    quad = expand_quad(quad, -1 / length, -1 / height)
    h, w = mask.shape
    x0, y0 = np.maximum(np.floor(quad.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(quad.max(0)).astype(int), (w - 1, h - 1))
    if x1 >= x0 and y1 >= y0:
        ys, xs = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
        e = np.roll(quad, -1, axis=0) - quad
        cross = e[:, None, None, 0] * (ys - quad[:, None, None, 1]) - e[:, None, None, 1] * (
            xs - quad[:, None, None, 0]
        )
        inside = np.all(cross >= 0, axis=0) | np.all(cross <= 0, axis=0)
        mask[ys[inside], xs[inside]] = value


def target_maps(
    vins: list[np.ndarray], ignore: list[np.ndarray], lb: Letterbox
) -> tuple[np.ndarray, np.ndarray]:
    """(target, weight) uint8 MAP_H x MAP_W maps for VIN and ignored quads in frame pixels."""
    target = np.zeros((MAP_H, MAP_W), np.uint8)
    weight = np.full((MAP_H, MAP_W), WEIGHT_UNIT, np.uint8)
    blocked = []
    for q in vins:
        qi = to_input(q, lb)
        if quad_height(qi) < MIN_INPUT_HEIGHT:
            blocked.append(qi)
            continue
        core = np.zeros_like(target)
        fill_core(core, shrink(to_map(qi)), 1)
        n = int(core.sum())
        # Up to 4x for small cores so small VINs are not drowned out by large ones.
        w = int(np.clip(np.sqrt(64 / max(n, 1)), 1, 4) * WEIGHT_UNIT)
        target |= core
        weight[core > 0] = np.maximum(weight[core > 0], w)
    for qi in blocked + [to_input(q, lb) for q in ignore]:
        pts = np.round(to_map(qi) * 16).astype(np.int32)
        hole = np.zeros_like(target)
        cv2.fillPoly(hole, [pts], 1, cv2.LINE_8, 4)
        hole = cv2.dilate(hole, np.ones((3, 3), np.uint8))
        weight[(hole > 0) & (target == 0)] = 0
    return target, weight


def prepare(scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray, Letterbox]:
    """What the detector sees of a scene, and its target and weight maps."""
    gray = cv2.cvtColor(scene.image, cv2.COLOR_BGR2GRAY)
    x, lb = letterbox(gray, INPUT_WIDTH, INPUT_HEIGHT)
    y, w = target_maps([ln.quad for ln in scene.lines], scene.ignore, lb)
    return x, y, w, lb


def _init_worker() -> None:
    cv2.setNumThreads(1)


def _chunk(args: tuple[int, int, int]) -> dict[str, np.ndarray]:
    seed, start, stop = args
    n = stop - start
    x = np.empty((n, INPUT_HEIGHT, INPUT_WIDTH), np.uint8)
    y = np.empty((n, MAP_H, MAP_W), np.uint8)
    w = np.empty((n, MAP_H, MAP_W), np.uint8)
    quads, owner, frame_h = [], [], []
    for i in range(n):
        scene = render_scene(scene_rng(seed, start + i))
        x[i], y[i], w[i], lb = prepare(scene)
        for ln in scene.lines:
            quads.append(to_input(ln.quad, lb))
            owner.append(start + i)
            frame_h.append(ln.height)
    return {
        "x": x,
        "y": y,
        "w": w,
        "quads": np.array(quads, np.float32).reshape(-1, 4, 2),
        "owner": np.array(owner, np.int32),
        "frame_h": np.array(frame_h, np.float32),
    }


def _jobs(seed: int, n: int, chunk: int, first: int = 0) -> Iterator[tuple[int, int, int]]:
    for start in range(first, n, chunk):
        yield seed, start, min(n, start + chunk)


def map_scenes(
    func: Callable[[tuple[int, int, int]], Any],
    jobs: list[tuple[int, int, int]],
    workers: int,
    progress: bool,
    total: int,
) -> Iterator[Any]:
    """``func`` over ``jobs`` in a spawn pool (or inline), yielding results in order."""
    pool = None
    if workers > 1 and len(jobs) > 1:
        # spawn, not fork: the caller may already run TensorFlow or OpenCV thread pools.
        pool = mp.get_context("spawn").Pool(min(workers, len(jobs)), initializer=_init_worker)
    t0, done = time.perf_counter(), 0
    try:
        for job, out in zip(jobs, pool.imap(func, jobs) if pool else map(func, jobs), strict=True):
            done += job[2] - job[1]
            if progress:
                rate = done / max(time.perf_counter() - t0, 1e-9)
                bar = "#" * int(30 * done / max(total, 1))
                sys.stderr.write(f"\r[{bar:<30}] {done}/{total} {rate:.1f} scenes/s")
                sys.stderr.write("\n" if done >= total else "")
                sys.stderr.flush()
            yield out
    finally:
        if pool:
            pool.close()
            pool.join()


def make_split(
    seed: int,
    n: int,
    workers: int = 2,
    progress: bool = True,
    chunk: int = CHUNK,
    first: int = 0,
) -> dict[str, np.ndarray]:
    """Arrays of scenes ``first`` to ``n`` of ``seed``: x, y, w and the VIN quads in input
    pixels (``owner`` = scene index, ``frame_h`` = height in frame pixels); worker-count
    independent."""
    t0 = time.perf_counter()
    jobs = list(_jobs(seed, n, chunk, first))
    parts = list(map_scenes(_chunk, jobs, workers, progress, n - first))
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}
    logger.info("generated %d scenes in %.1f s", n - first, time.perf_counter() - t0)
    return out


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vin-agent"


def cache_path(seed: int, n: int, cache_dir: Path | None = None) -> Path:
    root = cache_dir if cache_dir is not None else default_cache_dir()
    return root / f"{GENERATOR_VERSION}_det_s{seed}_n{n}_{INPUT_HEIGHT}x{INPUT_WIDTH}.npz"


def load_or_make(
    seed: int, n: int, workers: int = 2, cache_dir: Path | None = None
) -> dict[str, np.ndarray]:
    """``make_split`` through an uncompressed .npz cache (noisy frames barely compress)."""
    path = cache_path(seed, n, cache_dir)
    data = _load(path)
    if data is not None:
        return data
    # Scenes are seeded one by one, so a smaller cache of the same seed is a prefix of this
    # split: extending it renders only the new scenes (8,000 take 6 minutes on 2 cores).
    prefix, first = _largest_prefix(seed, n, path.parent)
    data = make_split(seed, n, workers, first=first)
    if prefix is not None:
        data = {k: np.concatenate([prefix[k], data[k]]) if k in data else prefix[k] for k in prefix}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **data)
    tmp.replace(path)
    logger.info("cached %s", path)
    return data


def _load(path: Path) -> dict[str, np.ndarray] | None:
    if not path.exists():
        return None
    try:
        with np.load(path) as z:
            logger.info("loaded %s", path)
            return {k: z[k] for k in z.files}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        logger.warning("ignoring unreadable cache %s: %s", path, exc)
        return None


def _largest_prefix(seed: int, n: int, root: Path) -> tuple[dict[str, np.ndarray] | None, int]:
    """The largest cached split of ``seed`` smaller than ``n``, and its size (0 if none)."""
    sizes = []
    for p in root.glob(cache_path(seed, 0, root).name.replace("_n0_", "_n*_")):
        m = re.search(r"_n(\d+)_", p.name)
        if m and 0 < int(m.group(1)) < n:
            sizes.append(int(m.group(1)))
    for size in sorted(sizes, reverse=True):
        data = _load(cache_path(seed, size, root))
        if data is not None:
            return data, size
    return None, 0
