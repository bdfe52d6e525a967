"""Train, quantise, calibrate and ship the VIN recognizer.

    python -m training.recognizer --out models            # the shipped model
    python -m training.recognizer --tiny --out /tmp/m     # pipeline smoke test

Data comes from ``training.crops`` (generated on the fly from seeds and
cached); three disjoint seeds give training, calibration and test sets.
Everything that produced the model goes into its manifest entry.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from agent.vin import ALPHABET
from agent.vision.calibration import expected_calibration_error
from agent.vision.decoding import decode
from agent.vision.recognizer import INPUT_HEIGHT, INPUT_WIDTH, softmax
from training.calibrate import fit_calibrator
from training.export import tflite_runner, to_int8_tflite, write_model

logger = logging.getLogger(__name__)

DEFAULT_MIN_CONFIDENCE = 0.5


def load_split(
    seed: int, n: int, workers: int, cache_dir: Path | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from training import dataset

    if cache_dir is None:
        return dataset.make_arrays(seed, n, workers=workers, height=INPUT_HEIGHT, width=INPUT_WIDTH)
    return dataset.load_or_make(
        seed, n, workers=workers, height=INPUT_HEIGHT, width=INPUT_WIDTH, cache_dir=cache_dir
    )


def labels_to_text(y: np.ndarray) -> list[str]:
    return ["".join(ALPHABET[i] for i in row) for row in y]


def evaluate_logits(
    logits: np.ndarray, truth: list[str], calibrator: Any | None = None
) -> dict[str, Any]:
    """Exact/char accuracy after constrained decoding, and calibration metrics."""
    probs = softmax(logits)
    decoded = [decode(p, "auto", k=5) for p in probs]
    exact = np.array([d.vin == t for d, t in zip(decoded, truth, strict=True)])
    raw_exact = np.array([d.raw == t for d, t in zip(decoded, truth, strict=True)])
    chars = np.mean(
        [
            sum(a == b for a, b in zip(d.vin, t, strict=True)) / 17
            for d, t in zip(decoded, truth, strict=True)
        ]
    )
    out: dict[str, Any] = {
        "n": len(truth),
        "exact": float(exact.mean()),
        "exact_unconstrained": float(raw_exact.mean()),
        "char_accuracy": float(chars),
        "decoded": decoded,
    }
    if calibrator is not None:
        conf = np.array([calibrator.confidence(d) for d in decoded])
        published = conf >= DEFAULT_MIN_CONFIDENCE
        out["ece"] = expected_calibration_error(conf, exact)
        out["published"] = float(published.mean())
        out["wrong_published"] = float((published & ~exact).mean())
        out["min_confidence"] = DEFAULT_MIN_CONFIDENCE
    return out


def train(args: argparse.Namespace) -> dict[str, Any]:
    import tensorflow as tf

    from training.crops import GENERATOR_VERSION
    from training.recognizer_model import build_model

    tf.keras.utils.set_random_seed(args.seed)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    cache = None if args.no_cache else args.cache_dir

    t0 = time.time()
    x_train, y_train, _ = load_split(args.seed, args.n_train, args.workers, cache)
    x_cal, y_cal, _ = load_split(args.calib_seed, args.n_calib, args.workers, cache)
    x_test, y_test, kinds_test = load_split(args.test_seed, args.n_test, args.workers, cache)
    t_data = time.time() - t0
    logger.info(
        "data ready in %.0f s: train %d, calib %d, test %d",
        t_data,
        len(x_train),
        len(x_cal),
        len(x_test),
    )

    model = build_model(INPUT_HEIGHT, INPUT_WIDTH, width_mult=args.width_mult)
    steps_per_epoch = max(1, len(x_train) // args.batch)
    schedule = tf.keras.optimizers.schedules.CosineDecay(
        args.lr, decay_steps=steps_per_epoch * args.epochs, alpha=0.02, warmup_target=None
    )
    model.compile(
        optimizer=tf.keras.optimizers.AdamW(schedule, weight_decay=1e-4),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )

    def augment(x: Any, y: Any) -> tuple[Any, Any]:
        # Cheap photometric jitter on top of the generator's rendering variety.
        x = tf.cast(x, tf.float32)
        gain = tf.random.uniform([], 0.7, 1.3)
        bias = tf.random.uniform([], -30.0, 30.0)
        x = tf.clip_by_value(x * gain + bias, 0.0, 255.0)
        return x[..., None], y

    ds = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(min(len(x_train), 50_000), seed=args.seed)
        .map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(args.batch, drop_remainder=True)
        .prefetch(4)
    )
    val = (x_cal[:2000, ..., None].astype(np.float32), y_cal[:2000])
    deadline = time.time() + args.time_budget_min * 60

    class Budget(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if time.time() > deadline:
                logger.warning("time budget reached; stopping training early")
                self.model.stop_training = True

    t1 = time.time()
    hist = model.fit(
        ds,
        epochs=args.epochs,
        validation_data=val,
        callbacks=[Budget()],
        verbose=2 if not args.tiny else 0,
    )
    t_train = time.time() - t1
    epochs_done = len(hist.history["loss"])

    float_logits = model.predict(x_test[..., None].astype(np.float32), batch_size=256, verbose=0)
    truth_test = labels_to_text(y_test)
    float_metrics = evaluate_logits(float_logits, truth_test)

    rep = x_train[
        np.random.default_rng(args.seed).choice(len(x_train), min(300, len(x_train)), replace=False)
    ][..., None]
    content = to_int8_tflite(model, rep)
    run = tflite_runner(content, threads=args.threads)
    cal_eval = evaluate_logits(run(x_cal[..., None]), labels_to_text(y_cal))
    calibrator, cal_fit = fit_calibrator(cal_eval["decoded"], labels_to_text(y_cal))
    int8 = evaluate_logits(run(x_test[..., None]), truth_test, calibrator)

    by_kind: dict[str, float] = {}
    for kind in sorted(set(kinds_test)):
        idx = [i for i, k in enumerate(kinds_test) if k == kind]
        by_kind[kind] = float(np.mean([int8["decoded"][i].vin == truth_test[i] for i in idx]))

    metrics = {
        "test_seed": args.test_seed,
        "n_test": len(truth_test),
        "float_exact": float_metrics["exact"],
        "int8_exact": int8["exact"],
        "int8_exact_unconstrained": int8["exact_unconstrained"],
        "int8_char_accuracy": int8["char_accuracy"],
        "int8_drop_points": 100 * (float_metrics["exact"] - int8["exact"]),
        "ece": int8["ece"],
        "published_at_min_confidence": int8["published"],
        "wrong_published_at_min_confidence": int8["wrong_published"],
        "min_confidence": DEFAULT_MIN_CONFIDENCE,
        "exact_by_kind": by_kind,
        "calibration_fit": cal_fit,
    }
    training_info = {
        "command": "python -m training.recognizer " + shlex.join(sys.argv[1:]),
        "seed": args.seed,
        "calib_seed": args.calib_seed,
        "n_train": len(x_train),
        "n_calib": len(x_cal),
        "epochs_run": epochs_done,
        "batch": args.batch,
        "generator_version": GENERATOR_VERSION,
        "wall_time_s": round(time.time() - t0, 1),
        "train_time_s": round(t_train, 1),
        "data_time_s": round(t_data, 1),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {args.threads} TF threads",
        "tensorflow": tf.__version__,
        "final_loss": float(hist.history["loss"][-1]),
        "final_val_accuracy": float(hist.history.get("val_accuracy", [float("nan")])[-1]),
    }
    entry = {
        "version": args.version,
        "input": {
            "shape": [1, INPUT_HEIGHT, INPUT_WIDTH, 1],
            "dtype": "uint8",
            "layout": "gray, stretched",
        },
        "output": {"shape": [1, 17, 33], "kind": "logits"},
        "alphabet": ALPHABET,
        "calibration": calibrator.as_manifest(),
        "training": training_info,
        "metrics": metrics,
    }
    write_model(Path(args.out), "recognizer", content, entry)
    logger.info("metrics: %s", {k: v for k, v in metrics.items() if k != "exact_by_kind"})
    logger.info("exact by kind: %s", by_kind)
    return metrics


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--out", type=Path, default=Path("models"), help="models directory to write into"
    )
    p.add_argument("--seed", type=int, default=1, help="training data and init seed")
    p.add_argument("--calib-seed", type=int, default=2, help="held-out calibration data seed")
    p.add_argument(
        "--test-seed", type=int, default=3, help="held-out test data seed (never trained on)"
    )
    p.add_argument("--n-train", type=int, default=150_000)
    p.add_argument("--n-calib", type=int, default=8_000)
    p.add_argument("--n-test", type=int, default=5_000)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--width-mult", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="data generation processes")
    p.add_argument(
        "--time-budget-min", type=float, default=75.0, help="stop training after this long"
    )
    p.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "vin-agent")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--version", default="1.0.0", help="model version written to the manifest")
    p.add_argument("--tiny", action="store_true", help="a few steps on little data (CI smoke test)")
    args = p.parse_args(argv)
    if args.tiny:
        args.n_train, args.n_calib, args.n_test = 256, 64, 64
        args.epochs, args.batch, args.width_mult = 1, 32, 0.25
        args.no_cache = True
        args.version = "0.0.0-tiny"
    return args


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
