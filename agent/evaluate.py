"""``vin-agent eval``: accuracy, wrong reads, calibration and latency on a labelled set.

DATASET_DIR holds ``labels.csv`` (columns ``file`` and ``vin``, optional
``kind``; other columns ignored) and the images.  This interface is used by
external evaluations: keep it stable.
"""

from __future__ import annotations

import csv
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from agent import imageio
from agent.reader import Reader
from agent.vision.calibration import expected_calibration_error

logger = logging.getLogger(__name__)


class DatasetError(ValueError):
    """The dataset directory or its labels.csv is unusable."""


@dataclass(frozen=True)
class Sample:
    file: Path
    vin: str
    kind: str | None


def load_labels(dataset_dir: Path) -> list[Sample]:
    path = dataset_dir / "labels.csv"
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError:
        raise DatasetError(
            f"{path} not found: a dataset needs labels.csv with columns file,vin"
        ) from None
    if not rows or not {"file", "vin"} <= set(rows[0]):
        raise DatasetError(f"{path}: needs a header with columns 'file' and 'vin'")
    return [
        Sample(
            dataset_dir / r["file"].strip(),
            r["vin"].strip().upper(),
            (r.get("kind") or "").strip() or None,
        )
        for r in rows
        if (r.get("file") or "").strip()
    ]


class Progress:
    """A dependency-free progress bar on stderr (quiet when not a terminal)."""

    def __init__(self, total: int, stream: TextIO = sys.stderr, label: str = "eval") -> None:
        self.total, self.stream, self.label = total, stream, label
        self.start = time.monotonic()
        self.tty = stream.isatty()
        self.last = -1.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if done < self.total and now - self.last < (0.2 if self.tty else 10.0):
            return
        self.last = now
        frac = done / max(self.total, 1)
        rate = done / max(now - self.start, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else 0.0
        bar = "#" * int(30 * frac)
        line = f"{self.label} [{bar:<30}] {done}/{self.total} {rate:.1f} img/s eta {eta:.0f}s"
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        if self.tty and done >= self.total:
            self.stream.write("\n")
        self.stream.flush()


def evaluate(reader: Reader, samples: list[Sample], progress: bool = True) -> dict[str, Any]:
    """Run every image once through the same path as ``read``; return the report dict.

    A file may have several rows (several VINs in one image): a row counts
    as exact when its VIN is among the image's published reads.  Rows with
    an empty ``vin`` mark images without a VIN; any read there is a false
    read, reported under ``negatives`` and kept out of the main figures.
    """
    files = list(dict.fromkeys(s.file for s in samples))
    bar = Progress(len(files)) if progress else None
    outcome: dict[Path, tuple[list[tuple[str, float]], float, str | None]] = {}
    for i, path in enumerate(files):
        t0 = time.perf_counter()
        try:
            result = reader.read_frame(imageio.load(str(path)).image)
            reads, error = [(r.vin, r.confidence) for r in result.reads], None
        except imageio.ImageInputError as exc:
            logger.warning("%s", exc)
            reads, error = [], str(exc)
        outcome[path] = (reads, 1000 * (time.perf_counter() - t0), error)
        if bar:
            bar.update(i + 1)
    rows, negatives, false_reads = score_rows(samples, outcome)
    report = summarize(rows)
    report["images"] = len(files)
    report["negatives"] = {"n": negatives, "false_reads": false_reads}
    return report


Outcome = dict[Path, tuple[list[tuple[str, float]], float, "str | None"]]


def score_rows(samples: list[Sample], outcome: Outcome) -> tuple[list[dict[str, Any]], int, int]:
    """Label rows against each image's published (vin, confidence) reads: the rows for
    ``summarize``, the number of VIN-less images and of those with a (false) read."""
    files = list(dict.fromkeys(s.file for s in samples))
    rows, false_reads, negatives = [], 0, 0
    labelled: dict[Path, set[str]] = {}
    for s in samples:
        labelled.setdefault(s.file, set()).add(s.vin)
    # Reads of VINs nobody labelled in that image; each can make one row wrong.  A read
    # of another labelled VIN of the same image is that row's, never this row's error.
    unmatched = {f: [r for r in outcome[f][0] if r[0] not in labelled[f]] for f in files}
    for s in samples:
        reads, latency, error = outcome[s.file]
        if not s.vin:
            negatives += 1
            false_reads += bool(reads)
            continue
        match = [r for r in reads if r[0] == s.vin] or unmatched[s.file][:1]
        if match and match[0][0] != s.vin:
            unmatched[s.file].pop(0)
        pred: str | None = match[0][0] if match else None
        conf = match[0][1] if match else 0.0
        chars = sum(a == b for a, b in zip(pred or "", s.vin, strict=False)) / max(len(s.vin), 1)
        rows.append(
            {
                "kind": s.kind,
                "pred": pred,
                "truth": s.vin,
                "conf": conf,
                "chars": chars,
                "ms": latency,
                "error": error,
            }
        )
    return rows, negatives, false_reads


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def stats(sub: list[dict[str, Any]]) -> dict[str, Any]:
        n = len(sub)
        if n == 0:
            return {"n": 0, "exact": 0.0, "wrong": 0.0, "no_read": 0.0}
        exact = np.array([r["pred"] == r["truth"] for r in sub])
        read = np.array([r["pred"] is not None for r in sub])
        conf = np.array([r["conf"] for r in sub])
        ms = np.array([r["ms"] for r in sub])
        return {
            "n": n,
            "exact": float(exact.mean()),
            "wrong": float((read & ~exact).mean()),
            "no_read": float((~read).mean()),
            "char_accuracy": float(np.mean([r["chars"] for r in sub])),
            "ece": expected_calibration_error(conf[read], exact[read]) if read.any() else 0.0,
            "latency_ms_p50": float(np.percentile(ms, 50)),
            "latency_ms_p95": float(np.percentile(ms, 95)),
            "errors": int(sum(r["error"] is not None for r in sub)),
        }

    report = stats(rows)
    kinds = sorted({r["kind"] for r in rows if r["kind"]})
    if kinds:
        report["by_kind"] = {k: stats([r for r in rows if r["kind"] == k]) for k in kinds}
    return report


def format_table(report: dict[str, Any]) -> str:
    cols = (
        "n",
        "exact",
        "wrong",
        "no_read",
        "char_accuracy",
        "ece",
        "latency_ms_p50",
        "latency_ms_p95",
    )
    head = f"{'set':<18}" + "".join(f"{c:>15}" for c in cols)
    lines = [head, "-" * len(head)]

    def row(name: str, st: dict[str, Any]) -> str:
        cells = []
        for c in cols:
            v = st.get(c, 0)
            cells.append(f"{v:>15d}" if isinstance(v, int) else f"{v:>15.4f}")
        return f"{name:<18}" + "".join(cells)

    lines.append(row("all", report))
    for kind, st in report.get("by_kind", {}).items():
        lines.append(row(kind[:18], st))
    return "\n".join(lines)
