"""Plain printed VINs from a second, deliberately different generator: evaluation only.

    python -m benchmarks.plain --out runs/plain --n 300 --seed 1
    vin-agent eval runs/plain

``training/`` renders its carriers with OpenCV and FreeType on generated
backgrounds; the models never see anything else, so a score on its own
scenes says little about text drawn another way.  This renders with
Pillow: a VIN (after ``VIN``, ``VIN:``, ``V.I.N.`` or nothing) in a random
installed font, with a few other label lines around it, dark on light or
light on dark, slightly tilted, blurred, noisy and JPEG-compressed.  It is
never used for training; it is the nearest stand-in here for the outside
evaluation's "scenes from other generators".

Writes ``labels.csv`` (``file``, ``vin``, ``kind``) and ``quads.json`` like
``training.scenes``.  Needs Pillow (the ``bench`` or ``train`` extra).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import cv2
import numpy as np

from training.fonts import discover
from training.vins import sample_vin

SIZES = ((640, 480), (800, 600), (1024, 768), (1280, 720), (1600, 1200), (1920, 1080))
PREFIXES = ("", "VIN ", "VIN: ", "V.I.N. ", "VIN# ")
OTHER_LINES = (
    "MFD BY GENERAL MOTORS LLC 06/18",
    "GVWR 2812 KG (6200 LB)",
    "THIS VEHICLE CONFORMS TO ALL APPLICABLE U.S. FEDERAL MOTOR VEHICLE SAFETY",
    "GAWR FRT 1451 KG (3200 LB) WITH P265/70R17 TIRES",
    "TYPE: MPV   PAINT: GAZ   TRIM: H0U",
    "CERTIFICATE OF TITLE   ODOMETER 48213 MILES",
    "MODEL 2019 SILVERADO 1500 LT",
)


def _font(rng: np.random.Generator, fonts: list[Path], px: int) -> object:
    from PIL import ImageFont

    for _ in range(20):
        path = fonts[int(rng.integers(len(fonts)))]
        try:
            return ImageFont.truetype(str(path), px)
        except OSError:
            continue
    return ImageFont.load_default()


def render(rng: np.random.Generator, fonts: list[Path]) -> tuple[np.ndarray, str, np.ndarray]:
    """One BGR image, its VIN and the VIN's quad (TL, TR, BR, BL) in pixels."""
    from PIL import Image, ImageDraw

    w, h = SIZES[int(rng.integers(len(SIZES)))]
    dark_on_light = rng.random() < 0.7
    paper = int(rng.integers(150, 256)) if dark_on_light else int(rng.integers(0, 90))
    ink = int(rng.integers(0, 80)) if dark_on_light else int(rng.integers(170, 256))
    tint = rng.integers(-25, 26, 3)
    canvas = Image.new("L", (w, h), paper)
    draw = ImageDraw.Draw(canvas)
    px = int(rng.integers(14, max(16, min(64, w // 22))))
    font = _font(rng, fonts, px)
    vin = sample_vin(rng)
    prefix = PREFIXES[int(rng.integers(len(PREFIXES)))]
    x0 = int(rng.integers(10, max(11, w // 3)))
    y0 = int(rng.integers(px * 2, max(px * 2 + 1, h - px * 4)))
    start = x0 + int(draw.textlength(prefix, font=font))
    draw.text((x0, y0), prefix, fill=ink, font=font)
    draw.text((start, y0), vin, fill=ink, font=font)
    box = draw.textbbox((start, y0), vin, font=font)
    step = int(px * rng.uniform(1.4, 2.4))
    for k in (-2, -1, 1, 2, 3):
        if rng.random() < 0.6:
            line = OTHER_LINES[int(rng.integers(len(OTHER_LINES)))]
            draw.text((x0, y0 + k * step), line, fill=ink, font=font)
    gray = np.asarray(canvas, np.float32)
    # Tilt about the VIN's centre and carry its corners along.
    left, top, right, bottom = box
    quad = np.array([[left, top], [right, top], [right, bottom], [left, bottom]], np.float32)
    cx, cy = quad.mean(axis=0)
    m = cv2.getRotationMatrix2D((float(cx), float(cy)), float(rng.uniform(-6, 6)), 1.0)
    gray = cv2.warpAffine(gray, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    quad = (np.hstack([quad, np.ones((4, 1), np.float32)]) @ m.T).astype(np.float32)
    # Uneven light, blur, noise, JPEG.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    gray = gray * (1 + 0.25 * rng.uniform(-1, 1) * (xx / w - 0.5)) + rng.uniform(-20, 20) * (yy / h)
    sigma = float(rng.choice([0, 0, 0.6, 1.0, 1.6]))
    if sigma:
        gray = cv2.GaussianBlur(gray, (0, 0), sigma)
    gray = gray + rng.normal(0, rng.uniform(0, 8), gray.shape)
    bgr = np.clip(gray[..., None] + tint[None, None, :], 0, 255).astype(np.uint8)
    _, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(60, 96))])
    return cv2.imdecode(jpeg, cv2.IMREAD_COLOR), vin, quad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    fonts = [Path(f.path) for f in discover()]
    args.out.mkdir(parents=True, exist_ok=True)
    rows, quads = [], {}
    for i in range(args.n):
        rng = np.random.default_rng(np.random.SeedSequence([args.seed, i]))
        image, vin, quad = render(rng, fonts)
        name = f"plain_{i:04d}.jpg"
        cv2.imwrite(str(args.out / name), image)
        rows.append((name, vin, "plain"))
        quads[name] = [{"vin": vin, "quad": quad.tolist()}]
    with (args.out / "labels.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "vin", "kind"])
        writer.writerows(rows)
    (args.out / "quads.json").write_text(json.dumps(quads))
    print(f"wrote {args.n} images to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
