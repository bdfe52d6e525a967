"""Soak: `vin-agent run` on an endless camera stream, watching memory and throughput.

A gate runs for months; a leak of a few kilobytes per frame or a pipeline that
slows down as some list grows only shows after hours.  This test runs the real
daemon on a live MJPEG-over-HTTP stream that loops the frames of
samples/clip.avi (the server of tests/sources/test_stream_faults.py; a stream
never ends, so the run can be as long as wanted and needs no disk), publishing
to a real broker, and samples the process RSS (VmRSS in /proc/<pid>/status) and
the frames per second (from the stats messages) every few seconds.  After a
warm-up it asserts that the last third of the run uses not much more memory
and is not much slower than the first third.

CI runs it for ``VIN_AGENT_SOAK_S`` seconds, 60 by default; run longer by hand::

    VIN_AGENT_SOAK_S=3600 nice -n 10 .venv/bin/pytest -s -m slow tests/test_soak.py

``-s`` shows the summary (median RSS and fps per third) for the notes.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import pytest

from tests.conftest import REPO, start_daemon
from tests.mqtt_broker import Collector, MosquittoBroker
from tests.sources.test_stream_faults import MjpegServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIP = REPO / "samples" / "clip.avi"
SOAK_S = float(os.environ.get("VIN_AGENT_SOAK_S", "60"))
STREAM_FPS = 15.0  # what a gate camera sends; the daemon drops what it cannot keep up with
WARMUP_S = min(15.0, SOAK_S / 4)  # models loading, allocator and caches filling up
SAMPLE_S = 3.0 if SOAK_S <= 300 else 10.0
RSS_GROWTH_MAX_MB = 15.0  # between the medians of the first and the last third
FPS_KEEP = 0.7  # last third's median fps at least this share of the first third's


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the daemon started
    rss_mb: float  # VmRSS of the daemon
    frames: int  # frames processed (stats)
    uptime_s: float  # the daemon's uptime when it sent those stats
    inference_ms: float  # smoothed per-frame inference time (stats)


def _clip_jpegs() -> list[bytes]:
    cap = cv2.VideoCapture(str(CLIP))
    jpegs = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        jpegs.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
    cap.release()
    assert len(jpegs) > 10, "samples/clip.avi did not decode"
    return jpegs


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024  # kB
    raise AssertionError(f"no VmRSS for {pid}")


def _thirds(values: list[float]) -> tuple[float, float, float]:
    n = len(values) // 3
    return (
        statistics.median(values[:n]),
        statistics.median(values[n:-n]),
        statistics.median(values[-n:]),
    )


def test_soak_memory_and_throughput_stay_flat(
    cli: list[str], tmp_path: Path, broker: MosquittoBroker
) -> None:
    """Hours of frames must not grow memory or slow the loop: frames are read, visits open
    and end, events go through the outbox to the broker, over and over.  Fails when RSS
    grows by more than 15 MB from the first to the last third of the run (after warm-up)
    or when the last third's fps falls below 70 % of the first third's."""
    server = MjpegServer(_clip_jpegs(), fps=STREAM_FPS)
    sub = Collector(broker.host, broker.port, "vin/#")
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        'device_id = "soak"\nstats_interval = 1.0\n'
        # Every loop of the clip (about 2 s) is a new visit of each vehicle, so visits
        # open and end and events flow for the whole run, not one endless visit.
        "[events]\nvisit_timeout = 1.0\ndedupe_window = 0.0\n"
        f'[mqtt]\nurl = "mqtt://{broker.host}:{broker.port}"\n'
        f'[[cameras]]\nname = "gate"\n[cameras.source]\ntype = "opencv"\n'
        f'url = "{server.url("clip")}"\n'
    )
    proc, err_lines, drain = start_daemon(cli, cfg, tmp_path / "state")

    def stats() -> list[dict]:
        return [json.loads(m.payload) for m in sub.messages if m.topic == "vin/soak/stats"]

    samples: list[Sample] = []
    t0 = time.monotonic()
    try:
        sub.wait_for(lambda m: any(x.topic == "vin/soak/stats" for x in m), 60)
        assert proc.poll() is None, "".join(err_lines)[-3000:]
        while (elapsed := time.monotonic() - t0) < SOAK_S:
            assert proc.poll() is None, f"daemon died ({proc.returncode})\n" + "".join(
                err_lines[-40:]
            )
            last = stats()[-1]
            cam = last["cameras"]["gate"]
            samples.append(
                Sample(
                    elapsed, _rss_mb(proc.pid), cam["frames"], last["uptime_s"], cam["inference_ms"]
                )
            )
            time.sleep(SAMPLE_S)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        drain.join(5)
        server.close()
    msgs = sub.wait_for(lambda m: False, 1.0)
    sub.close()
    err = "".join(err_lines)
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]

    kept = [s for s in samples if s.at >= WARMUP_S]
    assert len(kept) >= 9, f"only {len(kept)} samples after warm-up: raise VIN_AGENT_SOAK_S"
    rss = [s.rss_mb for s in kept]
    # fps from the frame counter between samples: exact, no 10 s smoothing window.
    fps = [
        (b.frames - a.frames) / (b.uptime_s - a.uptime_s)
        for a, b in itertools.pairwise(kept)
        if b.uptime_s > a.uptime_s
    ]
    events = [m for m in msgs if m.topic.endswith("/events")]
    rss_thirds, fps_thirds = _thirds(rss), _thirds(fps)
    ms_thirds = _thirds([s.inference_ms for s in kept])
    print(
        f"\nsoak {SOAK_S:.0f} s, stream {STREAM_FPS:.0f} fps, {len(samples)} samples "
        f"({len(kept)} after {WARMUP_S:.0f} s warm-up), {kept[-1].frames} frames, "
        f"{len(events)} events\n"
        f"RSS MB median by third: {' / '.join(f'{x:.1f}' for x in rss_thirds)} "
        f"(min {min(rss):.1f}, max {max(rss):.1f})\n"
        f"fps median by third:    {' / '.join(f'{x:.2f}' for x in fps_thirds)}\n"
        f"inference ms by third:  {' / '.join(f'{x:.1f}' for x in ms_thirds)}"
    )
    assert events, "no event was published: the pipeline did not do its work"
    growth = rss_thirds[2] - rss_thirds[0]
    assert growth < RSS_GROWTH_MAX_MB, f"RSS grew {growth:.1f} MB: {rss}"
    assert fps_thirds[2] >= FPS_KEEP * fps_thirds[0], f"fps fell: {fps}"
