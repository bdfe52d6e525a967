"""Network cameras that drop, stall or send garbage, against a real MJPEG-over-HTTP server.

Cheap IP cameras serve ``multipart/x-mixed-replace`` JPEGs over HTTP; this
machine's OpenCV opens such a stream from Python's ``http.server`` through its
FFmpeg backend, so no external streaming tool is needed.  The server below
serves one stream per path and can be switched, per path, to the faults a gate
camera shows in the field: the connection dropped mid-frame and the camera
gone (503) for a while, a stall (socket open, nothing sent), and garbage bytes
instead of JPEGs.  Then it comes back.
"""

from __future__ import annotations

import http.server
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from agent.sources import capture
from agent.sources.base import SourceError
from agent.sources.capture import Capture
from agent.sources.opencv import OpenCVConfig, OpenCVSource
from tests.conftest import REPO, start_daemon
from tests.mqtt_broker import Collector, Messages, MosquittoBroker

pytestmark = pytest.mark.integration

FPS = 10.0
MODES = ("normal", "down", "stall", "garbage", "broken")


def _jpegs(n: int = 8) -> list[bytes]:
    """A few distinct 320x240 frames (a moving block), JPEG-encoded once."""
    out = []
    for i in range(n):
        img = np.full((240, 320, 3), 90, np.uint8)
        cv2.rectangle(img, (20 + 30 * i, 80), (60 + 30 * i, 160), (220, 220, 220), -1)
        ok, buf = cv2.imencode(".jpg", img)
        assert ok
        out.append(buf.tobytes())
    return out


class MjpegServer:
    """``http://127.0.0.1:PORT/<name>.mjpg``: one MJPEG stream per path, each with a mode.

    ``normal`` streams at ``FPS``; ``down`` cuts open streams in the middle of a
    JPEG and answers new requests 503 (a rebooting camera); ``stall`` keeps
    sockets open and sends nothing, new requests get headers and then nothing;
    ``garbage`` sends random bytes in the parts instead of JPEGs; ``broken`` sends
    two good frames on each new connection, then garbage (it opens fine and fails
    at once, every time).  Setting
    ``normal`` again brings the stream back.  ``connects`` records when each
    path was requested (monotonic time), to see the client's reconnect backoff.
    ``jpegs`` are the frames served in a loop (tests/test_soak.py streams the clip).
    """

    def __init__(self, jpegs: list[bytes] | None = None, fps: float = FPS) -> None:
        self.modes: dict[str, str] = {}
        self.connects: dict[str, list[float]] = defaultdict(list)
        self.closing = threading.Event()
        jpegs = jpegs or _jpegs()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one stream per connection; close ends it

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path
                owner.connects[path].append(time.monotonic())
                if owner.mode(path) == "down":
                    self.send_error(503, "camera rebooting")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                self.wfile.flush()
                n = 0
                try:
                    while not owner.closing.is_set():
                        mode = owner.mode(path)
                        if mode == "stall":
                            time.sleep(0.05)
                            continue
                        body = jpegs[n % len(jpegs)]
                        n += 1
                        head = b"--frame\r\nContent-Type: image/jpeg\r\n"
                        head += b"Content-Length: %d\r\n\r\n" % len(body)
                        if mode == "down":  # cut in the middle of a frame, camera gone
                            self.wfile.write(head + body[: len(body) // 2])
                            self.wfile.flush()
                            return
                        if mode == "garbage" or (mode == "broken" and n > 2):
                            body = os.urandom(len(body))
                        self.wfile.write(head + body + b"\r\n")
                        self.wfile.flush()
                        time.sleep(1.0 / fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client hung up (reconnect, close)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}.mjpg"

    def mode(self, path: str) -> str:
        return self.modes.get(path, "normal")

    def set(self, name: str, mode: str) -> None:
        assert mode in MODES
        self.modes[f"/{name}.mjpg"] = mode

    def attempts(self, name: str, since: float = 0.0) -> list[float]:
        return [t for t in self.connects[f"/{name}.mjpg"] if t >= since]

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def mjpeg() -> Iterator[MjpegServer]:
    server = MjpegServer()
    yield server
    server.close()


def _source(url: str, **kw: Any) -> OpenCVSource:
    cfg = {"open_timeout_s": 5.0, "read_timeout_s": 5.0, **kw}
    return OpenCVSource(OpenCVConfig(type="opencv", url=url, **cfg))


# -- the source alone -----------------------------------------------------------


def test_this_opencv_reads_an_mjpeg_http_stream(mjpeg: MjpegServer) -> None:
    """Every other test here rests on this: cv2 (FFmpeg backend) opens multipart MJPEG
    over HTTP, as served by cheap IP cameras, and decodes the frames."""
    src = _source(mjpeg.url("cam"))
    src.open()
    try:
        frames = [src.read() for _ in range(3)]
    finally:
        src.close()
    assert all(f is not None and f.image.shape == (240, 320, 3) for f in frames)


def test_stall_fails_the_read_after_read_timeout_not_open_timeout(mjpeg: MjpegServer) -> None:
    """A camera that keeps its socket open but sends nothing must not hang the capture
    thread: the read fails after ``read_timeout_s`` (the capture thread then reopens).
    Regression: the open timeout was applied to reads and ``read_timeout_s`` ignored."""
    src = _source(mjpeg.url("cam"), open_timeout_s=20.0, read_timeout_s=1.0)
    src.open()
    try:
        assert src.read() is not None
        mjpeg.set("cam", "stall")
        t0 = time.monotonic()
        with pytest.raises(SourceError, match="stream lost or stalled"):
            for _ in range(100):  # frames already buffered come first
                src.read()
        waited = time.monotonic() - t0
    finally:
        src.close()
    assert 0.5 < waited < 8.0, f"the stall was detected after {waited:.1f} s"


def test_drop_and_garbage_raise_source_error_not_end_of_stream(mjpeg: MjpegServer) -> None:
    """A dropped connection and garbage bytes are a lost stream (SourceError, so the
    capture thread reconnects), never ``None`` (which would end the camera for good)."""
    for fault in ("down", "garbage"):
        mjpeg.set("cam", "normal")
        src = _source(mjpeg.url("cam"), read_timeout_s=3.0)
        src.open()
        try:
            assert src.read() is not None
            mjpeg.set("cam", fault)
            with pytest.raises(SourceError):
                for _ in range(100):
                    assert src.read() is not None, f"{fault}: stream ended instead of failing"
        finally:
            src.close()


def test_stream_that_fails_right_after_opening_is_reopened_with_backoff(
    mjpeg: MjpegServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A camera that accepts every connection and then sends garbage must be reopened
    with backoff.  Regression: backoff covered only failed opens, so such a stream was
    reopened in a tight loop (about 10 connections and 20 retained status messages per
    second, each with a warning in the log) for as long as the camera stayed broken."""
    monkeypatch.setattr(capture, "BACKOFF_MIN_S", 0.25)
    mjpeg.set("cam", "broken")
    states: list[bool] = []
    cap = Capture(
        "cam",
        _source(mjpeg.url("cam"), open_timeout_s=3.0, read_timeout_s=2.0),
        on_state=lambda _n, online, _r: states.append(online),
    )
    t0 = time.monotonic()
    cap.start()
    while time.monotonic() - t0 < 4.0:
        cap.get(0.1)
    cap.stop()
    tries = mjpeg.attempts("cam", since=t0)
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(tries)]
    # Backoff 0.25, 0.5, 1, 2 s: about 5 connections in 4 s (the tight loop made 20).
    assert 3 <= len(tries) <= 7, f"{len(tries)} connections in 4 s, gaps {gaps}"
    assert gaps[-1] > 2 * gaps[0], f"the wait does not grow: gaps {gaps}"
    assert len(states) <= 2 * len(tries)


CLOSE_DURING_READ = textwrap.dedent(
    """
    import sys, threading, time
    from agent.sources.opencv import OpenCVConfig, OpenCVSource
    from agent.sources.base import SourceError
    src = OpenCVSource(OpenCVConfig(type="opencv", url=sys.argv[1], read_timeout_s=2.0))
    src.open()
    for _ in range(3):
        src.read()
    open(sys.argv[2], "w").close()  # tell the test to stall the stream now
    result = []
    def reader():
        try:
            while True:
                src.read()
        except SourceError as exc:
            result.append(str(exc))
    t = threading.Thread(target=reader)
    t.start()
    time.sleep(1.0)   # the reader is blocked in cv2's read of a stalled stream
    src.close()       # what Capture.stop does at SIGTERM / SIGHUP
    src.close()       # twice is safe
    t.join(10)
    print("survived:", result)
    """
)


def test_close_while_a_read_is_blocked_does_not_crash(mjpeg: MjpegServer, tmp_path: Path) -> None:
    """``Capture.stop`` (SIGTERM, SIGHUP reload) closes the source from the main thread
    while the capture thread may be blocked in ``cv2.VideoCapture.read`` on a stalled
    stream.  Releasing the capture under a running read crashed the whole daemon with
    SIGSEGV; the release is now left to the reading thread.  Run in a child process so
    a crash fails this test instead of killing pytest."""
    flag = tmp_path / "stall-now"
    proc = subprocess.Popen(
        [sys.executable, "-c", CLOSE_DURING_READ, mjpeg.url("cam"), str(flag)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not flag.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    mjpeg.set("cam", "stall")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{err[-2000:]}"
    assert "survived: [" in out and "closed" in out, out


# -- the daemon -----------------------------------------------------------------


def _status(msgs: Messages, camera: str) -> list[bool]:
    topic = f"vin/test-gate/{camera}/status"
    return [bool(json.loads(m.payload)["online"]) for m in msgs if m.topic == topic]


def _frames(msgs: Messages, camera: str) -> int:
    stats = [json.loads(m.payload) for m in msgs if m.topic == "vin/test-gate/stats"]
    return int(stats[-1]["cameras"][camera]["frames"]) if stats else 0


@pytest.mark.slow
def test_daemon_rides_out_a_dropping_stalling_garbage_stream(
    cli: list[str], tmp_path: Path, broker: MosquittoBroker, mjpeg: MjpegServer
) -> None:
    """The gate's promise with a bad network camera: `vin-agent run` with two MJPEG
    cameras, one of which drops, stalls and sends garbage in turn.  Each fault turns the
    flaky camera's retained status offline and, once the stream is back, online again
    (reopened with backoff, not in a tight loop); the daemon never crashes; the healthy
    camera keeps producing frames throughout; SIGTERM in the middle of a stall exits 0."""
    sub = Collector(broker.host, broker.port, "vin/#")
    cfg = tmp_path / "config.toml"
    cam = '[[cameras]]\nname = "{name}"\n[cameras.source]\ntype = "opencv"\nurl = "{url}"\n'
    cam += "open_timeout_s = 3.0\nread_timeout_s = 2.0\n"
    cfg.write_text(
        'device_id = "test-gate"\nstats_interval = 1.0\n'
        f'[mqtt]\nurl = "mqtt://{broker.host}:{broker.port}"\n'
        + cam.format(name="flaky", url=mjpeg.url("flaky"))
        + cam.format(name="healthy", url=mjpeg.url("healthy"))
    )
    proc, err_lines, drain = start_daemon(cli, cfg, tmp_path / "state")
    timeline: list[str] = []
    t_start = time.monotonic()

    def mark(what: str) -> None:
        timeline.append(f"{time.monotonic() - t_start:6.1f}s {what}")

    def wait(pred: Any, what: str, timeout: float = 30.0) -> Messages:
        msgs = sub.wait_for(lambda m: proc.poll() is not None or pred(m), timeout)
        assert proc.poll() is None, f"daemon died ({proc.returncode}) waiting for {what}"
        assert pred(msgs), f"timed out waiting for {what}\n" + "\n".join(timeline)
        mark(what)
        return msgs

    def fault(kind: str, hold_s: float) -> tuple[int, float]:
        """Inject a fault, see the flaky camera go offline, restore, see it online again."""
        msgs = sub.wait_for(lambda m: False, 0)
        n0, frames0 = len(_status(msgs, "flaky")), _frames(msgs, "healthy")
        t0 = time.monotonic()
        mjpeg.set("flaky", kind)
        mark(f"flaky -> {kind}")
        wait(lambda m: False in _status(m, "flaky")[n0:], f"flaky offline after {kind}")
        detected = time.monotonic() - t0
        time.sleep(max(0.0, hold_s - detected))
        assert proc.poll() is None, f"daemon died during {kind}"
        mjpeg.set("flaky", "normal")
        mark("flaky -> normal")
        msgs = wait(
            lambda m: _status(m, "flaky")[-1] is True and False in _status(m, "flaky")[n0:],
            f"flaky online again after {kind}",
        )
        back = _frames(msgs, "flaky")
        msgs = wait(lambda m: _frames(m, "flaky") > back + 3, f"flaky frames again ({kind})")
        # Throughout the fault the healthy camera kept being read.
        assert _frames(msgs, "healthy") > frames0 + 5, f"healthy camera starved ({kind})"
        flips = len(_status(msgs, "flaky")) - n0
        mark(f"{kind}: {flips} status changes, {len(mjpeg.attempts('flaky', t0))} connections")
        return flips, detected

    try:
        wait(
            lambda m: _status(m, "flaky")[-1:] == [True] and _status(m, "healthy")[-1:] == [True],
            "both cameras online",
            timeout=60,
        )
        wait(lambda m: _frames(m, "flaky") > 0 and _frames(m, "healthy") > 0, "frames from both")

        # (a) drop mid-frame, camera away ~6 s: offline, reopened with backoff, online.
        t_drop = time.monotonic()
        flips_drop, _ = fault("down", hold_s=6.0)
        tries = mjpeg.attempts("flaky", since=t_drop)
        gaps = [b - a for a, b in itertools.pairwise(tries)]
        mark(f"reconnect attempts while down: gaps {[round(g, 1) for g in gaps]}")
        assert len(tries) <= 6, f"reconnecting in a tight loop: {len(tries)} attempts"
        assert len(gaps) >= 2 and gaps[1] > 1.5 * gaps[0], f"no backoff: gaps {gaps}"

        # (b) stall: detected by the read timeout (2 s), not hung forever.
        flips_stall, stall_detected = fault("stall", hold_s=5.0)
        assert stall_detected < 2.0 + 4.0, f"stall noticed only after {stall_detected:.1f} s"

        # (c) garbage instead of JPEGs: the daemon survives, the camera recovers.
        flips_garbage, _ = fault("garbage", hold_s=6.0)
        for kind, flips in (("down", flips_drop), ("stall", flips_stall)):
            assert flips <= 4, f"{kind}: status flapped {flips} times"
        assert flips_garbage <= 8, f"garbage: status flapped {flips_garbage} times"

        # (d) the healthy camera never went offline.
        msgs = sub.wait_for(lambda m: False, 0)
        assert False not in _status(msgs, "healthy")

        # (e) SIGTERM while the flaky stream is stalled: its capture thread is blocked in
        # cv2's read (frames were flowing just before), the case that used to SIGSEGV.
        mjpeg.set("flaky", "stall")
        time.sleep(0.5)
        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        mark(f"SIGTERM -> exit {proc.returncode} in {time.monotonic() - t_term:.1f} s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        drain.join(5)
        print("\n".join(timeline))
        print("".join(err_lines[-5:]))
    err = "".join(err_lines)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    msgs = sub.wait_for(lambda m: _status(m, "flaky")[-1:] == [False], 10)
    sub.close()
    assert _status(msgs, "healthy")[-1] is False  # announced offline at shutdown
