"""A replay clip of vehicles passing a camera, for the quickstart, tests and benchmarks.

    python -m training.clip --seed 11 --vehicles 4 --out samples/clip.avi

Each vehicle is one generated scene with a readable VIN, held for a few
frames with small camera shake and sensor noise, then a few frames of an
empty scene before the next vehicle.  The VINs, in order, go to a JSON file
beside the clip (``clip.json``), so tests know what a run must publish.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import sys
from pathlib import Path

import cv2
import numpy as np

from agent.vision.geometry import quad_axes
from training.scenes import GENERATOR_VERSION, Scene, render_scene

logger = logging.getLogger(__name__)

#: Lines below this cap height are not what a gate camera is installed for.
MIN_LINE_HEIGHT = 18.0
#: Nor are steeply tilted ones: a gate camera is mounted level with the plates and
#: labels it is there to read (whole-frame rotation is the `eval` set's job).
MAX_TILT_DEG = 20.0


def readable_scene(rng: np.random.Generator, width: int, height: int) -> Scene:
    """A scene with exactly one VIN, upright and large enough for a gate camera."""
    for _ in range(200):
        scene = render_scene(rng, width, height, rotation=0, n_vins=1)
        if len(scene.lines) == 1 and _gate_view(scene.lines[0].quad, scene.lines[0].height):
            return scene
    raise RuntimeError("no readable scene in 200 tries; check the generator")


def _gate_view(quad: np.ndarray, height: float) -> bool:
    _, along, _, _ = quad_axes(quad)
    tilt = abs(math.degrees(math.atan2(float(along[1]), float(along[0]))))
    return height >= MIN_LINE_HEIGHT and min(tilt, 180 - tilt) <= MAX_TILT_DEG


def shake(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """The same scene as the next frame would see it: a little shift, zoom and noise."""
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D(
        (w / 2 + rng.normal(0, 6), h / 2 + rng.normal(0, 4)),
        rng.normal(0, 0.4),
        rng.uniform(0.98, 1.02),
    )
    m[:, 2] += rng.normal(0, 4, size=2)
    out = cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    noise = rng.normal(0, 3, out.shape)
    return np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def make_clip(
    out: Path,
    seed: int,
    vehicles: int,
    width: int = 960,
    height: int = 540,
    fps: float = 5.0,
    frames_per_vehicle: int = 5,
    gap_frames: int = 3,
) -> list[str]:
    """Write the clip (MJPG AVI, which every OpenCV build can read) and return its VINs."""
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {out}")
    # Keep the bundled clip small; 75 is still clean for 18 px characters.
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 75)
    vins = []
    try:
        for i in range(vehicles):
            scene = readable_scene(rng, width, height)
            vins.append(scene.lines[0].text)
            for _ in range(frames_per_vehicle):
                writer.write(shake(rng, scene.image))
            empty = render_scene(rng, width, height, rotation=0, n_vins=0).image
            for _ in range(gap_frames):
                writer.write(shake(rng, empty))
            logger.info("vehicle %d/%d: %s", i + 1, vehicles, vins[-1])
    finally:
        writer.release()
    return vins


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--vehicles", type=int, default=4)
    p.add_argument("--out", type=Path, default=Path("samples/clip.avi"))
    p.add_argument("--width", type=int, default=960)
    p.add_argument("--height", type=int, default=540)
    p.add_argument("--fps", type=float, default=5.0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    vins = make_clip(args.out, args.seed, args.vehicles, args.width, args.height, args.fps)
    meta = {
        "vins": vins,
        "fps": args.fps,
        "seed": args.seed,
        "generator_version": GENERATOR_VERSION,
        "command": "python -m training.clip " + shlex.join(sys.argv[1:] if argv is None else argv),
    }
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    logger.info("wrote %s (%d bytes)", args.out, args.out.stat().st_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
