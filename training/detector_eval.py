"""How well the detector finds VIN lines: threshold choice and held-out evaluation.

Lines match one-to-one, greedily by polygon IoU (``cv2.intersectConvexConvex``
on the quads, so rotated lines are judged on their own outline, not on
their bounding boxes) at IoU >= 0.5.  The held-out evaluation runs the real
runtime path: ``Manifest`` -> ``Detector.detect`` on full-size frames.

Two more numbers put it in context.  ``*_aabb`` matches the axis-aligned
boxes the agent publishes (``quad_box``).  ``oracle_*`` runs the runtime's
post-processing on the perfect target map: a stride-4 map outlines a line
only to about a map pixel, and ``quads_from_map`` doubles the core's height,
so VINs under about 8 detector pixels (24 px in a 1920x1080 frame) cannot
reach polygon IoU 0.5 whatever the network does.  ``area_thickness`` is the
same network under a proposed post-processing change that takes a line's
thickness from its pixel count over its length instead (see
``quads_area_thickness``), which lifts that ceiling.
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agent.vision.detector import (
    SHRINK_ACROSS,
    SHRINK_ALONG,
    STRIDE,
    Detector,
    quads_from_map,
    sigmoid,
)
from agent.vision.geometry import expand_quad, order_quad
from agent.vision.manifest import load_manifest
from agent.vision.runtime import RuntimeConfig
from training.detector_data import map_scenes, prepare
from training.scenes import Scene, render_scene, scene_rng

logger = logging.getLogger(__name__)

IOU_MIN = 0.5
#: VIN height bins in frame pixels for the breakdown.
HEIGHT_BINS = (("lt15", 0.0, 15.0), ("15_30", 15.0, 30.0), ("gt30", 30.0, float("inf")))


def polygon_iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    inter, _ = cv2.intersectConvexConvex(a, b)
    union = abs(cv2.contourArea(a)) + abs(cv2.contourArea(b)) - inter
    return float(inter / union) if union > 0 else 0.0


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of the quads' axis-aligned bounding boxes."""
    (ax0, ay0), (ax1, ay1) = np.min(a, 0), np.max(a, 0)
    (bx0, by0), (bx1, by1) = np.min(b, 0), np.max(b, 0)
    iw, ih = max(0.0, min(ax1, bx1) - max(ax0, bx0)), max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return float(inter / union) if union > 0 else 0.0


def match(
    preds: list[np.ndarray], gts: list[np.ndarray], boxes: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(hit per ground-truth quad, hit per prediction), one-to-one, best IoU first."""
    gt_hit, pred_hit = np.zeros(len(gts), bool), np.zeros(len(preds), bool)
    if not preds or not gts:
        return gt_hit, pred_hit
    iou_fn = box_iou if boxes else polygon_iou
    iou = np.array([[iou_fn(p, g) for g in gts] for p in preds])
    while True:
        i, j = np.unravel_index(int(np.argmax(iou)), iou.shape)
        if iou[i, j] < IOU_MIN:
            return gt_hit, pred_hit
        pred_hit[i], gt_hit[j] = True, True
        iou[i, :], iou[:, j] = -1, -1


def quads_area_thickness(prob: np.ndarray, threshold: float) -> list[np.ndarray]:
    """``quads_from_map`` with the core's thickness measured as pixel count / length.

    minAreaRect's extent + 1 overstates a thin, slightly tilted core by up to a pixel
    (its staircase spans two rows), which the 1/SHRINK_ACROSS growth then doubles.
    """
    mask = (prob >= threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    found = []
    for i in range(1, n):
        count = int(stats[i, cv2.CC_STAT_AREA])
        if count < 4:
            continue
        ys, xs = np.nonzero(labels == i)
        (cx, cy), (w, h), angle = cv2.minAreaRect(np.stack([xs, ys], 1).astype(np.float32))
        w, h = w + 1.0, h + 1.0
        if w >= h:
            h = max(1.0, count / w)
        else:
            w = max(1.0, count / h)
        if max(w, h) / max(min(w, h), 1e-3) < 2.5:
            continue
        quad = order_quad(cv2.boxPoints(((cx, cy), (w, h), angle)))
        found.append(expand_quad(quad, 1 / SHRINK_ALONG - 1, 1 / SHRINK_ACROSS - 1))
    return found


def _covers_ignored(pred: np.ndarray, ignore: list[np.ndarray]) -> bool:
    """A prediction mostly on a VIN-like distractor or an occluded VIN: don't care."""
    area = abs(cv2.contourArea(pred.astype(np.float32)))
    for q in ignore:
        inter, _ = cv2.intersectConvexConvex(pred.astype(np.float32), q.astype(np.float32))
        if area > 0 and inter / area >= 0.5:
            return True
    return False


def pick_threshold(
    logits: np.ndarray,
    quads: np.ndarray,
    owner: np.ndarray,
    frame_h: np.ndarray,
    thresholds: tuple[float, ...] = tuple(np.round(np.arange(0.1, 0.86, 0.05), 2)),
) -> tuple[float, list[dict[str, float]]]:
    """The threshold with the best F1 (recall of VINs >= 15 px, precision of all lines),
    on calibration maps in detector input pixels, through ``quads_from_map``."""
    prob = sigmoid(logits[..., 0])
    table = []
    for t in thresholds:
        tp = n_gt = n_pred = pred_ok = 0
        for i, p in enumerate(prob):
            gts = [quads[k] for k in np.nonzero(owner == i)[0]]
            big = np.array([frame_h[k] >= 15 for k in np.nonzero(owner == i)[0]], bool)
            preds = [(q + 0.5) * STRIDE - 0.5 for q, _ in quads_from_map(p, t)]
            gt_hit, pred_hit = match(preds, gts)
            tp += int((gt_hit & big).sum())
            n_gt += int(big.sum())
            n_pred += len(preds)
            pred_ok += int(pred_hit.sum())
        r, pr = tp / max(n_gt, 1), pred_ok / max(n_pred, 1)
        f1 = 2 * r * pr / max(r + pr, 1e-9)
        table.append({"threshold": float(t), "recall_ge15": r, "precision": pr, "f1": f1})
    best = max(table, key=lambda row: row["f1"])
    return best["threshold"], table


def _scenes(job: tuple[int, int, int]) -> list[Scene]:
    seed, start, stop = job
    return [render_scene(scene_rng(seed, i)) for i in range(start, stop)]


def _rate(hits: list[bool]) -> float | None:
    return float(np.mean(hits)) if hits else None


def evaluate(
    models_dir: Path, seed: int, n: int, workers: int = 2, threads: int = 1, progress: bool = True
) -> dict[str, Any]:
    """Line recall and precision of the shipped detector on ``n`` held-out full-size scenes."""
    detector = Detector(load_manifest(models_dir), RuntimeConfig(num_threads=threads))
    lines: list[dict[str, Any]] = []
    preds: list[dict[str, Any]] = []
    alt_preds: list[bool] = []
    jobs = [(seed, s, min(n, s + 8)) for s in range(0, n, 8)]
    for batch in map_scenes(_scenes, jobs, workers, progress, n):
        for sc in batch:
            found = [d.quad for d in detector.detect(sc.image)]
            gts = [ln.quad for ln in sc.lines]
            gt_hit, pred_hit = match(found, gts)
            x, lb = detector.prepare(sc.image)
            prob = detector.probability_map(x)
            alt = [
                lb.to_frame((q + 0.5) * STRIDE - 0.5)
                for q in quads_area_thickness(prob, detector.threshold)
            ]
            gt_alt, pred_alt = match(alt, gts)
            alt_preds += pred_alt.tolist()
            gt_box, pred_box = match(found, gts, boxes=True)
            _, target, _, _ = prepare(sc)
            perfect = [lb.to_frame((q + 0.5) * STRIDE - 0.5) for q, _ in quads_from_map(target)]
            oracle, _ = match(perfect, gts)
            lines += [
                {"h": ln.height, "rot": sc.rotation, "kind": ln.kind, "hit": bool(hit)}
                | {"box": bool(box), "oracle": bool(orc), "alt": bool(a)}
                for ln, hit, box, orc, a in zip(
                    sc.lines, gt_hit, gt_box, oracle, gt_alt, strict=True
                )
            ]
            preds += [
                {"rot": sc.rotation, "ok": bool(ok), "box": bool(box)}
                | {"dontcare": _covers_ignored(q, sc.ignore)}
                for q, ok, box in zip(found, pred_hit, pred_box, strict=True)
            ]
    strict = [p["ok"] for p in preds]
    lenient = [p["ok"] for p in preds if p["ok"] or not p["dontcare"]]
    ge15 = [ln for ln in lines if ln["h"] >= 15]
    out: dict[str, Any] = {
        "test_seed": seed,
        "n_scenes": n,
        "n_lines": len(lines),
        "iou": f"polygon IoU >= {IOU_MIN}",
        "recall": _rate([ln["hit"] for ln in lines]),
        "recall_ge15": _rate([ln["hit"] for ln in ge15]),
        "precision": _rate(strict),
        "precision_dontcare": _rate(lenient),
        "recall_ge15_aabb": _rate([ln["box"] for ln in ge15]),
        "precision_aabb": _rate([p["box"] for p in preds]),
        "oracle_recall_ge15": _rate([ln["oracle"] for ln in ge15]),
        "oracle_recall_by_height": {},
        "area_thickness": {
            "recall_ge15": _rate([ln["alt"] for ln in ge15]),
            "precision": _rate(alt_preds),
            "recall_by_height": {},
        },
        "false_positives_per_scene": (len(strict) - sum(strict)) / max(n, 1),
        "recall_by_height": {},
        "n_by_height": {},
        "recall_by_rotation": {},
        "precision_by_rotation": {},
        "recall_by_kind": {},
    }
    for name, lo, hi in HEIGHT_BINS:
        hits = [ln["hit"] for ln in lines if lo <= ln["h"] < hi]
        out["recall_by_height"][name] = _rate(hits)
        out["n_by_height"][name] = len(hits)
        oracle = [ln["oracle"] for ln in lines if lo <= ln["h"] < hi]
        out["oracle_recall_by_height"][name] = _rate(oracle)
        alt = [ln["alt"] for ln in lines if lo <= ln["h"] < hi]
        out["area_thickness"]["recall_by_height"][name] = _rate(alt)
    for rot in (0, 90, 180, 270):
        out["recall_by_rotation"][str(rot)] = _rate([ln["hit"] for ln in lines if ln["rot"] == rot])
        out["precision_by_rotation"][str(rot)] = _rate([p["ok"] for p in preds if p["rot"] == rot])
    for kind in sorted({ln["kind"] for ln in lines}):
        out["recall_by_kind"][kind] = _rate([ln["hit"] for ln in lines if ln["kind"] == kind])
    return out


def latency(models_dir: Path, threads: int = 1, repeats: int = 30) -> dict[str, float]:
    """Median milliseconds of one model invocation and of ``detect`` on a 1280x720 frame."""
    detector = Detector(load_manifest(models_dir), RuntimeConfig(num_threads=threads))
    frame = render_scene(scene_rng(0, 0), 1280, 720, 0).image
    prepared, _ = detector.prepare(frame)
    x = prepared[None, :, :, None].astype(detector.model.input_dtype)
    invoke, detect = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        detector.model.invoke(x)
        t1 = time.perf_counter()
        detector.detect(frame)
        t2 = time.perf_counter()
        invoke.append(1000 * (t1 - t0))
        detect.append(1000 * (t2 - t1))
    return {
        "threads": threads,
        "invoke_ms_median": round(statistics.median(invoke), 2),
        "detect_1280x720_ms_median": round(statistics.median(detect), 2),
    }
