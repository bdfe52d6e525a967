"""The recognizer network: a small CNN with a fixed 17-slot head.

Fixed slots rather than CTC because a VIN always has 17 characters and the
constrained decoder needs one distribution per position; CTC would need an
alignment step to produce them.  Only int8-friendly ops (Conv, Dense,
pooling, transpose) so the whole graph quantises.
"""

from __future__ import annotations

from typing import Any

N_SLOTS = 17
N_CLASSES = 33


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


def build_model(height: int = 32, width: int = 320, width_mult: float = 1.0) -> Any:
    """Input (H, W, 1) raw pixels 0-255; output (17, 33) logits.

    Two strided convolutions take the crop to 1/4 resolution at once, then
    depthwise-separable blocks: on this 2-core CPU the full-convolution
    variant trained at 77 crops/s and this one at ~290, which is what makes
    a useful number of epochs fit in the training budget.  Batch norm only at
    1/8 resolution, where it is cheap; at 1/4 it halved training speed.
    """
    from tensorflow import keras

    layers = keras.layers

    def c(n: int) -> int:
        return max(8, int(n * width_mult))

    inp = keras.Input((height, width, 1), name="crop")
    x = layers.Rescaling(1.0 / 255.0)(inp)
    x = _conv(x, c(16), strides=2, norm=False)
    x = _conv(x, c(48), strides=2, norm=False)
    x = _separable(x, c(64), norm=False)
    x = _separable(x, c(64), norm=False)
    x = layers.MaxPooling2D(2)(x)
    x = _separable(x, c(128), norm=True)
    x = _separable(x, c(128), norm=True)
    # Collapse height: a VIN line is one row of characters.
    x = layers.MaxPooling2D((height // 8, 1))(x)
    cols = width // 8
    x = layers.Reshape((cols, c(128)))(x)
    # Dilated 1-D context lets each column know where the line starts and ends,
    # which is what assigns characters to slots on loose crops.
    x = layers.Conv1D(c(128), 3, padding="same", dilation_rate=2, activation="relu")(x)
    x = layers.Conv1D(c(128), 3, padding="same", dilation_rate=4, activation="relu")(x)
    x = layers.Dropout(0.1)(x)
    x = layers.Permute((2, 1))(x)
    x = layers.Dense(N_SLOTS, name="slot_mix")(x)
    x = layers.Permute((2, 1))(x)
    x = layers.Dense(c(128), activation="relu")(x)
    out = layers.Dense(N_CLASSES, name="logits")(x)
    return keras.Model(inp, out, name="vin_recognizer")
