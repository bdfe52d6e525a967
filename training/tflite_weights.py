"""Float Keras weights recovered from an exported int8 model, to fine-tune a shipped model.

Training keeps float weights under ``runs/``, which is not shipped, so the
int8 file in ``models/`` is often the only copy of a model worth continuing.
Its kernels dequantise to within half an int8 step of the float ones.  The
converter folded each batch norm into the convolution before it; the folded
kernel and bias go into the convolution, and the batch norm is set to the
per-channel statistics its input has on real frames with a scale that undoes
them, so inference computes the folded function exactly and a training step
(batch statistics close to those) starts where the int8 model is.

TFLite names each weight tensor after the Keras layer that made it, with one
``_N`` suffix added by tracing (``conv2d_1_2`` came from ``conv2d_1``); the
layer's creation index within its type is what ties the two models together.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

_KINDS = {"CONV_2D": "conv2d", "DEPTHWISE_CONV_2D": "depthwise_conv2d"}


def _dequantize(details: dict[str, Any], values: np.ndarray) -> np.ndarray:
    q = details["quantization_parameters"]
    scales = np.asarray(q["scales"], np.float32)
    zeros = np.asarray(q["zero_points"], np.float32)
    if scales.size <= 1:
        return (values.astype(np.float32) - zeros.reshape(-1)[:1]) * scales.reshape(-1)[:1]
    shape = [1] * values.ndim
    shape[q["quantized_dimension"]] = -1
    return (values.astype(np.float32) - zeros.reshape(shape)) * scales.reshape(shape)


def _layer_key(tensor_name: str, kind: str) -> str | None:
    """``conv2d_7`` for a tensor named ``.../conv2d_7_1/convolution;...``."""
    # Backtracking gives ``conv2d`` for ``conv2d_1/`` and ``conv2d_1`` for ``conv2d_1_2/``.
    m = re.search(rf"/({kind}(?:_\d+)?)_\d+/", tensor_name)
    return m.group(1) if m else None


def _index(name: str, kind: str) -> int:
    rest = name[len(kind) :]
    return int(rest[1:]) if rest else 0


def read_convolutions(path: Path) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
    """``{(kind, creation index): (keras kernel, bias)}`` for every convolution in the file.

    ``kind`` is ``conv2d``, ``depthwise_conv2d`` or ``logits``; kernels are in
    Keras layout.
    """
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    found: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
    for op in it._get_ops_details():
        kind = _KINDS.get(op["op_name"])
        if kind is None:
            continue
        w_t, b_t = tensors[op["inputs"][1]], tensors[op["inputs"][2]]
        names = w_t["name"] + ";" + b_t["name"] + ";" + tensors[op["outputs"][0]]["name"]
        if "/logits_" in names:
            key: tuple[str, int] = ("logits", 0)
        else:
            layer = _layer_key(names, kind)
            if layer is None:
                raise ValueError(f"{path}: cannot tell which layer made {w_t['name']!r}")
            key = (kind, _index(layer, kind))
        w = _dequantize(w_t, it.get_tensor(w_t["index"]))
        b = _dequantize(b_t, it.get_tensor(b_t["index"]))
        if kind == "conv2d":
            w = w.transpose(1, 2, 3, 0)  # OHWI -> HWIO
        else:
            w = w[0][..., None]  # 1HWC -> HWC1 (depth multiplier 1)
        found[key] = (w, b)
    return found


def load_into(model: Any, path: Path, frames: np.ndarray) -> None:
    """Set ``model``'s weights from the int8 TFLite file at ``path``.

    ``frames`` (N, H, W, 1) are real inputs; they set the batch-norm statistics.
    """
    from tensorflow import keras

    convs = read_convolutions(path)
    kinds = {keras.layers.DepthwiseConv2D: "depthwise_conv2d", keras.layers.Conv2D: "conv2d"}
    per_kind: dict[str, list[Any]] = {"conv2d": [], "depthwise_conv2d": []}
    for layer in model.layers:
        for cls, kind in kinds.items():
            if type(layer) is cls and layer.name != "logits":
                per_kind[kind].append(layer)
    # id(bias-free conv layer) -> the bias the file holds for it (a folded batch norm's)
    folded: dict[int, np.ndarray] = {}
    for kind, layers in per_kind.items():
        base = min(_index(x.name, kind) for x in layers)
        for layer in layers:
            w, b = convs.pop((kind, _index(layer.name, kind) - base))
            _set_conv(layer, w, b, folded)
    logits = model.get_layer("logits")
    _set_conv(logits, *convs.pop(("logits", 0)), folded)
    if convs:
        raise ValueError(f"{path}: convolutions without a layer in the model: {sorted(convs)}")
    _unfold_batch_norms(model, frames, folded, path)
    logger.info("initialised %s from %s", model.name, path)


def _unfold_batch_norms(
    model: Any, frames: np.ndarray, folded: dict[int, np.ndarray], path: Path
) -> None:
    """Give each batch norm its input's statistics on ``frames`` and a scale and shift
    that, with those statistics, compute the folded bias the file held."""
    from tensorflow import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            conv = layer.input._keras_history.operation
            bias = folded.pop(id(conv))
            probe = keras.Model(model.input, layer.input)
            out = probe.predict(frames, batch_size=8, verbose=0)
            mean = out.reshape(-1, out.shape[-1]).mean(0)
            var = out.reshape(-1, out.shape[-1]).var(0)
            gamma = np.sqrt(var + layer.epsilon)
            layer.set_weights([gamma, mean + bias, mean, var])
    if any(np.any(b) for b in folded.values()):
        raise ValueError(f"{path}: a bias-free convolution with no batch norm has a bias")


def read_chain(path: Path) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], float]:
    """``(op, kernel, bias)`` of every convolution, in execution order, TFLite layout,
    and the scale of the first one's input (1.0 when it sees raw pixels).

    For a chain network (the recognizer) execution order is layer order, so no
    names are needed. A dilated convolution is lowered to SpaceToBatch + CONV_2D +
    BatchToSpace with its bias moved into the ADD that follows; that bias is
    folded back.
    """
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    tensors = {t["index"]: t for t in it.get_tensor_details()}

    def value(i: int) -> np.ndarray:
        return _dequantize(tensors[i], it.get_tensor(i))

    chain: list[tuple[str, np.ndarray, np.ndarray]] = []
    input_scale = 0.0
    for op in it._get_ops_details():
        name = op["op_name"]
        if name in _KINDS:
            if not chain:
                input_scale = float(tensors[op["inputs"][0]]["quantization"][0])
            chain.append((name, value(op["inputs"][1]), value(op["inputs"][2])))
        elif name == "ADD" and chain and not np.any(chain[-1][2]):
            width = [len(chain[-1][2])]
            consts = [i for i in op["inputs"] if tensors[i]["shape"].tolist() == width]
            if consts:
                op_name, w, _ = chain[-1]
                chain[-1] = (op_name, w, value(consts[0]))
    return chain, input_scale


def load_chain_into(model: Any, path: Path, frames: np.ndarray) -> None:
    """Set a chain model's weights (Conv2D, DepthwiseConv2D, Conv1D, Dense, in layer
    order) from the int8 TFLite file at ``path``; ``frames`` set batch-norm statistics.

    The file may hold each Dense as a 1x1 convolution (``export.dense_as_conv1x1``).
    """
    from tensorflow import keras

    chain, input_scale = read_chain(path)
    rescale = next((x for x in model.layers if isinstance(x, keras.layers.Rescaling)), None)
    if rescale is not None and input_scale > 0.5:
        # The converter folded the input Rescaling into the first kernel, which then
        # sees raw 0-255 pixels; the Keras kernel sees them rescaled.
        if float(rescale.offset) != 0.0:
            raise ValueError(f"{path}: cannot unfold a Rescaling with an offset")
        op, w, b = chain[0]
        chain[0] = (op, w / float(rescale.scale), b)
    layers = [
        x
        for x in model.layers
        if isinstance(x, keras.layers.Conv2D | keras.layers.Conv1D | keras.layers.Dense)
        or isinstance(x, keras.layers.DepthwiseConv2D)
    ]
    if len(layers) != len(chain):
        raise ValueError(
            f"{path}: {len(chain)} convolutions in the file, {len(layers)} kernel layers in model"
        )
    folded: dict[int, np.ndarray] = {}
    for layer, (op, w, b) in zip(layers, chain, strict=True):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            if op != "DEPTHWISE_CONV_2D":
                raise ValueError(f"layer {layer.name}: kernel of a {op} in the file")
            w = w[0][..., None]  # 1HWC -> HWC1
        elif isinstance(layer, keras.layers.Conv1D):
            w = w[:, 0].transpose(1, 2, 0)  # O1KI -> KIO
        elif isinstance(layer, keras.layers.Dense):
            w = w.reshape(w.shape[0], -1).T  # O11I -> IO
        else:
            w = w.transpose(1, 2, 3, 0)  # OHWI -> HWIO
        _set_conv(layer, w, b, folded)
    _unfold_batch_norms(model, frames, folded, path)
    logger.info("initialised %s from %s", model.name, path)


def _set_conv(layer: Any, w: np.ndarray, b: np.ndarray, folded: dict[int, np.ndarray]) -> None:
    expected = tuple(layer.kernel.shape)
    if w.shape != expected:
        raise ValueError(f"layer {layer.name}: kernel {w.shape} in the file, {expected} in model")
    if layer.use_bias:
        layer.set_weights([w, b])
        return
    layer.set_weights([w])
    folded[id(layer)] = b
