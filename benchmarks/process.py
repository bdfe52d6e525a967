"""Measurements in fresh processes: start-up, the daemon's cold start and its memory on clips."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agent.vision.manifest import load_manifest
from benchmarks.common import summary

logger = logging.getLogger(__name__)

TIME_V = Path("/usr/bin/time")
EVENT_TYPES = {"new", "update", "end"}

_READER_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import agent
from agent.reader import Reader
t1 = time.perf_counter()
try:
    Reader(sys.argv[1] or None)
    what = "Reader()"
except agent.vision.manifest.ModelError:  # no detector yet: time what there is
    from agent.vision.manifest import load_manifest
    from agent.vision.recognizer import Recognizer
    t1 = time.perf_counter()
    Recognizer(load_manifest(sys.argv[1] or None))
    what = "Recognizer only (Reader() failed)"
t2 = time.perf_counter()
print(json.dumps({"import_ms": 1000 * (t1 - t0), "load_ms": 1000 * (t2 - t1), "what": what}))
"""

_RUSAGE_CHILD = """
import resource, subprocess, sys
subprocess.run(sys.argv[2:], stdout=open(sys.argv[1], "wb"), stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def cli() -> str:
    """The installed console script next to this interpreter (what users run)."""
    return str(Path(sys.executable).with_name("vin-agent"))


def child_env() -> dict[str, str]:
    """The environment without the agent's own settings, so a user's config cannot leak in."""
    return {k: v for k, v in os.environ.items() if not k.startswith("VIN_AGENT_")}


def _wall_ms(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(  # noqa: S603 - fixed argument list, no shell
        cmd, capture_output=True, env=child_env(), timeout=300, check=True
    )
    return 1000 * (time.perf_counter() - t0), proc.stdout.decode()


def startup(models_dir: Path | None, repeat: int) -> dict[str, Any]:
    """Interpreter start, ``import agent``, and import + Reader() in fresh processes."""
    py = sys.executable
    # One untimed run of each first: the first process after a while pays for disk reads.
    _wall_ms([py, "-c", "import agent.reader"])
    baseline = [_wall_ms([py, "-c", "pass"])[0] for _ in range(repeat)]
    import_agent = [_wall_ms([py, "-c", "import agent"])[0] for _ in range(repeat)]
    wall, imports, loads, what = [], [], [], ""
    for _ in range(repeat):
        ms, out = _wall_ms([py, "-c", _READER_CHILD, str(models_dir or "")])
        inner = json.loads(out.strip().splitlines()[-1])
        wall.append(ms)
        imports.append(inner["import_ms"])
        loads.append(inner["load_ms"])
        what = inner["what"]
    return {
        "runs": repeat,
        "python_baseline": summary(baseline),
        "import_agent_process": summary(import_agent),
        "reader_process": summary(wall),
        "reader_imports_in_process": summary(imports),
        "reader_model_load_in_process": summary(loads),
        "loaded": what,
        "notes": "wall times of fresh `python -c` processes (page cache warm); "
        "in-process splits: `import agent` + `from agent.reader import Reader`, then Reader()",
    }


def model_files(models_dir: Path | None) -> dict[str, Any]:
    manifest = load_manifest(models_dir)
    out: dict[str, Any] = {"directory": str(manifest.directory)}
    for name, entry in sorted(manifest.models.items()):
        out[name] = {
            "file": entry.path.name,
            "bytes": entry.path.stat().st_size if entry.path.exists() else None,
            "version": entry.version,
            "sha256": entry.sha256[:16],
        }
    return out


def _run_cmd(clip: Path, state: Path, models_dir: Path | None) -> list[str]:
    cmd = [cli(), "run", "--source", str(clip), "--no-realtime", "--state-dir", str(state)]
    return cmd + (["--models-dir", str(models_dir)] if models_dir else [])


def _events(path: Path) -> list[dict[str, Any]]:
    events = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        # The stdout sink writes {"topic": ..., "payload": {...}} lines.
        msg = obj.get("payload", obj) if isinstance(obj, dict) else None
        if isinstance(msg, dict) and msg.get("type") in EVENT_TYPES and "event_id" in msg:
            events.append(msg)
    return events


def make_clip(path: Path, seed: int, vehicles: int) -> tuple[list[str], int]:
    """A training.clip replay clip; returns its VINs and frame count."""
    from training.clip import make_clip as _make

    frames_per_vehicle, gap = 5, 3
    vins = _make(path, seed, vehicles, frames_per_vehicle=frames_per_vehicle, gap_frames=gap)
    return vins, vehicles * (frames_per_vehicle + gap)


def clip_memory(
    clips: dict[int, tuple[Path, list[str], int]], models_dir: Path | None
) -> dict[str, Any]:
    """Peak RSS and wall time of ``vin-agent run`` over each clip (stdout sink)."""
    runs = []
    for vehicles, (clip, vins, n_frames) in sorted(clips.items()):
        with tempfile.TemporaryDirectory(prefix="vin-bench-run-") as tmp:
            out = Path(tmp) / "stdout.jsonl"
            cmd = _run_cmd(clip, Path(tmp) / "state", models_dir)
            t0 = time.perf_counter()
            if TIME_V.exists():
                method = "/usr/bin/time -v"
                with out.open("wb") as fh:
                    proc = subprocess.run(  # noqa: S603 - fixed argument list, no shell
                        [str(TIME_V), "-v", *cmd],
                        stdout=fh,
                        stderr=subprocess.PIPE,
                        env=child_env(),
                        timeout=1800,
                        check=False,
                    )
                m = re.search(rb"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
                rss_kb = int(m.group(1)) if m else None
                status = proc.returncode
            else:
                method = "getrusage(RUSAGE_CHILDREN) in a fresh process"
                proc = subprocess.run(  # noqa: S603 - fixed argument list, no shell
                    [sys.executable, "-c", _RUSAGE_CHILD, str(out), *cmd],
                    capture_output=True,
                    env=child_env(),
                    timeout=1800,
                    check=False,
                )
                rss_kb = int(proc.stdout.decode().split()[-1]) if proc.stdout.strip() else None
                status = proc.returncode
            seconds = time.perf_counter() - t0
            events = _events(out)
        published = [e["vin"] for e in events if e["type"] == "new" and e.get("vin")]
        runs.append(
            {
                "vehicles": vehicles,
                "frames": n_frames,
                "exit_status": status,
                "peak_rss_mb": round(rss_kb / 1024, 1) if rss_kb else None,
                "wall_s": round(seconds, 2),
                "frames_per_s_incl_startup": round(n_frames / seconds, 2),
                "events": len(events),
                "new_events": len(published),
                "vins_published_correctly": len(set(published) & set(vins)),
            }
        )
    rss = [r["peak_rss_mb"] for r in runs if r["peak_rss_mb"]]
    return {
        "method": method if runs else None,
        "command": " ".join(["vin-agent", *_run_cmd(Path("CLIP"), Path("TMP"), models_dir)[1:]]),
        "runs": runs,
        "rss_growth_mb": round(rss[-1] - rss[0], 1) if len(rss) > 1 else None,
    }


def cold_start(clip: Path, models_dir: Path | None, repeat: int) -> dict[str, Any]:
    """Seconds from spawning ``vin-agent run`` to its first event line on stdout."""
    samples, failures = [], 0
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="vin-bench-cold-") as tmp:
            t0 = time.perf_counter()
            proc = subprocess.Popen(  # noqa: S603 - fixed argument list, no shell
                _run_cmd(clip, Path(tmp) / "state", models_dir),
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=child_env(),
            )
            first = None
            try:
                assert proc.stdout is not None  # noqa: S101 - Popen(stdout=PIPE) guarantees it
                for line in proc.stdout:
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        continue
                    # The stdout sink writes {"topic": ..., "payload": {...}} lines.
                    msg = obj.get("payload", obj) if isinstance(obj, dict) else None
                    if isinstance(msg, dict) and msg.get("type") in EVENT_TYPES:
                        first = 1000 * (time.perf_counter() - t0)
                        break
            finally:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if first is None:
                failures += 1
            else:
                samples.append(first)
    return {
        "runs": repeat,
        "no_event": failures,
        **summary(samples),
        "notes": "spawn of `vin-agent run --source CLIP --no-realtime` (stdout sink) to the "
        "first visit event line; includes imports, model load and the first vehicle's frames",
    }
