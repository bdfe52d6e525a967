"""The recognizer network: a small CNN with a CTC head over crop columns.

CTC rather than a fixed 17-slot head, by measurement: the fixed-slot head
(a dense map from 40 columns to 17 slots, as plate readers use on tight
crops) reached 8 % character accuracy after a full epoch here, because VIN
crops come with variable margins and prefixes ("VIN:"), so a character's
column is not tied to its position.  CTC learns alignment-free; the agent
turns its columns into 17 slots (``agent.vision.ctc``).  Only int8-friendly
ops (conv, dense, pooling), so the whole graph quantises.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agent.vin import ALPHABET
from training.vins import TARGET_ALPHABET

#: Output classes: the 33 VIN characters, I, O and Q (``vins.TARGET_ALPHABET``),
#: then the CTC blank.  Models up to 1.3 had 33 + blank (``LEGACY_CLASSES``).
N_CLASSES = len(TARGET_ALPHABET)
LEGACY_CLASSES = len(ALPHABET)
#: Cap of the head's hidden activations, and bound of the output logits.
#: int8 resolves a tensor in 256 steps of its observed range: the unbounded
#: 1.1.0 head reached hidden values of 285 and logits from -518 to +311,
#: steps of 1.1 and 3.1 nats, which alone cost 4.5 of the 4.7 points lost to
#: int8 (measured by keeping the head in float).  Bounded, the steps are
#: HIDDEN_CAP / 255 and 2 * LOGIT_BOUND / 255 whatever the training drifts to.
#: 1.2.0 bounded the logits with a scaled tanh; 1.2.1 clips them (same weights).
HIDDEN_CAP = 8.0
LOGIT_BOUND = 16.0


def _conv(x: Any, channels: int, *, kernel: int = 3, strides: int = 1, norm: bool) -> Any:
    from tensorflow import keras

    layers = keras.layers
    x = layers.Conv2D(channels, kernel, strides=strides, padding="same", use_bias=not norm)(x)
    if norm:
        x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


def _separable(x: Any, channels: int, *, norm: bool) -> Any:
    from tensorflow import keras

    layers = keras.layers
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=not norm)(x)
    if norm:
        x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    return _conv(x, channels, kernel=1, norm=norm)


def build_model(
    height: int = 32,
    width: int = 320,
    width_mult: float = 1.0,
    bounded: bool | str = "clip",
    n_classes: int = N_CLASSES,
) -> Any:
    """Input (H, W, 1) raw pixels 0-255; output (W/4, n_classes + 1) CTC logits, blank last.

    Two strided convolutions take the crop to 1/4 resolution at once, then
    depthwise-separable blocks: on this 2-core CPU the full-convolution
    variant trained at 77 crops/s and this one at ~290, which is what makes
    a useful number of epochs fit in the training budget.  Batch norm
    throughout: it costs about 40 % of training speed here, but without it
    the CTC loss did not leave its plateau in the time we have.
    """
    from tensorflow import keras

    layers = keras.layers

    def c(n: int) -> int:
        return max(8, int(n * width_mult))

    inp = keras.Input((height, width, 1), name="crop")
    x = layers.Rescaling(1.0 / 255.0)(inp)
    x = _conv(x, c(16), strides=2, norm=True)
    x = _conv(x, c(48), strides=2, norm=True)
    x = _separable(x, c(64), norm=True)
    x = _separable(x, c(64), norm=True)
    # Halve only the height: CTC needs several columns per character, and
    # small characters of a loose crop may get as few as 3 of the 80.
    x = layers.MaxPooling2D((2, 1))(x)
    x = _separable(x, c(128), norm=True)
    x = _separable(x, c(128), norm=True)
    # Collapse height: a VIN line is one row of characters.
    x = layers.MaxPooling2D((height // 8, 1))(x)
    cols = width // 4
    x = layers.Reshape((cols, c(128)))(x)
    # 1-D context across columns: neighbouring glyphs disambiguate (8/B, 0/D).
    x = layers.Conv1D(c(128), 3, padding="same", dilation_rate=1, activation="relu")(x)
    x = layers.Conv1D(c(128), 3, padding="same", dilation_rate=2, activation="relu")(x)
    x = layers.Dropout(0.1)(x)
    if not bounded:  # the 1.1.0 head, kept so its weights still load and compare
        x = layers.Dense(c(128), activation="relu")(x)
        out = layers.Dense(n_classes + 1, name="logits")(x)
        return keras.Model(inp, out, name="vin_recognizer")
    x = layers.Dense(c(128))(x)
    x = layers.ReLU(max_value=HIDDEN_CAP)(x)
    x = layers.Dense(n_classes + 1, name="logits")(x)
    if bounded == "tanh":  # 1.2.0: LOGIT_BOUND * tanh(z / LOGIT_BOUND)
        x = layers.Rescaling(1.0 / LOGIT_BOUND)(x)
        x = layers.Activation("tanh")(x)
        out = layers.Rescaling(LOGIT_BOUND, name="bounded_logits")(x)
    else:
        # A hard clip, not tanh: TFLite fills its int8 TANH lookup table with the
        # platform's float tanh (XNNPACK has its own approximations), and 1.2.0's
        # outputs differed between x86-64 and arm64 by up to 80 LSB; MINIMUM and
        # MAXIMUM are exact integer ops everywhere.
        out = layers.Activation(
            lambda t: keras.ops.clip(t, -LOGIT_BOUND, LOGIT_BOUND), name="bounded_logits"
        )(x)
    return keras.Model(inp, out, name="vin_recognizer")


#: Where a new letter's output column starts (``widen_into``).
LOOKALIKES = {"I": "1", "O": "0", "Q": "0"}


def load_init(
    model: Any, path: Path, frames: np.ndarray | None = None, width_mult: float = 1.0
) -> bool:
    """Load a Keras weights file, or an int8 .tflite file (float weights recovered by
    layer order, ``frames`` setting batch-norm statistics), into ``model``; a 33-class
    model's weights are widened (``widen_into``). Whether they were widened."""

    def load(m: Any) -> None:
        if path.suffix == ".tflite":
            from training.tflite_weights import load_chain_into

            if frames is None:
                raise ValueError(f"{path}: recovering an int8 model needs frames")
            load_chain_into(m, path, frames)
        else:
            m.load_weights(path)

    try:
        load(model)
        return False
    except ValueError:  # a 33-class model (up to 1.3)
        legacy = build_model(
            model.input_shape[1],
            model.input_shape[2],
            width_mult=width_mult,
            n_classes=LEGACY_CLASSES,
        )
        load(legacy)
        widen_into(model, legacy)
        return True


def widen_into(model: Any, legacy: Any, bias: float = -2.0) -> None:
    """Copy a 33-class model (``LEGACY_CLASSES`` + blank) into the wider ``model``.

    Every layer but the output is copied as is; the output keeps each VIN
    character's column and the blank's (moved to last), and each new letter
    starts as a copy of its lookalike's column (I from 1, O and Q from 0) with
    its bias lowered by ``bias``: the network then already finds the stroke,
    and training only has to learn the difference instead of the letter.
    """
    index = {c: i for i, c in enumerate(TARGET_ALPHABET[:LEGACY_CLASSES])}
    cols = [index[c] if c in index else index[LOOKALIKES[c]] for c in TARGET_ALPHABET]
    for old, new in zip(legacy.layers, model.layers, strict=True):
        if new.name != "logits":
            new.set_weights(old.get_weights())
            continue
        kernel, b = old.get_weights()
        new_bias = b[[*cols, LEGACY_CLASSES]].copy()
        new_bias[LEGACY_CLASSES : len(TARGET_ALPHABET)] += bias
        new.set_weights([kernel[:, [*cols, LEGACY_CLASSES]], new_bias])
