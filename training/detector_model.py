"""The detector network: a small U-Net scoring VIN-line cores at 1/4 resolution.

Depthwise-separable convolutions keep it inside a few milliseconds on one
core; every op quantises to int8 (conv, add, nearest-neighbour upsampling).
"""

from __future__ import annotations

from typing import Any


def _bn_relu(x: Any) -> Any:
    from tensorflow import keras

    x = keras.layers.BatchNormalization()(x)
    return keras.layers.ReLU()(x)


def _sep(x: Any, channels: int, stride: int = 1, dilation: int = 1) -> Any:
    from tensorflow import keras

    layers = keras.layers
    x = layers.DepthwiseConv2D(
        3, strides=stride, dilation_rate=dilation, padding="same", use_bias=False
    )(x)
    x = _bn_relu(x)
    x = layers.Conv2D(channels, 1, use_bias=False)(x)
    return _bn_relu(x)


def build_model(height: int = 384, width: int = 640, width_mult: float = 1.0) -> Any:
    """Input (H, W, 1) raw gray pixels; output (H/4, W/4, 1) logits."""
    from tensorflow import keras

    layers = keras.layers

    def c(n: int) -> int:
        return max(8, int(n * width_mult))

    inp = keras.Input((height, width, 1), name="frame")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(inp)
    x = layers.Conv2D(c(16), 3, strides=2, padding="same", use_bias=False)(x)
    x = _bn_relu(x)  # 1/2
    x = _sep(x, c(24), stride=2)  # 1/4
    s4 = _sep(x, c(24))
    x = _sep(s4, c(48), stride=2)  # 1/8
    s8 = _sep(x, c(48))
    x = _sep(s8, c(64), stride=2)  # 1/16
    x = _sep(x, c(64), dilation=2)
    s16 = _sep(x, c(64))
    x = _sep(s16, c(96), stride=2)  # 1/32
    x = _sep(x, c(96), dilation=2)
    x = _sep(x, c(96))

    def up_merge(x: Any, skip: Any, channels: int) -> Any:
        x = layers.UpSampling2D(2, interpolation="nearest")(x)
        x = layers.Conv2D(channels, 1, use_bias=False)(x)
        x = layers.Add()([x, layers.Conv2D(channels, 1, use_bias=False)(skip)])
        x = _bn_relu(x)
        return _sep(x, channels)

    x = up_merge(x, s16, c(64))
    x = up_merge(x, s8, c(48))
    x = up_merge(x, s4, c(32))
    x = _sep(x, c(32))
    out = layers.Conv2D(1, 1, name="logits")(x)
    return keras.Model(inp, out, name="vin_detector")
