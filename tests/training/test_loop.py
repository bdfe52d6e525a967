"""The shared training loop: schedule shape, budget stop, and that it actually trains."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from training.loop import cosine_lr, jitter_lut


def test_schedule_warms_up_peaks_and_ends_at_the_floor() -> None:
    """A run cut by its time budget must still end annealed: the rate is a function of
    progress alone, rising during warm-up, peaking, then falling to floor * peak at 1."""
    peak = 2e-3
    assert cosine_lr(0.0, peak) < 0.1 * peak
    assert cosine_lr(0.03, peak) == pytest.approx(peak)
    assert cosine_lr(1.0, peak) == pytest.approx(0.02 * peak)
    falling = [cosine_lr(p, peak) for p in np.linspace(0.03, 1.0, 50)]
    assert all(a >= b for a, b in itertools.pairwise(falling))


def test_jitter_changes_pixels_in_place_and_keeps_uint8() -> None:
    """Augmentation writes into the batch it is given; an inverted frame must be inverted."""
    rng = np.random.default_rng(0)
    x = np.tile(np.arange(256, dtype=np.uint8), (4, 2, 1))
    before = x.copy()
    jitter_lut(x, rng, gain=(1.0, 1.0), bias=0.0, invert=1.0)
    assert x.dtype == np.uint8
    np.testing.assert_array_equal(x, 255 - before)


@pytest.mark.slow
def test_loop_reduces_loss_and_stops_at_the_budget() -> None:
    """On a learnable toy problem the loss must fall; with a zero budget no step runs."""
    tf = pytest.importorskip("tensorflow", reason="the train extra is not installed")
    from training import loop

    rng = np.random.default_rng(1)
    w = rng.normal(size=(8, 1)).astype(np.float32)

    def batches():  # type: ignore[no-untyped-def]
        while True:
            x = rng.normal(size=(32, 8)).astype(np.float32)
            yield x, x @ w

    def model():  # type: ignore[no-untyped-def]
        m = tf.keras.Sequential([tf.keras.Input((8,)), tf.keras.layers.Dense(1)])
        m.compile(optimizer=tf.keras.optimizers.Adam(0.05), loss="mse")
        return m

    hist = loop.train(model(), batches(), steps_per_epoch=50, epochs=4, peak_lr=0.05, budget_s=60)
    assert hist.steps == 200 and not hist.budget_hit
    assert hist.loss[-1] < 0.1 * hist.loss[0]

    hist = loop.train(model(), batches(), steps_per_epoch=50, epochs=4, peak_lr=0.05, budget_s=0)
    assert hist.steps == 0 and hist.budget_hit
