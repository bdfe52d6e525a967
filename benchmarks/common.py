"""Shared helpers: timing statistics, generated frames, the machine, a local MQTT broker."""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

logger = logging.getLogger(__name__)

T = TypeVar("T")

JPEG_QUALITY = 90
REPO = Path(__file__).resolve().parents[1]

# Seeds of the generated images.  Training uses seeds 1-3 (recognizer crops)
# and 11-13 (detector scenes), so none of these images was seen in training.
SEED_PEERS = 777000
SEED_STAGES = 777100
SEED_SIZES = 777200
SEED_VIN_COUNTS = 777300
SEED_CLIP = 777400
SEED_TUNE = 777500
SEED_WARMUP = 777900

PACKAGES = (
    "numpy",
    "opencv-python-headless",
    "ai-edge-litert",
    "onnxruntime",
    "rapidocr-onnxruntime",
    "paho-mqtt",
    "zxing-cpp",
)


def summary(samples_ms: list[float]) -> dict[str, Any]:
    """Median, p95 and friends of warm samples in milliseconds (rounded for the report)."""
    if not samples_ms:
        return {"n": 0}
    a = np.asarray(samples_ms, np.float64)
    return {
        "n": int(a.size),
        "median_ms": round(float(np.median(a)), 3),
        "p95_ms": round(float(np.percentile(a, 95)), 3),
        "mean_ms": round(float(a.mean()), 3),
        "min_ms": round(float(a.min()), 3),
        "max_ms": round(float(a.max()), 3),
    }


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """Call ``fn``; return its result and the wall time in milliseconds."""
    t0 = time.perf_counter()
    out = fn()
    return out, 1000.0 * (time.perf_counter() - t0)


@dataclass(frozen=True)
class Frame:
    """A generated frame as the agent would receive it: JPEG bytes plus the truth."""

    jpeg: bytes
    vins: list[str]
    quads: list[np.ndarray]
    line_heights: list[float]
    width: int
    height: int
    seed: int
    index: int


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def generate(
    seed: int,
    n: int,
    width: int | None = None,
    height: int | None = None,
    n_vins: int = 1,
) -> list[Frame]:
    """``n`` upright scenes with exactly ``n_vins`` VINs, JPEG q90, from ``scene_rng(seed, i)``.

    The generator can drop a VIN it could not place; such scenes are skipped
    (the next index is tried) so every frame carries the stated VIN count.
    """
    from training.scenes import render_scene, scene_rng

    frames: list[Frame] = []
    index = 0
    while len(frames) < n:
        if index > 5 * n + 20:
            raise RuntimeError(f"seed {seed}: too few scenes with {n_vins} VIN(s)")
        scene = render_scene(scene_rng(seed, index), width, height, rotation=0, n_vins=n_vins)
        index += 1
        if len(scene.lines) != n_vins:
            continue
        h, w = scene.image.shape[:2]
        frames.append(
            Frame(
                jpeg=encode_jpeg(scene.image),
                vins=[line.text for line in scene.lines],
                quads=[line.quad for line in scene.lines],
                line_heights=[round(line.height, 1) for line in scene.lines],
                width=w,
                height=h,
                seed=seed,
                index=index - 1,
            )
        )
    return frames


def training_running() -> list[str]:
    """Command lines of training jobs running now: their load skews every timing."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "training.recognizer" in cmd or "training.detector" in cmd:
            found.append(cmd.strip())
    return found


def cpu_model() -> str:
    """The CPU's marketing name (x86 ``model name``; Raspberry Pi ``Model`` or ``Hardware``)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    for key in ("model name", "Model", "Hardware", "cpu model"):
        if fields.get(key):
            return fields[key]
    return platform.processor() or "unknown"


def _tool_version(cmd: list[str]) -> str | None:
    try:
        proc = subprocess.run(  # noqa: S603 - fixed argument list, no shell
            cmd, capture_output=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout or proc.stderr).decode(errors="replace").strip()
    return text.splitlines()[0] if text else None


def find_tool(name: str) -> str | None:
    """``name`` on PATH, or in the sbin directories a non-root PATH may lack."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")


def git_commit() -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        head = subprocess.run(  # noqa: S603 - fixed argument list, no shell
            [git, "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            timeout=10,
            check=True,
        ).stdout.decode()
        dirty = subprocess.run(  # noqa: S603 - fixed argument list, no shell
            [git, "-C", str(REPO), "status", "--porcelain"], capture_output=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return head.strip() + ("+dirty" if dirty.strip() else "")


def environment() -> dict[str, Any]:
    """What the numbers were measured on, so runs on different machines can be compared."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    versions["cv2"] = cv2.__version__
    tess = find_tool("tesseract")
    mosq = find_tool("mosquitto")
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        affinity = os.cpu_count() or 0
    return {
        "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": affinity,
        "machine": platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
        "tesseract": _tool_version([tess, "--version"]) if tess else None,
        "mosquitto": _tool_version([mosq, "-h"]) if mosq else None,
        "git_commit": git_commit(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "training_running_at_start": training_running(),
        "executable": sys.executable,
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def mosquitto_broker(timeout: float = 10.0) -> Iterator[int]:
    """A throw-away mosquitto on a free loopback port; yields the port.

    A config file rather than ``-p`` because mosquitto 2 then binds to
    127.0.0.1 only and allows the anonymous benchmark client explicitly.
    """
    exe = find_tool("mosquitto")
    if exe is None:
        raise RuntimeError("mosquitto is not installed (apt install mosquitto)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="vin-bench-mqtt-") as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        proc = subprocess.Popen(  # noqa: S603 - fixed argument list, no shell
            [exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"mosquitto exited with status {proc.returncode}")
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), timeout=0.2),
                ):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not listen on port {port}")
                time.sleep(0.05)
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
