"""Other OCR engines on the same images: RapidOCR (PP-OCRv4, onnxruntime) and Tesseract 5.

Peers read whole frames and return free text; one extraction rule turns
that text into at most one VIN per image for every peer:

* upper-case; O -> 0, I -> 1, Q -> 0 (letters a VIN never contains);
* remove whitespace inside each text box (RapidOCR box; Tesseract output line);
* candidates are maximal runs of VIN-alphabet characters of exactly 17,
  then every 17-character window of longer runs (a glued "VIN" prefix);
* the first candidate passing the check digit wins, else the first candidate.

Ours is the top ``vin`` of the reader's CarsXE response when ``success``.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agent.imageio import decode_image
from agent.reader import Reader
from agent.response import response
from agent.vin import ALPHABET, VIN_LENGTH, checksum_valid
from benchmarks.common import Frame, encode_jpeg, find_tool, summary

logger = logging.getLogger(__name__)

TESSERACT_WHITELIST = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
_TO_VIN = str.maketrans({"O": "0", "I": "1", "Q": "0"})
_RUN = re.compile(f"[{ALPHABET}]+")
#: Small lines are where readers differ most: a cap height split for the report.
SMALL_LINE_PX = 22.0

#: A reader takes JPEG bytes and returns (VIN or None, VIN candidates it saw).
ReadFn = Callable[[bytes], tuple[str | None, list[str]]]


def vin_candidates(boxes: list[str]) -> list[str]:
    """VIN candidates in recognised text boxes, in the order of the extraction rule."""
    exact: list[str] = []
    windows: list[str] = []
    for box in boxes:
        text = re.sub(r"\s+", "", box.upper().translate(_TO_VIN))
        for run in _RUN.findall(text):
            if len(run) == VIN_LENGTH:
                exact.append(run)
            elif len(run) > VIN_LENGTH:
                windows.extend(run[i : i + VIN_LENGTH] for i in range(len(run) - VIN_LENGTH + 1))
    return exact + windows


def extract_vin(boxes: list[str]) -> tuple[str | None, list[str]]:
    cands = vin_candidates(boxes)
    if not cands:
        return None, cands
    return next((c for c in cands if checksum_valid(c)), cands[0]), cands


def ours(reader: Reader) -> ReadFn:
    def read(jpeg: bytes) -> tuple[str | None, list[str]]:
        result = reader.read_frame(decode_image(jpeg).image)
        resp = response(result, reader)
        seen = [r.vin for r in result.reads] + [m.vin for m in result.misses if m.vin]
        return (resp["vin"] if resp["success"] else None), seen

    return read


def rapidocr(threads: int = 1) -> tuple[ReadFn, dict[str, Any]]:
    """RapidOCR with every onnxruntime session at ``threads`` intra- and inter-op threads.

    The global ``intra_op_num_threads`` / ``inter_op_num_threads`` settings
    are copied by rapidocr into its Det, Cls and Rec sessions.
    """
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=threads)

    def read(jpeg: bytes) -> tuple[str | None, list[str]]:
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        result, _ = engine(image)
        return extract_vin([str(r[1]) for r in result or []])

    config: dict[str, Any] = {
        "engine": "rapidocr_onnxruntime.RapidOCR (PP-OCRv4 det/rec, mobile cls), defaults",
        "requested_threads": threads,
        "session_threads": _session_threads(engine),
    }
    return read, config


def _session_threads(engine: Any) -> dict[str, Any]:
    """(intra, inter) op threads of each onnxruntime session, read back to prove the setting."""
    out: dict[str, Any] = {}
    for part in ("text_det", "text_cls", "text_rec"):
        module = getattr(engine, part, None)
        wrapper = getattr(module, "infer", None) or getattr(module, "session", None)
        session = getattr(wrapper, "session", None)
        if session is not None:
            opts = session.get_session_options()
            out[part] = [opts.intra_op_num_threads, opts.inter_op_num_threads]
    return out


def tesseract(psm: int = 11) -> tuple[ReadFn, dict[str, Any]]:
    """The tesseract CLI reading the JPEG from stdin, one process per image, one thread."""
    exe = find_tool("tesseract")
    if exe is None:
        raise RuntimeError("tesseract is not installed (apt install tesseract-ocr)")
    cmd = [exe, "stdin", "stdout", "--oem", "1", "--psm", str(psm), "-l", "eng"]
    cmd += ["-c", f"tessedit_char_whitelist={TESSERACT_WHITELIST}"]
    # OpenMP would otherwise spread one image over every core.
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}

    def read(jpeg: bytes) -> tuple[str | None, list[str]]:
        proc = subprocess.run(  # noqa: S603 - fixed argument list, no shell
            cmd, input=jpeg, capture_output=True, env=env, timeout=300, check=False
        )
        if proc.returncode != 0:
            logger.warning("tesseract failed: %s", proc.stderr.decode(errors="replace")[-200:])
        lines = proc.stdout.decode(errors="replace").splitlines()
        return extract_vin([ln for ln in lines if ln.strip()])

    config: dict[str, Any] = {"command": " ".join(cmd[1:]), "env": {"OMP_THREAD_LIMIT": "1"}}
    config["psm"] = psm
    # Debian's 4 MB eng model is tessdata_fast (LSTM only); the size tells which one ran.
    data = sorted(Path("/usr/share/tesseract-ocr").glob("*/tessdata/eng.traineddata"))
    config["eng_traineddata_bytes"] = data[-1].stat().st_size if data else None
    return read, config


def tesseract_spawn_ms(repeat: int = 5) -> dict[str, Any]:
    """Tesseract on a blank 32x32 image: the per-image process cost inside its latency."""
    read, _ = tesseract()
    blank = encode_jpeg(np.full((32, 32, 3), 255, np.uint8))
    read(blank)
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        read(blank)
        samples.append(1000 * (time.perf_counter() - t0))
    return summary(samples)


def _outcome(vin: str | None, truth: str) -> str:
    if vin is None:
        return "no_read"
    return "exact" if vin == truth else "wrong"


def choose_psm(frames: list[Frame], candidates: tuple[int, ...]) -> dict[str, Any]:
    """Exact reads of each page segmentation mode on a tuning set; the most exact reads win."""
    scores = {}
    for psm in candidates:
        read, _ = tesseract(psm)
        exact, t0 = 0, time.perf_counter()
        for f in frames:
            exact += read(f.jpeg)[0] == f.vins[0]
        scores[psm] = {"exact": exact, "seconds": round(time.perf_counter() - t0, 2)}
    # Ties keep psm 11 (sparse text, the usual choice for scene text), then the faster mode.
    best = max(candidates, key=lambda p: (scores[p]["exact"], p == 11, -scores[p]["seconds"]))
    return {"tuning_images": len(frames), "scores": scores, "chosen_psm": best}


def compare(readers: dict[str, ReadFn], frames: list[Frame], warm: list[Frame]) -> dict[str, Any]:
    """Every reader on every image, interleaved per image so drifting load hits all alike."""
    for name, read in readers.items():
        logger.info("warming up %s", name)
        for f in warm:
            read(f.jpeg)
    rows: list[dict[str, Any]] = []
    for k, f in enumerate(frames):
        truth = f.vins[0]
        row: dict[str, Any] = {
            "index": f.index,
            "size": f"{f.width}x{f.height}",
            "line_height_px": f.line_heights[0],
            "truth": truth,
        }
        for name, read in readers.items():
            t0 = time.perf_counter()
            vin, seen = read(f.jpeg)
            ms = 1000 * (time.perf_counter() - t0)
            row[name] = {
                "vin": vin,
                "outcome": _outcome(vin, truth),
                "ms": round(ms, 1),
                "truth_seen": truth in seen,
            }
        rows.append(row)
        if (k + 1) % 10 == 0:
            logger.info("peers: %d/%d images", k + 1, len(frames))
    results = {name: _score(name, rows) for name in readers}
    return {"images": len(frames), "readers": results, "rows": rows}


def _score(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    outcomes = [r[name]["outcome"] for r in rows]
    n = len(rows)
    small = [r for r in rows if r["line_height_px"] < SMALL_LINE_PX]
    large = [r for r in rows if r["line_height_px"] >= SMALL_LINE_PX]

    def acc(sub: list[dict[str, Any]]) -> float | None:
        return round(sum(r[name]["outcome"] == "exact" for r in sub) / len(sub), 3) if sub else None

    return {
        "exact": outcomes.count("exact"),
        "wrong": outcomes.count("wrong"),
        "no_read": outcomes.count("no_read"),
        "exact_rate": round(outcomes.count("exact") / n, 3) if n else None,
        "exact_rate_small_lines": acc(small),
        "exact_rate_large_lines": acc(large),
        "small_lines": len(small),
        "truth_among_candidates": sum(r[name]["truth_seen"] for r in rows),
        "latency": summary([r[name]["ms"] for r in rows]),
    }


def ratios(results: dict[str, Any], ours_name: str = "ours") -> dict[str, Any]:
    """Peer time / our time (median, p95, mean) and exact reads side by side."""
    base = results[ours_name]
    out = {}
    for name, res in results.items():
        if name == ours_name:
            continue
        lat, ref = res["latency"], base["latency"]
        out[name] = {
            f"{stat}_time_ratio": round(lat[f"{stat}_ms"] / ref[f"{stat}_ms"], 2)
            if ref.get(f"{stat}_ms")
            else None
            for stat in ("median", "p95", "mean")
        }
        out[name]["exact_rate"] = {ours_name: base["exact_rate"], name: res["exact_rate"]}
    return out
