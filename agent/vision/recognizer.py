"""The recognizer: a rectified crop of one VIN line -> 17 characters.

The int8 model outputs CTC logits for each column of the crop over the 33
VIN characters, then (models from 1.4.0) the letters I, O and Q, then a
blank; softmax runs here in float so small probabilities keep their
resolution, the VIN characters and the blank are kept (``vin_columns``),
and :mod:`agent.vision.ctc` splits the columns into the 17 positions the
constrained decoder works on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from agent.vin import ALPHABET, NON_VIN_LETTERS, ChecksumPolicy
from agent.vision.calibration import Calibrator
from agent.vision.ctc import AlignmentError, align
from agent.vision.decoding import Decoded, decode
from agent.vision.manifest import Manifest, ModelError
from agent.vision.runtime import RuntimeConfig, TFLiteModel

logger = logging.getLogger(__name__)

MODEL_NAME = "recognizer"
INPUT_HEIGHT = 32
INPUT_WIDTH = 320


def preprocess(
    crop: np.ndarray, height: int = INPUT_HEIGHT, width: int = INPUT_WIDTH
) -> np.ndarray:
    """Any-size BGR or gray crop -> ``height x width`` gray uint8, stretched.

    Stretching rather than letterboxing keeps 17 characters spread over the
    slots the same way for tight and loose crops; training uses this very
    function so the two cannot drift apart.  INTER_AREA averages when
    shrinking (no aliasing of fine strokes), INTER_LINEAR interpolates when
    enlarging; when one axis shrinks and the other grows, each gets its own
    filter in two steps.
    """
    if crop.size == 0:
        raise ValueError("empty crop")
    if crop.ndim == 3:
        code = cv2.COLOR_BGR2GRAY if crop.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        crop = cv2.cvtColor(crop, code)
    if crop.dtype != np.uint8:
        crop = np.clip(crop, 0, 255).astype(np.uint8)
    h, w = crop.shape
    if h >= height and w >= width:
        out = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)
    elif h <= height and w <= width:
        out = cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR)
    elif h > height:
        out = cv2.resize(crop, (w, height), interpolation=cv2.INTER_AREA)
        out = cv2.resize(out, (width, height), interpolation=cv2.INTER_LINEAR)
    else:
        out = cv2.resize(crop, (width, h), interpolation=cv2.INTER_AREA)
        out = cv2.resize(out, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(out, dtype=np.uint8)


#: The output alphabets (blank excluded) this agent can read: the VIN characters,
#: and those followed by I, O and Q.  A model with classes of their own for the
#: letters a VIN never holds reads a distractor's O as O, not as a 0 that the
#: check digit then "corrects"; ``vin_columns`` leaves their probability out of
#: each position, so a position that looks like an O keeps little mass for any
#: VIN character and the read's confidence falls.
MODEL_ALPHABETS = (ALPHABET, ALPHABET + NON_VIN_LETTERS)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def vin_columns(logits: np.ndarray) -> np.ndarray:
    """(T, C) column logits of either output alphabet -> (T, 34) probabilities of the
    33 VIN characters and the blank, softmax over all C classes (rows of a 37-class
    model sum to less than 1 where I, O or Q are likely)."""
    probs = softmax(logits)
    n_vin = len(ALPHABET)
    if probs.shape[-1] == n_vin + 1:
        return probs
    if probs.shape[-1] == len(MODEL_ALPHABETS[1]) + 1:
        return np.concatenate([probs[..., :n_vin], probs[..., -1:]], axis=-1)
    raise ValueError(f"{probs.shape[-1]} output classes fit no known recognizer alphabet")


def reframed(crop: np.ndarray) -> list[np.ndarray]:
    """The crop framed a little differently: ends loosened, ends tightened, shifted
    down. The detector's quads are a cell or two off, and a character the model
    reads badly in one framing it often reads well in a neighbouring one."""
    h, w = crop.shape[:2]
    loose, tight, down = max(1, w // 30), max(1, w // 40), max(1, h // 16)
    return [
        cv2.copyMakeBorder(crop, 0, 0, loose, loose, cv2.BORDER_REPLICATE),
        crop[:, tight : w - tight],
        cv2.copyMakeBorder(crop, down, 0, 0, 0, cv2.BORDER_REPLICATE)[:-down],
    ]


def fuse_views(probs: Sequence[np.ndarray]) -> np.ndarray:
    """(17, 33) per-position probabilities of several views of one line -> one set.

    A geometric mean: a character every view agrees on keeps its probability,
    one the views disagree on loses it, so the calibrated confidence of the
    fused read falls where the framing mattered. Each position keeps the
    views' mean total mass (mass missing from a position is the model's doubt
    that a character is there at all; see ``ctc``).
    """
    stack = np.maximum(np.asarray(probs, dtype=np.float64), 1e-9)
    geo = np.exp(np.log(stack).mean(axis=0))
    mass = stack.sum(axis=2).mean(axis=0)
    return geo * (mass / geo.sum(axis=1))[:, None]


@dataclass(frozen=True)
class Read:
    """One recognised line: the decoded VIN and a calibrated confidence."""

    vin: str
    confidence: float
    decoded: Decoded
    probs: np.ndarray  # (17, 33) per-position probabilities, kept for fusion


class Recognizer:
    """Loads the verified recognizer once; reads crops one at a time."""

    def __init__(self, manifest: Manifest, runtime: RuntimeConfig | None = None) -> None:
        entry = manifest.entry(MODEL_NAME)
        alphabet = entry.info.get("alphabet", ALPHABET)
        if alphabet not in MODEL_ALPHABETS:
            raise ModelError(
                f"{entry.path}: model alphabet {alphabet!r} is none of {MODEL_ALPHABETS!r}"
            )
        self.model = TFLiteModel(entry, runtime)
        _, self.height, self.width, _ = self.model.input_shape
        self.calibrator = Calibrator.from_manifest(entry.info.get("calibration"))
        self.version = entry.version
        self.sha256 = entry.sha256

    def probabilities(self, crop: np.ndarray) -> np.ndarray:
        """Per-position probabilities (17, 33) for one crop of any size."""
        return self.aligned(crop)[0]

    def columns(self, crop: np.ndarray) -> np.ndarray:
        """Per-column probabilities (T, 34) of the 33 characters and the CTC blank."""
        x = preprocess(crop, self.height, self.width)[None, :, :, None]
        (logits,) = self.model.invoke(x.astype(self.model.input_dtype))
        return vin_columns(logits.reshape(-1, logits.shape[-1]))

    def aligned(self, crop: np.ndarray) -> tuple[np.ndarray, float]:
        """Per-position probabilities and the cost of forcing 17 characters (``ctc.align``)."""
        return align(self.columns(crop))

    def aligned_views(
        self, crop: np.ndarray, first: tuple[np.ndarray, float]
    ) -> tuple[np.ndarray, float]:
        """``aligned`` over the crop and its ``reframed`` views, fused (``fuse_views``);
        ``first`` is the crop's own ``aligned``. The cost is the views' median."""
        probs, costs = [first[0]], [first[1]]
        for view in reframed(crop):
            try:
                p, cost = self.aligned(view)
            except AlignmentError:  # a view too narrow for 17 columns adds nothing
                continue
            probs.append(p)
            costs.append(cost)
        return fuse_views(probs), float(np.median(costs))

    def read(
        self, crop: np.ndarray, policy: ChecksumPolicy | str = ChecksumPolicy.AUTO, k: int = 5
    ) -> Read:
        probs = self.probabilities(crop)
        return self.read_probs(probs, policy, k)

    def read_probs(
        self, probs: np.ndarray, policy: ChecksumPolicy | str = ChecksumPolicy.AUTO, k: int = 5
    ) -> Read:
        """Constrained decode and calibrate already computed (possibly fused) probabilities."""
        decoded = decode(probs, policy, k=k)
        return Read(decoded.vin, self.calibrator.confidence(decoded), decoded, probs)
