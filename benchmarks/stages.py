"""In-process measurements: each stage of the reader, end-to-end frame rate, cost growth, publish.

Every function runs ``warmup`` untimed passes first (interpreter allocation,
XNNPACK packing, caches), then keeps the samples of ``repeat`` passes.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agent.fusion import VisitTracker
from agent.imageio import decode_image
from agent.reader import (
    DEFAULT_MIN_CONFIDENCE,
    MIN_LINE_HEIGHT_PX,
    FrameResult,
    LineRead,
    Reader,
    pad_quad,
)
from agent.response import response
from agent.vin import ChecksumPolicy
from agent.vision.barcodes import read_barcodes
from agent.vision.ctc import slot_probabilities
from agent.vision.detector import EXTENT_THRESHOLD, Detector, quads_from_map, sigmoid
from agent.vision.geometry import Letterbox, quad_box, quad_height, rectify
from agent.vision.manifest import ModelError, load_manifest
from agent.vision.recognizer import Recognizer, preprocess, vin_columns
from agent.vision.runtime import RuntimeConfig
from benchmarks.common import Frame, summary, timed

logger = logging.getLogger(__name__)

#: Stage key -> label, in pipeline order.
STAGES = {
    "jpeg_decode": "JPEG decode (decode_image)",
    "to_gray": "BGR -> gray (once per frame)",
    "det_prepare": "detector pre-processing (prepare)",
    "det_invoke": "detector invoke",
    "det_post": "map post-processing (sigmoid+quads)",
    "det_all": "Detector.detect, the daemon's passes (whole frame, tiles at 1920x1080)",
    "rectify": "crop rectification, per line",
    "rec_prepare": "recognizer pre-processing, per crop",
    "rec_invoke": "recognizer invoke, per crop",
    "rec_post": "CTC columns -> 17 slots, per crop",
    "decode": "constrained decoding, per line",
    "barcode": "barcode pass",
    "fusion": "fusion (VisitTracker.update)",
    "read_frame": "= Reader.read_frame (whole frame)",
}

FRAME_INTERVAL_S = 0.2  # timestamps fed to the tracker: a 5 fps camera


def load_reader(models_dir: Path | None, threads: int = 1) -> Reader:
    return Reader(models_dir, RuntimeConfig(num_threads=threads))


@dataclass
class Parts:
    """What could be loaded: the whole Reader, or only the recognizer (no detector yet)."""

    recognizer: Recognizer
    detector: Detector | None = None
    reader: Reader | None = None
    missing: str | None = None
    policy: ChecksumPolicy = ChecksumPolicy.AUTO
    min_confidence: float = DEFAULT_MIN_CONFIDENCE


def load_parts(models_dir: Path | None, threads: int = 1) -> Parts:
    """The Reader if it loads; else the recognizer alone, so its stages can still be timed."""
    runtime = RuntimeConfig(num_threads=threads)
    try:
        reader = Reader(models_dir, runtime)
    except ModelError as exc:
        rec = Recognizer(load_manifest(models_dir), runtime)
        logger.warning("Reader() failed (%s); timing the recognizer stages only", exc)
        return Parts(rec, missing=str(exc))
    return Parts(
        reader.recognizer, reader.detector, reader, None, reader.policy, reader.min_confidence
    )


def _post(
    prob_logits: np.ndarray, lb: Letterbox, det_height: int, threshold: float
) -> list[np.ndarray]:
    """Detector.detect after the invoke: sigmoid, components (with the same hysteresis),
    back to frame pixels."""
    prob = sigmoid(prob_logits[0, :, :, 0])
    stride = det_height / prob.shape[0]
    found = quads_from_map(prob, threshold, low=EXTENT_THRESHOLD)
    return [lb.to_frame((q + 0.5) * stride - 0.5) for q, _ in found]


def _rec_post(logits: np.ndarray) -> np.ndarray:
    """Recognizer.probabilities after the invoke: softmax per column, CTC -> 17 slots."""
    return slot_probabilities(vin_columns(logits.reshape(-1, logits.shape[-1])))


def _check_mirror(rec: Recognizer, crop: np.ndarray, probs: np.ndarray) -> None:
    """The timed split must compute what Recognizer.probabilities computes."""
    if not np.allclose(rec.probabilities(crop), probs):
        raise RuntimeError("benchmark recognizer stages no longer match Recognizer.probabilities")


_line_height = quad_height


def stage_breakdown(
    parts: Parts, frames: list[Frame], warmup: int, repeat: int, threads: int = 1
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-stage latency over ``frames``; also returns a realistic event payload to publish.

    Crops come from the detector's own quads; a frame where it finds no
    line (or a run without a detector) falls back to the true quads so the
    recognizer stages are still measured on every frame (``crops_from_truth``).
    """
    det, rec, reader = parts.detector, parts.recognizer, parts.reader
    tracker = VisitTracker(rec.read_probs, min_confidence=parts.min_confidence)
    samples: dict[str, list[float]] = defaultdict(list)
    n_detections: list[int] = []
    crops_from_truth = 0
    ts = time.time()
    event_payload: dict[str, Any] | None = None
    mirror_checked = False
    for p in range(warmup + repeat):
        keep = p >= warmup
        for f in frames:
            t: dict[str, list[float]] = defaultdict(list)
            image, ms = timed(lambda f=f: decode_image(f.jpeg).image)
            t["jpeg_decode"].append(ms)
            # read_frame converts to gray once; every later stage works on gray.
            gray, ms = timed(lambda image=image: cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
            t["to_gray"].append(ms)
            quads = _detect_stages(det, gray, t, check=not mirror_checked) if det else []
            if keep and det is not None:
                n_detections.append(len(quads))
            if not quads:
                quads = list(f.quads)
                crops_from_truth += int(keep)
            lines = []
            for q in quads:
                crop, ms = timed(lambda q=q, gray=gray: rectify(gray, pad_quad(q)))
                t["rectify"].append(ms)
                probs = []
                # Reader.recognize scores both reading directions: two crops per line.
                for c in (crop, crop[::-1, ::-1]):
                    xin, ms = timed(lambda c=c: preprocess(c, rec.height, rec.width))
                    t["rec_prepare"].append(ms)
                    xin = xin[None, :, :, None].astype(rec.model.input_dtype)
                    (logits,), ms = timed(lambda xin=xin: rec.model.invoke(xin))
                    t["rec_invoke"].append(ms)
                    pr, ms = timed(lambda logits=logits: _rec_post(logits))
                    t["rec_post"].append(ms)
                    probs.append(pr)
                    if not mirror_checked:
                        _check_mirror(rec, c, pr)
                        mirror_checked = True
                best = max(probs, key=lambda pr: float(np.log(pr.max(axis=1)).sum()))
                read, ms = timed(lambda best=best: rec.read_probs(best, parts.policy))
                t["decode"].append(ms)
                box = quad_box(q, f.width, f.height)
                valid = read.decoded.checksum_valid
                lines.append(LineRead(read.vin, read.confidence, valid, q, box, "ocr", ocr=read))
            # As Reader.read_frame calls it: the rotated scan only when asked for.
            turn = reader.turned_barcodes if reader is not None else False
            _, ms = timed(lambda gray=gray, turn=turn: read_barcodes(gray, parts.policy, turn))
            t["barcode"].append(ms)
            if reader is not None:
                result, ms = timed(lambda image=image: reader.read_frame(image))
                t["read_frame"].append(ms)
            else:  # what read_frame would hand the tracker, from the lines read above
                result = FrameResult(reads=lines, width=f.width, height=f.height)
            ts += FRAME_INTERVAL_S
            events, ms = timed(lambda r=result, ts=ts, image=image: tracker.update(r, ts, image))
            t["fusion"].append(ms)
            if events and event_payload is None:
                event_payload = _event_payload(events[0], parts)
            if keep:
                for key, values in t.items():
                    samples[key].extend(values)
    stages = {
        key: {"label": label, **summary(samples[key])}
        for key, label in STAGES.items()
        if samples[key]
    }
    out = {
        "frames": len(frames),
        "frame_size": f"{frames[0].width}x{frames[0].height}" if frames else None,
        "warmup_passes": warmup,
        "timed_passes": repeat,
        "interpreter_threads": threads,
        "recognizer_invokes_per_line": 2,
        "detector": det is not None,
        "mean_detections_per_frame": round(float(np.mean(n_detections)), 2)
        if n_detections
        else None,
        "crops_from_truth": crops_from_truth,
        "stages": stages,
    }
    if event_payload is None:
        # No visit event (nothing read): publish a frame's CarsXE response instead.
        image = decode_image(frames[0].jpeg).image
        result = reader.read_frame(image) if reader is not None else FrameResult()
        event_payload = response(result, reader)
    return out, event_payload


def _detect_stages(
    det: Detector, image: np.ndarray, t: dict[str, list[float]], check: bool
) -> list[Any]:
    """Detector.detect split into its timed stages; quads tall enough to be read."""
    (prepared, lb), ms = timed(lambda: det.prepare(image))
    t["det_prepare"].append(ms)
    x = prepared[None, :, :, None].astype(det.model.input_dtype)
    (logits,), ms = timed(lambda: det.model.invoke(x))
    t["det_invoke"].append(ms)
    quads, ms = timed(lambda: _post(logits, lb, det.height, det.threshold))
    t["det_post"].append(ms)
    h, w = image.shape[:2]
    if check and len(det._detect_in(image, 0, 0, (w, h))) != len(quads):
        # The split must stay Detector.detect's whole-frame pass.
        raise RuntimeError("benchmark detector stages no longer match Detector.detect")
    _, ms = timed(lambda: det.detect(image))
    t["det_all"].append(ms)
    return [q for q in quads if _line_height(q) >= MIN_LINE_HEIGHT_PX]


def _event_payload(event: Any, parts: Parts) -> dict[str, Any]:
    """The daemon's message for a visit event (agent.events), as it would be published."""
    from agent.events import payload

    return payload(
        event,
        device_id="bench",
        camera="cam0",
        seq=1,
        min_confidence=parts.min_confidence,
        models=parts.reader.models if parts.reader else None,
    )


def end_to_end(reader: Reader, frames: list[Frame], warmup: int, repeat: int) -> dict[str, Any]:
    """decode_image + Reader.read_frame per frame, the daemon's code path, one frame at a time."""
    for _ in range(warmup):
        for f in frames:
            reader.read_frame(decode_image(f.jpeg).image)
    samples, reads, exact, misses = [], 0, 0, 0
    t0 = time.perf_counter()
    for _ in range(repeat):
        for f in frames:
            result, ms = timed(lambda f=f: reader.read_frame(decode_image(f.jpeg).image))
            samples.append(ms)
            reads += len(result.reads)
            misses += len(result.misses)
            exact += sum(r.vin in f.vins for r in result.reads)
    total = time.perf_counter() - t0
    n = len(samples)
    n_true = sum(len(f.vins) for f in frames)
    return {
        **summary(samples),
        "fps": round(n / total, 2) if total > 0 else None,
        "frames": len(frames),
        "timed_passes": repeat,
        "mean_reads_per_frame": round(reads / n, 2) if n else None,
        "mean_misses_per_frame": round(misses / n, 2) if n else None,
        "true_vins_read_fraction": round(exact / max(1, n_true * repeat), 3),
    }


def publish_paho(port: int, message: dict[str, Any], warmup: int, repeat: int) -> dict[str, Any]:
    """paho-mqtt 2 QoS 1 publish to a local broker, timed until the PUBACK arrives."""
    import paho.mqtt.client as mqtt

    data = json.dumps(message).encode()
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="vin-agent-bench", protocol=mqtt.MQTTv5
    )
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        deadline = time.monotonic() + 10
        while not client.is_connected():
            if time.monotonic() > deadline:
                raise RuntimeError("paho did not connect to the local broker")
            time.sleep(0.01)
        samples = []
        for i in range(warmup + repeat):
            t0 = time.perf_counter()
            info = client.publish("vin-agent/bench/cam0/events", data, qos=1)
            info.wait_for_publish(timeout=5)
            ms = 1000 * (time.perf_counter() - t0)
            if not info.is_published():
                raise RuntimeError("no PUBACK within 5 s")
            if i >= warmup:
                samples.append(ms)
    finally:
        client.disconnect()
        client.loop_stop()
    return {"client": "paho-mqtt (plain)", "payload_bytes": len(data), **summary(samples)}


def publish_agent(port: int, message: dict[str, Any], warmup: int, repeat: int) -> dict[str, Any]:
    """The daemon's MqttPublisher (outbox commit + send), timed until the outbox is empty again.

    The outbox deletes a message when its PUBACK arrives, so an empty outbox
    means the broker has acknowledged it.
    """
    from agent.publish.mqtt import MqttPublisher
    from agent.publish.mqtt_config import MqttConfig
    from agent.publish.outbox import Outbox

    with tempfile.TemporaryDirectory(prefix="vin-bench-state-") as tmp:
        outbox = Outbox(Path(tmp) / "outbox.sqlite")
        pub = MqttPublisher(MqttConfig(url=f"mqtt://127.0.0.1:{port}"), "bench", outbox)
        pub.start()
        try:
            deadline = time.monotonic() + 10
            while not pub.connected:
                if time.monotonic() > deadline:
                    raise RuntimeError("MqttPublisher did not connect to the local broker")
                time.sleep(0.01)
            samples = []
            for i in range(warmup + repeat):
                t0 = time.perf_counter()
                pub.publish_event("cam0", message)
                while outbox.depth() > 0:
                    if time.perf_counter() - t0 > 5:
                        raise RuntimeError("event not acknowledged within 5 s")
                    time.sleep(0.0002)
                ms = 1000 * (time.perf_counter() - t0)
                if i >= warmup:
                    samples.append(ms)
        finally:
            pub.stop(timeout=2.0)
    return {
        "client": "agent.publish.mqtt.MqttPublisher (outbox + paho)",
        "payload_bytes": len(json.dumps(message).encode()),
        **summary(samples),
    }
