"""Arrays of synthetic VIN crops for training, cached by everything that shapes them.

    python -m training.dataset --seed 1 --n 2000 --out runs/data --preview 64
    python -m training.dataset --seed 1 --n 200 --samples-dir runs/samples

Generation is split into fixed-size chunks whose seeds come from
``np.random.SeedSequence(seed).spawn``; a chunk's output depends only on its
seed, so the arrays are identical whatever the number of workers.
"""

from __future__ import annotations

import argparse
import csv
import logging
import multiprocessing as mp
import os
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from training.crops import GENERATOR_VERSION, preprocess, render_crop
from training.vins import (
    MAX_TARGET_CHARS,
    TARGET_ALPHABET,
    readable_chars,
    sample_negative_text,
)

logger = logging.getLogger(__name__)

#: Crops per seed chunk.  Part of what fixes the output, like the seed.
CHUNK = 256
_INDEX = {c: i for i, c in enumerate(TARGET_ALPHABET)}


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vin-agent"


def encode(vin: str) -> np.ndarray:
    """Class indices (into the VIN alphabet) of a 17-character VIN."""
    return np.array([_INDEX[c] for c in vin], np.int32)


def encode_padded(text: str, width: int = MAX_TARGET_CHARS) -> np.ndarray:
    """The CTC target of any printed line (``vins.readable_chars``), padded with -1."""
    idx = [_INDEX[c] for c in readable_chars(text)][:width]
    return np.array(idx + [-1] * (width - len(idx)), np.int32)


def pad_labels(y: np.ndarray, width: int = MAX_TARGET_CHARS) -> np.ndarray:
    """17-wide VIN labels widened with -1 so they stack with negatives' targets."""
    out = np.full((len(y), width), -1, np.int32)
    out[:, : y.shape[1]] = y
    return out


def _init_worker() -> None:
    # One OpenCV thread per worker process: the workers already fill the cores.
    cv2.setNumThreads(1)


def _chunk(
    args: tuple[np.random.SeedSequence, int, int, int, bool],
) -> tuple[np.ndarray, list[str], list[str]]:
    seq, n, height, width, negatives = args
    rng = np.random.default_rng(seq)
    x = np.empty((n, height, width), np.uint8)
    vins, kinds = [], []
    for i in range(n):
        img, vin, kind = render_crop(rng, sample_negative_text(rng) if negatives else None)
        x[i] = preprocess(img, height, width)
        vins.append(vin)
        kinds.append(kind)
    return x, vins, kinds


def _progress(done: int, total: int, t0: float) -> None:
    frac = done / max(total, 1)
    bar = "#" * int(30 * frac)
    rate = done / max(time.perf_counter() - t0, 1e-9)
    sys.stderr.write(f"\r[{bar:<30}] {done}/{total} {rate:.0f} crops/s")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _jobs(
    seed: int, n: int, height: int, width: int, chunk: int, negatives: bool = False
) -> Iterator[tuple]:
    sizes = [min(chunk, n - i) for i in range(0, n, chunk)]
    # Negatives of a seed are their own stream: adding them leaves its VIN crops unchanged.
    root = np.random.SeedSequence([seed, 1] if negatives else seed)
    for seq, size in zip(root.spawn(len(sizes)), sizes, strict=True):
        yield seq, size, height, width, negatives


def make_samples(
    seed: int,
    n: int,
    workers: int = 2,
    height: int = 32,
    width: int = 320,
    progress: bool = True,
    chunk: int = CHUNK,
    negatives: bool = False,
) -> tuple[np.ndarray, list[str], list[str]]:
    """(images n x H x W uint8, VIN strings, kinds), identical for any ``workers``;
    with ``negatives``, lines that are not VINs (``vins.sample_negative_text``)."""
    jobs = list(_jobs(seed, n, height, width, chunk, negatives))
    xs, vins, kinds = [], [], []
    t0 = time.perf_counter()
    done = 0
    pool = None
    if workers > 1 and len(jobs) > 1:
        # spawn, not fork: the caller may already run TensorFlow or OpenCV
        # thread pools, which do not survive a fork.
        pool = mp.get_context("spawn").Pool(min(workers, len(jobs)), initializer=_init_worker)
    try:
        results = pool.imap(_chunk, jobs) if pool else map(_chunk, jobs)
        for x, v, k in results:
            xs.append(x)
            vins += v
            kinds += k
            done += len(v)
            if progress:
                _progress(done, n, t0)
    finally:
        if pool:
            pool.close()
            pool.join()
    x = np.concatenate(xs) if xs else np.empty((0, height, width), np.uint8)
    logger.info("generated %d crops in %.1f s", n, time.perf_counter() - t0)
    return x, vins, kinds


def make_arrays(
    seed: int,
    n: int,
    workers: int = 2,
    height: int = 32,
    width: int = 320,
    progress: bool = True,
    chunk: int = CHUNK,
    negatives: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images n x H x W uint8, labels n x 17 int32 alphabet indices, kinds); negatives'
    labels are ``encode_padded`` targets, n x MAX_TARGET_CHARS."""
    x, texts, kinds = make_samples(seed, n, workers, height, width, progress, chunk, negatives)
    enc, width_y = (encode_padded, MAX_TARGET_CHARS) if negatives else (encode, 17)
    y = np.stack([enc(t) for t in texts]) if texts else np.empty((0, width_y), np.int32)
    return x, y, kinds


def cache_path(
    seed: int,
    n: int,
    height: int = 32,
    width: int = 320,
    cache_dir: Path | str | None = None,
    negatives: bool = False,
) -> Path:
    """Where ``load_or_make`` keeps these arrays; the generator version is in the name."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    # Negatives' targets hold I, O and Q since recognizer 1.4.0, and a quarter of
    # them are VINs with lookalike I, O or Q (_neglook); the suffix keeps earlier
    # caches from being read as current.
    neg = "_neglook" if negatives else ""
    return root / f"{GENERATOR_VERSION}{neg}_s{seed}_n{n}_{height}x{width}.npz"


def load_or_make(
    seed: int,
    n: int,
    workers: int = 2,
    height: int = 32,
    width: int = 320,
    cache_dir: Path | str | None = None,
    progress: bool = True,
    negatives: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``make_arrays`` through an .npz cache keyed by seed, n, size and generator version."""
    path = cache_path(seed, n, height, width, cache_dir, negatives)
    if path.exists():
        try:
            with np.load(path) as z:
                logger.info("loaded %s", path)
                return z["x"], z["y"], [str(k) for k in z["kinds"]]
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            # A truncated file (disk full, killed run) is regenerated, not fatal.
            logger.warning("ignoring unreadable cache %s: %s", path, exc)
    x, y, kinds = make_arrays(seed, n, workers, height, width, progress, negatives=negatives)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, x=x, y=y, kinds=np.array(kinds))
    tmp.replace(path)
    logger.info("cached %s", path)
    return x, y, kinds


def contact_sheet(
    images: list[np.ndarray],
    captions: list[str],
    cols: int = 4,
    tile_h: int = 56,
    tile_w: int = 400,
) -> np.ndarray:
    """A grid of natural-size crops (scaled to fit) with a caption under each."""
    cap_h = 14
    rows = -(-len(images) // cols)
    sheet = np.full((rows * (tile_h + cap_h + 6), cols * (tile_w + 6)), 255, np.uint8)
    for i, (img, text) in enumerate(zip(images, captions, strict=True)):
        r, c = divmod(i, cols)
        y0, x0 = r * (tile_h + cap_h + 6), c * (tile_w + 6)
        s = min(tile_h / img.shape[0], tile_w / img.shape[1])
        size = (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s)))
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        tile = cv2.resize(img, size, interpolation=interp)
        sheet[y0 : y0 + tile.shape[0], x0 : x0 + tile.shape[1]] = tile
        cv2.putText(
            sheet,
            text,
            (x0, y0 + tile_h + cap_h - 2),
            cv2.FONT_HERSHEY_PLAIN,
            0.9,
            0,
            1,
            cv2.LINE_AA,
        )
    return sheet


def _natural(seed: int, n: int, kind: str | None) -> list[tuple[np.ndarray, str, str]]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    return [render_crop(rng, kind=kind) for _ in range(n)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.dataset",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=0, help="crops to generate into the cache")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--height", type=int, default=32)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("runs/dataset"), help="preview directory")
    ap.add_argument("--preview", type=int, default=0, help="crops in a contact sheet PNG")
    ap.add_argument("--kind", default=None, help="preview one carrier kind only")
    ap.add_argument(
        "--samples-dir",
        type=Path,
        default=None,
        help="write --n natural-size PNGs and labels.csv here",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    if args.preview:
        crops = _natural(args.seed, args.preview, args.kind)
        sheet = contact_sheet([c[0] for c in crops], [f"{v} {k}" for _, v, k in crops])
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"preview_s{args.seed}{'_' + args.kind if args.kind else ''}.png"
        cv2.imwrite(str(path), sheet)
        model = [preprocess(c[0], args.height, args.width) for c in crops]
        cv2.imwrite(
            str(path.with_name(path.stem + "_input.png")),
            contact_sheet(model, [c[1] for c in crops], 4, args.height, args.width),
        )
        logger.info("wrote %s", path)
    if args.samples_dir and args.n:
        args.samples_dir.mkdir(parents=True, exist_ok=True)
        with open(args.samples_dir / "labels.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "vin", "kind"])
            for i, (img, vin, kind) in enumerate(_natural(args.seed, args.n, args.kind)):
                name = f"{i:06d}.png"
                cv2.imwrite(str(args.samples_dir / name), img)
                w.writerow([name, vin, kind])
        logger.info("wrote %d samples to %s", args.n, args.samples_dir)
    elif args.n:
        x, _, _ = load_or_make(
            args.seed, args.n, args.workers, args.height, args.width, args.cache_dir
        )
        logger.info(
            "arrays %s at %s",
            x.shape,
            cache_path(args.seed, args.n, args.height, args.width, args.cache_dir),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
