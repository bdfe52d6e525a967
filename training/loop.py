"""One training loop for both networks: ``train_on_batch`` under a wall-clock budget.

Why not ``model.fit``: on this CPU Keras' fit ran the detector at 24 frames/s
against 39 for a plain ``train_on_batch`` loop on the same in-memory batches.

Why a time-aware schedule: training here is bounded by minutes, not epochs,
and the speed depends on what else shares the two cores.  The learning rate
follows a warm-up and a cosine decay over ``progress = max(step / steps,
elapsed / budget)``, so it reaches its floor when the budget runs out
whichever comes first; a run cut short by its budget still ends annealed.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

logger = logging.getLogger(__name__)


def cosine_lr(progress: float, peak: float, warmup: float = 0.03, floor: float = 0.02) -> float:
    """Learning rate at ``progress`` in [0, 1]: linear warm-up, then cosine to ``floor * peak``."""
    p = min(max(progress, 0.0), 1.0)
    if p < warmup:
        return peak * max(p / warmup, 0.05)
    t = (p - warmup) / max(1.0 - warmup, 1e-9)
    return peak * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t)))


@dataclass
class History:
    steps: int = 0
    time_s: float = 0.0
    loss: list[float] = field(default_factory=list)  # mean training loss per epoch
    val_loss: list[float] = field(default_factory=list)
    budget_hit: bool = False


def _scalar(value: Any) -> float:
    return float(value[0] if isinstance(value, list | tuple) else value)


def train(
    model: Any,
    batches: Iterator[tuple[np.ndarray, np.ndarray]],
    steps_per_epoch: int,
    epochs: int,
    peak_lr: float,
    budget_s: float,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    log_every: int = 200,
    on_epoch: Callable[[int, Any], None] | None = None,
) -> History:
    """Train a compiled ``model`` (float learning rate) for up to ``epochs`` or ``budget_s``."""
    total = max(1, steps_per_epoch * epochs)
    t0 = time.time()
    hist = History()
    losses: list[float] = []
    for step in range(total):
        progress = max(step / total, (time.time() - t0) / max(budget_s, 1e-9))
        if progress >= 1.0:
            hist.budget_hit = True
            logger.warning("time budget reached after %d of %d steps", step, total)
            break
        model.optimizer.learning_rate = cosine_lr(progress, peak_lr)
        xb, yb = next(batches)
        losses.append(_scalar(model.train_on_batch(xb, yb)))
        hist.steps = step + 1
        if log_every and hist.steps % log_every == 0:
            logger.info(
                "step %d/%d: loss %.4f (last %d), lr %.2e, %.1f samples/s",
                hist.steps,
                total,
                float(np.mean(losses[-log_every:])),
                log_every,
                cosine_lr(progress, peak_lr),
                hist.steps * len(xb) / max(time.time() - t0, 1e-9),
            )
        if hist.steps % steps_per_epoch == 0:
            _end_epoch(model, hist, losses, val, hist.steps // steps_per_epoch, epochs, on_epoch)
            losses = []
    if losses:
        _end_epoch(model, hist, losses, val, hist.steps / steps_per_epoch, epochs, on_epoch)
    hist.time_s = time.time() - t0
    return hist


def _end_epoch(
    model: Any,
    hist: History,
    losses: list[float],
    val: tuple[np.ndarray, np.ndarray] | None,
    epoch: float,
    epochs: int,
    on_epoch: Callable[[int, Any], None] | None,
) -> None:
    hist.loss.append(float(np.mean(losses)))
    if val is not None:
        hist.val_loss.append(_scalar(model.evaluate(*val, batch_size=64, verbose=0)))
    logger.info(
        "epoch %.2f/%d: loss %.4f, val_loss %s",
        epoch,
        epochs,
        hist.loss[-1],
        f"{hist.val_loss[-1]:.4f}" if hist.val_loss else "-",
    )
    if on_epoch is not None:
        on_epoch(int(epoch), model)


def jitter_lut(
    x: np.ndarray, rng: np.random.Generator, gain: tuple[float, float], bias: float, invert: float
) -> None:
    """In-place photometric jitter of a uint8 batch: one 256-entry lookup table per image.

    8 ms per batch of 16 detector frames against 18 ms for the same jitter in float32.
    """
    levels = np.arange(256, dtype=np.float32)
    n = len(x)
    g, b = rng.uniform(*gain, n), rng.uniform(-bias, bias, n)
    inv = rng.random(n) < invert
    for i in range(n):
        lut = np.clip(levels * g[i] + b[i], 0, 255)
        lut = (255 - lut if inv[i] else lut).astype(np.uint8)
        cv2.LUT(x[i], lut, dst=x[i])
