"""TFLite runtime loading and one interpreter per model per process.

``ai_edge_litert`` (the maintained LiteRT package) is preferred; Pi images
that ship ``tflite_runtime`` and training machines with full TensorFlow
work too.  Runtimes are imported only when chosen, so the package imports
on machines that have none of them.
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from agent.vision.manifest import ModelEntry, ModelError, verify

logger = logging.getLogger(__name__)

#: Runtime key -> module that provides ``Interpreter``; dict order is the
#: fallback order of ``auto``.
RUNTIMES: dict[str, str] = {
    "ai_edge_litert": "ai_edge_litert.interpreter",
    "tflite_runtime": "tflite_runtime.interpreter",
    "tensorflow": "tensorflow.lite",
}

RuntimeName = Literal["auto", "ai_edge_litert", "tflite_runtime", "tensorflow"]


class RuntimeConfig(BaseModel):
    """How models are executed."""

    model_config = ConfigDict(extra="forbid")

    type: RuntimeName = Field(
        "auto",
        description="interpreter package; auto tries ai_edge_litert, tflite_runtime, tensorflow",
    )
    num_threads: int = Field(1, ge=1, le=16, description="interpreter threads per model")
    xnnpack: bool = Field(
        True,
        description=(
            "run through the XNNPACK delegate (the default, 5-40x faster here); false runs "
            "TFLite's built-in kernels, whose int8 results are bit-identical across "
            "ai-edge-litert and tflite-runtime 2.14, where XNNPACK versions differ by 1-2 LSB"
        ),
    )


def _builtin_resolver(runtime: str) -> Any:
    """The op resolver value that keeps the default delegates (XNNPACK) out."""
    module = importlib.import_module(RUNTIMES[runtime])
    holder = getattr(module, "experimental", module)  # tensorflow.lite keeps it there
    return holder.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES


def interpreter_class(runtime: str = "auto") -> tuple[str, Any]:
    """Import and return ``(runtime key, Interpreter class)``.

    Raises ModelError naming the packages to install when none is available.
    """
    names = list(RUNTIMES) if runtime == "auto" else [runtime]
    if any(n not in RUNTIMES for n in names):
        raise ModelError(f"unknown runtime {runtime!r}; choose one of auto, {', '.join(RUNTIMES)}")
    failures = []
    for name in names:
        try:
            module = importlib.import_module(RUNTIMES[name])
        except ImportError as exc:
            failures.append(f"{name}: {exc}")
            continue
        logger.debug("using TFLite runtime %s", name)
        return name, module.Interpreter
    raise ModelError(
        "no TFLite runtime could be imported ("
        + "; ".join(failures)
        + "): install ai-edge-litert (pip install ai-edge-litert), or tflite-runtime on "
        "images that ship it"
    )


class TFLiteModel:
    """A verified model with its interpreter, created once and reused.

    ``invoke`` is serialised by a lock because a TFLite interpreter is not
    safe to call from two threads at once.
    """

    def __init__(self, entry: ModelEntry, config: RuntimeConfig | None = None) -> None:
        config = config or RuntimeConfig()
        content = verify(entry)
        self.entry = entry
        self.runtime, cls = interpreter_class(config.type)
        options: dict[str, Any] = {}
        if not config.xnnpack:
            options["experimental_op_resolver_type"] = _builtin_resolver(self.runtime)
        try:
            self.interpreter = cls(model_content=content, num_threads=config.num_threads, **options)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"cannot load model {entry.path}: {exc}") from exc
        self._input = self.interpreter.get_input_details()[0]
        self._outputs = self.interpreter.get_output_details()
        self._lock = threading.Lock()
        logger.info(
            "loaded model %s v%s (%s%s, %d thread(s), input %s %s)",
            entry.name,
            entry.version,
            self.runtime,
            "" if config.xnnpack else " built-in kernels",
            config.num_threads,
            self.input_shape,
            np.dtype(self._input["dtype"]).name,
        )

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self._input["shape"])

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._input["dtype"])

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Map float input in the model's training range to its input dtype."""
        dtype = self.input_dtype
        if dtype == np.float32:
            return x.astype(np.float32)
        scale, zero = self._input["quantization"]
        q = np.round(x / scale + zero)
        info = np.iinfo(dtype)
        return np.clip(q, info.min, info.max).astype(dtype)

    def invoke(self, x: np.ndarray) -> list[np.ndarray]:
        """Run one batch already in the input dtype; return float (dequantised) outputs."""
        if x.dtype != self.input_dtype:
            raise ValueError(f"input dtype {x.dtype} != model input dtype {self.input_dtype}")
        with self._lock:
            if tuple(x.shape) != self.input_shape:
                self.interpreter.resize_tensor_input(self._input["index"], list(x.shape))
                self.interpreter.allocate_tensors()
                self._input = self.interpreter.get_input_details()[0]
                self._outputs = self.interpreter.get_output_details()
            self.interpreter.set_tensor(self._input["index"], x)
            self.interpreter.invoke()
            outs = []
            for det in self._outputs:
                raw = self.interpreter.get_tensor(det["index"])
                scale, zero = det["quantization"]
                if raw.dtype != np.float32 and scale:
                    outs.append((raw.astype(np.float32) - zero) * scale)
                else:
                    outs.append(raw.astype(np.float32))
        return outs
