"""Train, quantise, calibrate and evaluate the VIN line detector.

    python -m training.detector --out models                  # the shipped model
    python -m training.detector --tiny --out /tmp/m           # pipeline smoke test (< 1 min)

Scenes come from ``training.scenes`` (seeded, generated in parallel and
cached as letterboxed arrays by ``training.detector_data``).  Three
disjoint seeds give training, calibration (threshold) and test sets; the
test set is judged through the runtime's own ``Detector`` on full frames.

Loss: BCE plus soft dice.  VIN cores cover about 1 % of the map, so BCE
alone is dominated by background and learns to under-fill thin lines; dice
measures overlap relative to the lines' own size and does not care how
much background there is, while BCE keeps per-pixel gradients well-behaved
early in training and on frames with no VIN at all (dice over the batch).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from agent.vision.detector import INPUT_HEIGHT, INPUT_WIDTH, SHRINK_ACROSS, SHRINK_ALONG, STRIDE
from training import detector_data as data
from training import loop
from training.detector_eval import evaluate, latency, pick_threshold
from training.export import init_record, tflite_runner, to_int8_tflite, write_model
from training.loop import jitter_lut

logger = logging.getLogger(__name__)


def make_loss(dice_weight: float = 1.0) -> Any:
    import tensorflow as tf

    def loss(y_true: Any, logits: Any) -> Any:
        target, weight = y_true[..., 0:1], y_true[..., 1:2]
        care = tf.cast(weight > 0, tf.float32)
        bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits)
        bce = tf.reduce_sum(weight * bce) / (tf.reduce_sum(care) + 1.0)
        p = tf.sigmoid(logits) * care
        inter = tf.reduce_sum(p * target)
        dice = 1.0 - (2.0 * inter + 1.0) / (tf.reduce_sum(p) + tf.reduce_sum(target) + 1.0)
        return bce + dice_weight * dice

    return loss


def batches(
    split: dict[str, np.ndarray], batch: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless shuffled batches with cheap augmentation that keeps targets exact.

    A 180-degree turn maps map pixel m to 159 - m exactly (stride 4 divides the
    input), so it is free; gain, offset and polarity flips widen the photometry.
    Mirroring is left out: mirrored text never occurs.
    """
    rng = np.random.default_rng(seed)
    x, y, w = split["x"], split["y"], split["w"]
    n = len(x)
    while True:
        order = rng.permutation(n)
        for s in range(0, n - batch + 1, batch):
            idx = np.sort(order[s : s + batch])
            xb = x[idx]
            yb = np.stack([y[idx], w[idx] / data.WEIGHT_UNIT], -1).astype(np.float32)
            turn = rng.random(batch) < 0.5
            xb[turn] = xb[turn, ::-1, ::-1]
            yb[turn] = yb[turn, ::-1, ::-1]
            jitter_lut(xb, rng, gain=(0.6, 1.3), bias=35, invert=0.15)
            yield xb[..., None].astype(np.float32), yb


def train(args: argparse.Namespace) -> dict[str, Any]:
    import tensorflow as tf

    from training.detector_model import build_model
    from training.scenes import GENERATOR_VERSION

    t0 = time.time()
    tf.keras.utils.set_random_seed(args.seed)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    cache = None if args.no_cache else args.cache_dir

    def split(seed: int, n: int) -> dict[str, np.ndarray]:
        if cache is None:
            return data.make_split(seed, n, args.workers, progress=not args.tiny)
        return data.load_or_make(seed, n, args.workers, cache)

    train_set = split(args.seed, args.n_train)
    cal = split(args.calib_seed, args.n_calib)
    t_data = time.time() - t0
    logger.info(
        "data ready in %.0f s: %d train, %d calib scenes", t_data, args.n_train, args.n_calib
    )

    model = build_model(
        INPUT_HEIGHT, INPUT_WIDTH, width_mult=args.width_mult, deep_mult=args.deep_mult
    )
    if args.init_from and args.init_from.suffix == ".tflite":
        from training.tflite_weights import load_into

        load_into(model, args.init_from, cal["x"][:32, ..., None].astype(np.float32))
    elif args.init_from:
        model.load_weights(args.init_from)
        logger.info("initialised from %s", args.init_from)
    steps = max(1, args.n_train // args.batch)
    model.compile(optimizer=tf.keras.optimizers.AdamW(args.lr, weight_decay=1e-4), loss=make_loss())
    nv = min(64, len(cal["x"]))
    val_x = cal["x"][:nv, ..., None].astype(np.float32)
    val_y = np.stack([cal["y"][:nv], cal["w"][:nv] / data.WEIGHT_UNIT], -1).astype(np.float32)

    def save(epoch: int, m: Any) -> None:
        # Each epoch: a stopped run still leaves weights to chain from or to diagnose.
        if args.save_weights:
            m.save_weights(args.save_weights)

    budget = t0 + 60 * (args.time_budget_min - args.eval_reserve_min) - time.time()
    hist = loop.train(
        model,
        batches(train_set, args.batch, args.seed),
        steps,
        args.epochs,
        args.lr,
        budget,
        val=(val_x, val_y),
        log_every=0 if args.tiny else 100,
        on_epoch=save,
    )
    if args.save_weights:
        save(int(hist.steps // steps), model)
    t_train, done = hist.time_s, hist.steps
    epochs_done = done / steps
    fps = done * args.batch / max(t_train, 1e-9)
    logger.info("trained %.2f epochs in %.0f s (%.1f frames/s)", epochs_done, t_train, fps)

    rng = np.random.default_rng(args.seed)
    rep = train_set["x"][rng.choice(args.n_train, min(200, args.n_train), replace=False)]
    content = to_int8_tflite(model, rep[..., None])
    run = tflite_runner(content, threads=args.threads)
    threshold, table = pick_threshold(
        run(cal["x"][..., None]), cal["quads"], cal["owner"], cal["frame_h"]
    )
    logger.info("threshold %.2f on calibration seed %d", threshold, args.calib_seed)

    training_info = {
        "command": "python -m training.detector " + shlex.join(sys.argv[1:]),
        "seed": args.seed,
        "calib_seed": args.calib_seed,
        "test_seed": args.test_seed,
        "n_train": args.n_train,
        "n_calib": args.n_calib,
        "epochs": args.epochs,
        "epochs_run": round(epochs_done, 2),
        "batch": args.batch,
        "lr": args.lr,
        "width_mult": args.width_mult,
        "deep_mult": args.deep_mult,
        "init_from": init_record(args.init_from, "detector"),
        "loss": "masked BCE + batch soft dice",
        "generator_version": GENERATOR_VERSION,
        "data_time_s": round(t_data, 1),
        "train_time_s": round(t_train, 1),
        "train_frames_per_s": round(fps, 1),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {args.threads} TF threads",
        "tensorflow": tf.__version__,
        "schedule": "AdamW, warm-up + cosine over max(step, time) progress (training.loop)",
        "final_loss": hist.loss[-1],
        "final_val_loss": hist.val_loss[-1],
    }
    entry: dict[str, Any] = {
        "version": args.version,
        "input": {
            "shape": [1, INPUT_HEIGHT, INPUT_WIDTH, 1],
            "dtype": "uint8",
            "layout": "gray, letterboxed, pad 127",
        },
        "output": {
            "shape": [1, INPUT_HEIGHT // STRIDE, INPUT_WIDTH // STRIDE, 1],
            "kind": "logits",
            "stride": STRIDE,
            "shrink_along": SHRINK_ALONG,
            "shrink_across": SHRINK_ACROSS,
        },
        "threshold": threshold,
        "training": training_info,
        "metrics": {"threshold_table": table},
    }
    out = Path(args.out)
    write_model(out, "detector", content, entry)
    metrics = evaluate(out, args.test_seed, args.n_test, args.workers, 1, progress=not args.tiny)
    metrics["latency"] = latency(out, threads=1, repeats=5 if args.tiny else 30)
    metrics["threshold_table"] = table
    training_info["wall_time_s"] = round(time.time() - t0, 1)
    write_model(out, "detector", content, {**entry, "training": training_info, "metrics": metrics})
    logger.info(
        "recall %.3f (>=15 px %.3f), precision %.3f, by height %s, latency %s",
        metrics["recall"] or 0.0,
        metrics["recall_ge15"] or 0.0,
        metrics["precision"] or 0.0,
        metrics["recall_by_height"],
        metrics["latency"],
    )
    return metrics


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m training.detector",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=Path("models"), help="models directory")
    p.add_argument("--seed", type=int, default=11, help="training scenes and init seed")
    p.add_argument("--calib-seed", type=int, default=12, help="threshold calibration scenes")
    p.add_argument("--test-seed", type=int, default=13, help="held-out test scenes")
    p.add_argument("--n-train", type=int, default=6000)
    p.add_argument("--n-calib", type=int, default=400)
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--width-mult", type=float, default=1.0)
    p.add_argument(
        "--deep-mult", type=float, default=1.0, help="extra width at 1/16 and 1/32 resolution"
    )
    p.add_argument(
        "--init-from",
        type=Path,
        help="start from these Keras weights (.weights.h5) or from an exported int8 "
        "detector (.tflite, e.g. the shipped models/detector.tflite)",
    )
    p.add_argument(
        "--save-weights", type=Path, help="also save the Keras weights here (.weights.h5)"
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="scene generation processes")
    p.add_argument(
        "--time-budget-min", type=float, default=25.0, help="whole run incl. data and eval"
    )
    p.add_argument(
        "--eval-reserve-min", type=float, default=3.0, help="budget kept for export and eval"
    )
    p.add_argument("--cache-dir", type=Path, default=data.default_cache_dir())
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--version", default="1.0.0", help="model version written to the manifest")
    p.add_argument("--tiny", action="store_true", help="seconds of everything (CI smoke test)")
    args = p.parse_args(argv)
    if args.tiny:
        args.n_train, args.n_calib, args.n_test = 24, 8, 8
        args.epochs, args.batch, args.width_mult = 1, 4, 0.25
        args.workers, args.no_cache, args.version = 1, True, "0.0.0-tiny"
        if args.out == Path("models"):
            args.out = Path(tempfile.mkdtemp(prefix="vin-detector-tiny-"))
    return args


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = parse_args(argv)
    train(args)
    logger.info("model and manifest in %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
