"""Synthetic camera frames with VIN lines in them, for training and testing the detector.

    scene = render_scene(np.random.default_rng(7))
    scene.image               # BGR uint8, 640x480 .. 1920x1080, sometimes portrait
    scene.lines[0].quad       # (4, 2) TL, TR, BR, BL of the 17 characters, in reading order

    python -m training.scenes --seed 1 --n 200 --out runs/scenes --preview

A scene is a background (car paint, textures, gradients, blurred shapes),
cheap clutter text, plates and barcodes, then carriers: whole labels from
``training.crops`` (rendered with wide margins, so prefixes, context lines
and barcodes come along) or printed sheets of text lines, each warped into
the frame by a perspective transform that also carries the VIN's quad.  The
frame is then photographed (light, blur, noise, JPEG) and sometimes turned
by 90, 180 or 270 degrees as a phone held sideways would store it.

Only VINs are labelled.  VIN-like distractors (``vins.sample_distractor``
strings of 15-19 VIN characters) go to ``Scene.ignore`` with VINs that ended
up occluded, so training can leave them out of the loss.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from agent.vision.geometry import quad_height
from training.carriers import KIND_WEIGHTS, KINDS, weighted_index
from training.scene_parts import (
    NEAR_MISS,
    background,
    barcode,
    clutter_text,
    crop_panel,
    photograph,
    plate_text,
    sheet_line,
    sheet_panel,
)
from training.vins import is_vin_shaped, sample_distractor, sample_vin

logger = logging.getLogger(__name__)

#: scenes-2: the carriers of crops-2 (more serif faces).
GENERATOR_VERSION = "scenes-2"
_SIZES = ((640, 480), (800, 600), (1024, 768), (1280, 720), (1280, 960), (1600, 900))
_SIZES += ((1920, 1080), (1440, 1080))
_SIZE_WEIGHTS = (0.14, 0.08, 0.1, 0.22, 0.1, 0.08, 0.18, 0.1)


@dataclass
class Line:
    """One labelled VIN: its text, carrier kind and quad in frame pixels."""

    text: str
    quad: np.ndarray  # (4, 2) float32, TL, TR, BR, BL in the characters' reading direction
    kind: str

    @property
    def height(self) -> float:
        return quad_height(self.quad)


@dataclass
class Scene:
    """A BGR frame, its VIN lines, and regions a detector is neither rewarded nor blamed for."""

    image: np.ndarray
    lines: list[Line]
    ignore: list[np.ndarray] = field(default_factory=list)
    rotation: int = 0  # clockwise degrees the whole photo was turned by


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of scene ``index`` of a seed: any subset renders the same scenes."""
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def is_near_miss(text: str) -> bool:
    """A distractor a detector cannot tell from a VIN by its look (wrong length or I/O/Q)."""
    return bool(NEAR_MISS.match(text)) and not is_vin_shaped(text)


def frame_size(rng: np.random.Generator) -> tuple[int, int]:
    if rng.random() < 0.7:
        w, h = _SIZES[weighted_index(rng, _SIZE_WEIGHTS)]
    else:
        h = int(rng.uniform(480, 1080))
        w = int(min(1920, h * rng.uniform(1.25, 1.85)))
    return (h, w) if rng.random() < 0.1 else (w, h)


class _Canvas:
    """The frame being composed, and the quads nothing may be pasted over any more."""

    def __init__(self, img: np.ndarray) -> None:
        self.img = img
        self.h, self.w = img.shape[:2]
        self.protected: list[np.ndarray] = []

    def place(
        self,
        rng: np.random.Generator,
        panel: np.ndarray,
        quad: np.ndarray,
        target_h: float,
        keep: list[np.ndarray],
    ) -> tuple[np.ndarray, list[np.ndarray]] | None:
        """Warp ``panel`` in so ``quad`` is ``target_h`` high and inside the frame.

        Returns ``quad`` and the ``keep`` quads in frame pixels, all of them
        protected from later panels, or None when no free spot was found.
        """
        ph, pw = panel.shape[:2]
        corners = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32)
        qh = quad_height(quad)
        u = rng.random()
        angle = rng.normal(0, 6) if u < 0.75 else rng.uniform(-60, 60) if u < 0.9 else 0.0
        angle = np.deg2rad(rng.uniform(-180, 180) if u >= 0.97 else angle)
        scale = target_h / max(qh, 1.0)
        cx, cy = quad.mean(0)
        span = float(max(pw, ph)) * scale
        tilt = np.clip(rng.normal(0, 0.12, 2), -0.35, 0.35) / span
        cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
        base = np.array([[cos, -sin, 0], [sin, cos, 0], [tilt[0], tilt[1], 1]])
        base = base @ np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]])
        q0 = cv2.perspectiveTransform(quad[None].astype(np.float64), base)[0]
        lo, hi = q0.min(0), q0.max(0)
        room = np.array([self.w, self.h]) - 6 - (hi - lo)
        if room.min() < 0:
            # A close-up longer than the frame: shrink it to fit.
            shrink = float(np.min((np.array([self.w, self.h]) - 6) / (hi - lo))) * 0.98
            base = np.diag([shrink, shrink, 1.0]) @ base
            q0, lo, hi = q0 * shrink, lo * shrink, hi * shrink
        for _ in range(12):
            t = np.array([rng.uniform(3 - lo[0], self.w - 3 - hi[0]), 0.0])
            t[1] = rng.uniform(3 - lo[1], self.h - 3 - hi[1])
            hom = np.array([[1, 0, t[0]], [0, 1, t[1]], [0, 0, 1]]) @ base
            outline = cv2.perspectiveTransform(corners[None].astype(np.float64), hom)[0]
            if not any(_overlap(outline, p) > 0 for p in self.protected):
                break
        else:
            return None
        self._paste(rng, panel, hom, outline)
        placed = (q0 + t).astype(np.float32)
        kept = [
            cv2.perspectiveTransform(k[None].astype(np.float64), hom)[0].astype(np.float32)
            for k in keep
        ]
        self.protected += [placed, *kept]
        return placed, kept

    def _paste(
        self, rng: np.random.Generator, panel: np.ndarray, hom: np.ndarray, outline: np.ndarray
    ) -> None:
        x0, y0 = np.maximum(np.floor(outline.min(0)) - 12, 0).astype(int)
        x1, y1 = np.minimum(np.ceil(outline.max(0)) + 12, (self.w, self.h)).astype(int)
        if x1 <= x0 or y1 <= y0:
            return
        m = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]]) @ hom
        size = (int(x1 - x0), int(y1 - y0))
        warped = cv2.warpPerspective(panel, m, size, flags=cv2.INTER_LINEAR)
        ones = np.ones(panel.shape[:2], np.float32)
        alpha = cv2.warpPerspective(ones, m, size, flags=cv2.INTER_LINEAR)
        roi = self.img[y0:y1, x0:x1]
        if rng.random() < 0.4:
            # A soft drop shadow: labels and plates stand off their surface.
            d = rng.normal(0, 4, 2)
            shift = np.float32([[1, 0, d[0]], [0, 1, d[1]]])
            sh = cv2.GaussianBlur(cv2.warpAffine(alpha, shift, size), (0, 0), rng.uniform(1, 6))
            roi *= (1 - float(rng.uniform(0.2, 0.6)) * sh)[..., None]
        if rng.random() < 0.5:
            alpha = cv2.GaussianBlur(alpha, (0, 0), rng.uniform(0.3, 1.2))
        roi += alpha[..., None] * (warped - roi)


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    area, _ = cv2.intersectConvexConvex(a.astype(np.float32), b.astype(np.float32))
    return float(area)


def _vin_height(rng: np.random.Generator, w: int) -> float:
    """Cap height in frame pixels: distant views of 8-22 px up to close-ups filling the width."""
    if rng.random() < 0.3:
        return float(rng.uniform(8, 22))
    top = max(24.0, 0.9 * w / 13)
    return float(np.exp(rng.uniform(np.log(16), np.log(top))))


def render_scene(
    rng: np.random.Generator,
    width: int | None = None,
    height: int | None = None,
    rotation: int | None = None,
    n_vins: int | None = None,
) -> Scene:
    """One synthetic frame; every argument left None is drawn from ``rng``."""
    if rotation is None:
        rotation = (0, 90, 180, 270)[weighted_index(rng, (0.7, 0.1, 0.1, 0.1))]
    if width is None or height is None:
        width, height = frame_size(rng)
    w, h = (height, width) if rotation in (90, 270) else (width, height)
    if n_vins is None:
        n_vins = weighted_index(rng, (0.12, 0.68, 0.14, 0.06))
    canvas = _Canvas(background(rng, w, h))
    for _ in range(int(rng.integers(2, 12))):
        clutter_text(rng, canvas.img)
    for _ in range(int(rng.integers(0, 3))):
        barcode(rng, canvas.img)

    lines: list[Line] = []
    ignore: list[np.ndarray] = []
    others = ["crop"] * int(rng.integers(0, 3)) + ["sheet"] * int(rng.integers(0, 3))
    others += ["plate"] * int(rng.random() < 0.3)
    # VINs first: they claim free space before distractors do, which may then
    # overlap their panels but never their text.
    for job in ["vin"] * n_vins + list(rng.permutation(others)):
        target = _vin_height(rng, w) if job == "vin" else float(rng.uniform(8, 50))
        cap = float(np.clip(target * rng.uniform(1.0, 1.25), 8, 56))
        kind = KINDS[weighted_index(rng, KIND_WEIGHTS)]
        text = sample_vin(rng) if job == "vin" else ""
        if job == "crop" or (job == "vin" and rng.random() < 0.75):
            text = text or sample_distractor(rng)
            panel, quad = crop_panel(rng, text, kind, cap)
            keep = [quad] if is_near_miss(text) else []
        elif job == "plate":
            panel, quad = crop_panel(rng, plate_text(rng), "metal_plate", cap)
            keep = []
        else:
            if job == "vin":
                kind = "document" if rng.random() < 0.6 else "screen"
            texts = [sheet_line(rng) for _ in range(int(rng.integers(1, 6)))]
            main = int(rng.integers(0, len(texts) + 1)) if text else 0
            if text:
                texts.insert(main, text)
            panel, quads = sheet_panel(rng, cap, texts, main)
            quad = quads[main]
            keep = [q for t, q in zip(texts, quads, strict=True) if is_near_miss(t)]
        placed = canvas.place(rng, panel, quad.astype(np.float32), target, keep)
        if placed is None and job == "vin":
            placed = canvas.place(rng, panel, quad.astype(np.float32), 0.6 * target, keep)
        if placed is None:
            continue
        if job == "vin":
            lines.append(Line(text, placed[0], kind))
        ignore.extend(placed[1])
    _occlude(rng, canvas, lines, ignore)
    image = photograph(rng, canvas.img)
    image, lines, ignore = _rotate(image, lines, ignore, rotation)
    return Scene(image, lines, ignore, rotation)


def _occlude(
    rng: np.random.Generator, canvas: _Canvas, lines: list[Line], ignore: list[np.ndarray]
) -> None:
    """Sometimes a hand or an object in front; VINs it covers noticeably become unlabelled."""
    if not lines or rng.random() > 0.08:
        return
    target = lines[int(rng.integers(len(lines)))].quad
    c = target[int(rng.integers(4))] + rng.normal(0, np.ptp(target[:, 1]) + 4, 2)
    r = rng.uniform(0.5, 3) * (np.linalg.norm(target[3] - target[0]) + 4)
    pts = c + rng.normal(0, r, (8, 2))
    hull = cv2.convexHull(pts.astype(np.float32))[:, 0]
    colour = [float(v) for v in rng.uniform(0, 1, 3)]
    cv2.fillPoly(canvas.img, [np.round(hull * 4).astype(np.int32)], colour, cv2.LINE_AA, 2)
    for line in list(lines):
        area = cv2.contourArea(line.quad)
        if _overlap(hull, line.quad) > 0.05 * area:
            lines.remove(line)
            ignore.append(line.quad)


def _rotate(
    image: np.ndarray, lines: list[Line], ignore: list[np.ndarray], rotation: int
) -> tuple[np.ndarray, list[Line], list[np.ndarray]]:
    """Turn the photo clockwise; quads keep their corner order, which follows the text."""
    if rotation == 0:
        return image, lines, ignore
    h, w = image.shape[:2]
    code = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}

    def move(q: np.ndarray) -> np.ndarray:
        x, y = q[:, 0], q[:, 1]
        if rotation == 90:
            return np.stack([h - 1 - y, x], 1).astype(np.float32)
        if rotation == 180:
            return np.stack([w - 1 - x, h - 1 - y], 1).astype(np.float32)
        return np.stack([y, w - 1 - x], 1).astype(np.float32)

    out = cv2.rotate(image, code[rotation])
    return out, [Line(ln.text, move(ln.quad), ln.kind) for ln in lines], [move(q) for q in ignore]


def draw_quads(image: np.ndarray, quads: list[np.ndarray], colour: tuple = (0, 0, 255)) -> None:
    """Outline quads in place, with a dot on the first (top-left in reading order) corner."""
    t = max(1, round(max(image.shape[:2]) / 500))
    for q in quads:
        cv2.polylines(image, [np.round(q).astype(np.int32)], True, colour, t, cv2.LINE_AA)
        cv2.circle(image, tuple(int(v) for v in np.round(q[0])), 3 * t, (0, 255, 0), -1)


def contact_sheet(scenes: list[Scene], cols: int = 4, tile: int = 400) -> np.ndarray:
    """Scenes scaled into ``tile`` x ``tile`` cells, VIN quads red and ignored quads blue."""
    rows = -(-len(scenes) // cols)
    sheet = np.full((rows * (tile + 4), cols * (tile + 4), 3), 255, np.uint8)
    for i, sc in enumerate(scenes):
        img = sc.image.copy()
        draw_quads(img, [ln.quad for ln in sc.lines])
        draw_quads(img, sc.ignore, (255, 0, 0))
        s = tile / max(img.shape[:2])
        small = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        r, c = divmod(i, cols)
        sheet[r * (tile + 4) :][: small.shape[0], c * (tile + 4) :][:, : small.shape[1]] = small
    return sheet


#: (width, height, rotation, VINs) of the scenes written with --showcase (None: drawn as
#: usual), so a small sample set shows the extremes (full HD, 90/180/270-degree photos,
#: two and three VINs, none) in frames small enough to keep the JPEGs light.
SHOWCASE = (
    (1920, 1080, 0, 1),
    (800, 600, 90, 1),
    (1024, 768, 180, 1),
    (1280, 720, 0, 2),
    (640, 480, 270, 1),
    (800, 600, None, 0),
    (480, 640, None, None),
    (1024, 768, None, None),
    (960, 540, None, None),
    (640, 480, None, 3),
    (800, 600, None, None),
    (1024, 576, None, None),
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.scenes", description=__doc__)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--quality", type=int, default=90, help="JPEG quality of the written frames")
    ap.add_argument("--preview", action="store_true", help="also write preview.jpg with quads")
    ap.add_argument(
        "--showcase", action="store_true", help="take sizes, rotations, VIN counts from SHOWCASE"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    scenes, quads = [], {}
    t0 = time.perf_counter()
    with open(args.out / "labels.csv", "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["file", "vin", "kind"])
        for i in range(args.n):
            plan = SHOWCASE[i % len(SHOWCASE)] if args.showcase else (None,) * 4
            sc = render_scene(scene_rng(args.seed, i), *plan)
            name = f"scene_{i:04d}.jpg"
            cv2.imwrite(str(args.out / name), sc.image, [cv2.IMWRITE_JPEG_QUALITY, args.quality])
            out.writerows([name, ln.text, ln.kind] for ln in sc.lines)
            if not sc.lines:
                out.writerow([name, "", ""])
            quads[name] = [
                {"vin": ln.text, "quad": np.round(ln.quad, 2).tolist()} for ln in sc.lines
            ]
            if args.preview:
                scenes.append(sc)
    (args.out / "quads.json").write_text(json.dumps(quads, indent=1) + "\n")
    if args.preview:
        cv2.imwrite(
            str(args.out / "preview.jpg"),
            contact_sheet(scenes, tile=320),
            [cv2.IMWRITE_JPEG_QUALITY, 85],
        )
    logger.info("wrote %d scenes to %s in %.1f s", args.n, args.out, time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
