"""The daemon: cameras -> reader -> visits -> publisher, with signals and sd_notify.

One inference loop serves every camera in turn (the models are loaded once
and a Pi has few cores); each camera has its own capture thread.  SIGTERM
finishes the frame in hand, ends open visits, flushes and publishes
``offline``; SIGHUP reloads the configuration.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import cv2

from agent import __version__
from agent.config import AgentConfig, ConfigError
from agent.events import SeqCounter, payload
from agent.fusion import VisitEvent, VisitTracker
from agent.publish import Publisher
from agent.publish.outbox import OutboxUnavailableError
from agent.reader import Reader
from agent.serve import ServeError, Server
from agent.sources import make_source
from agent.sources.capture import Capture
from agent.systemd import Notifier, watchdog_interval
from agent.vision.manifest import ModelError

logger = logging.getLogger(__name__)

STATUS_INTERVAL_S = 5.0
#: ``run`` exits with this (sysexits EX_CONFIG) when a restart cannot help: bad
#: configuration, tampered models, an unusable state directory.  The systemd unit
#: lists it in RestartPreventExitStatus=, so a broken install does not crash-loop.
EXIT_CONFIG = 78


@dataclass
class CameraState:
    name: str
    capture: Capture
    tracker: VisitTracker
    live: bool
    frames: int = 0
    infer_ms: float = 0.0
    last_ts: float = 0.0
    done: bool = False
    window: list[float] = field(default_factory=list)  # monotonic times of recent frames

    def fps(self, now: float) -> float:
        self.window = [t for t in self.window if now - t <= 10.0]
        return len(self.window) / 10.0


def cpu_temperature() -> float | None:
    try:
        return int(Path("/sys/class/thermal/thermal_zone0/temp").read_text()) / 1000.0
    except (OSError, ValueError):
        return None


def make_publisher(config: AgentConfig) -> Publisher:
    if config.mqtt is None:
        from agent.publish.stdout import StdoutPublisher

        return StdoutPublisher(device_id=config.device_id)
    from agent.publish.mqtt import MqttPublisher
    from agent.publish.outbox import Outbox

    outbox = Outbox(
        config.state_dir / "outbox.sqlite",
        max_messages=config.mqtt.outbox_max_messages,
        max_age_s=config.mqtt.outbox_max_age_s,
    )
    cameras = [c.name for c in config.cameras]  # for Home Assistant discovery
    return MqttPublisher(config.mqtt, config.device_id, outbox, cameras=cameras)


def make_reader(config: AgentConfig) -> Reader:
    return Reader(
        config.models_dir,
        config.reader.runtime,
        policy=config.reader.policy,
        min_confidence=config.reader.min_confidence,
        barcodes=config.reader.barcodes,
        tiles=config.reader.tiles,
        words=config.reader.words,
        second_look=config.reader.second_look,
        quarter_turn=config.reader.quarter_turn,
        max_lines=config.reader.max_lines,
        turned_barcodes=config.reader.turned_barcodes,
    )


def start_server(config: AgentConfig) -> Server | None:
    """The ``[serve]`` endpoint with its own Reader (an interpreter is not shared across
    threads), or None when it is off."""
    if not config.serve.enabled:
        return None
    from agent.serve import create_app

    server = Server(create_app(make_reader(config), config.serve), config.serve)
    server.start()
    logger.info("serving POST http://%s:%d/v1/vinocr", config.serve.host, server.port)
    return server


class Service:
    def __init__(self, config: AgentConfig, reload: Any = None) -> None:
        self.config = config
        self.reload_config = reload  # () -> AgentConfig, for SIGHUP
        self.stop_event = threading.Event()
        self.reload_event = threading.Event()
        self.notifier = Notifier()
        self.started = time.monotonic()

    # -- signals -----------------------------------------------------------
    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            logger.info("SIGHUP: reloading the configuration")
            self.reload_event.set()
        else:
            logger.info("%s: stopping", signal.Signals(signum).name)
            self.stop_event.set()

    def install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    # -- main --------------------------------------------------------------
    def run(self) -> int:
        """Run until stopped or every (finite) source has ended; the exit status."""
        while True:
            code = self._run_once()
            if not self.reload_event.is_set() or self.stop_event.is_set():
                return code
            self.reload_event.clear()
            if self.reload_config is not None:
                try:
                    self.config = self.reload_config()
                except ConfigError as exc:
                    logger.error("reload refused, keeping the running configuration: %s", exc)
            self.notifier.notify("READY=1")

    def _run_once(self) -> int:
        cfg = self.config
        try:
            cfg.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            logger.error("cannot create state directory %s: %s", cfg.state_dir, exc)
            return EXIT_CONFIG
        reader = make_reader(cfg)
        try:
            publisher = make_publisher(cfg)
        except OutboxUnavailableError as exc:
            # Read-only or full state directory: restarting cannot fix it, so say so
            # and exit with the status the unit does not restart on.
            logger.error("%s", exc)
            return EXIT_CONFIG
        try:
            server = start_server(cfg)
        except (ServeError, ImportError, ModelError) as exc:
            logger.error("cannot start the HTTP endpoint ([serve]): %s", exc)
            publisher.stop(timeout=1.0)
            return EXIT_CONFIG
        publisher.start()
        seq = SeqCounter(cfg.state_dir / "seq")
        cameras = []
        for cam_cfg in cfg.cameras:
            source = make_source(cam_cfg.source)
            capture = Capture(
                cam_cfg.name,
                source,
                max_fps=cam_cfg.max_fps,
                motion_threshold=cam_cfg.motion_threshold,
                on_state=lambda name, online, _reason: publisher.publish_status(name, online),
            )
            tracker = VisitTracker(
                reader.recognizer.read_probs,
                min_confidence=cfg.reader.min_confidence,
                visit_timeout=cfg.events.visit_timeout,
                dedupe_window=cfg.events.dedupe_window,
                keep_best_frame=cfg.events.snapshots,
            )
            cameras.append(CameraState(cam_cfg.name, capture, tracker, source.live))
            capture.start()
        self.notifier.ready(f"reading {len(cameras)} camera(s)")
        logger.info(
            "vin-agent %s running: device %s, cameras %s, publishing to %s",
            __version__,
            cfg.device_id,
            ", ".join(c.name for c in cameras),
            "MQTT" if cfg.mqtt else "stdout",
        )
        try:
            self._loop(cameras, reader, publisher, seq)
        finally:
            # All at once: stalled cameras each wait out a join, and systemd's stop
            # window is shared by all of them.
            for cam in cameras:
                cam.capture.request_stop()
            deadline = time.monotonic() + 5.0
            for cam in cameras:
                cam.capture.stop(timeout=max(0.1, deadline - time.monotonic()))
            now = time.time()
            for cam in cameras:
                if not cam.done:
                    self._finish(cam, max(now, cam.last_ts), publisher, seq, reader)
            self.notifier.stopping()
            if server is not None:
                server.stop()
            publisher.stop(timeout=5.0)
        failed = [c.name for c in cameras if c.capture.error]
        if failed and not self.stop_event.is_set():
            logger.error("camera(s) failed: %s", ", ".join(failed))
            return 1
        return 0

    def _loop(
        self, cameras: list[CameraState], reader: Reader, publisher: Publisher, seq: SeqCounter
    ) -> None:
        wd = watchdog_interval()
        last_wd = last_status = 0.0
        last_stats = time.monotonic()
        wait = 0.5 / max(len(cameras), 1)
        while not self.stop_event.is_set() and not self.reload_event.is_set():
            active = [c for c in cameras if not c.done]
            if not active:
                logger.info("every source has ended")
                return
            for cam in active:
                frame = cam.capture.get(wait)
                now = time.monotonic()
                if frame is not None:
                    t0 = time.perf_counter()
                    try:
                        result = reader.read_frame(frame.image)
                    except Exception:  # one bad frame must never stop the daemon
                        logger.exception("camera %s: frame %d failed", cam.name, frame.index)
                        continue
                    ms = 1000 * (time.perf_counter() - t0)
                    cam.infer_ms = ms if cam.frames == 0 else 0.9 * cam.infer_ms + 0.1 * ms
                    cam.frames += 1
                    cam.window.append(now)
                    cam.last_ts = frame.timestamp
                    events = cam.tracker.update(result, frame.timestamp, frame.image)
                    self._publish(cam, events, publisher, seq, reader)
                elif cam.live:
                    self._publish(cam, cam.tracker.expire(time.time()), publisher, seq, reader)
                if cam.capture.finished:
                    self._finish(cam, cam.last_ts, publisher, seq, reader)
            now = time.monotonic()
            # The loop itself proves liveness: a hung inference stops the pings.
            if wd is not None and now - last_wd >= wd:
                self.notifier.watchdog()
                last_wd = now
            if now - last_status >= STATUS_INTERVAL_S:
                self.notifier.status(
                    ", ".join(f"{c.name} {c.fps(now):.1f} fps" for c in cameras) or "idle"
                )
                last_status = now
            if now - last_stats >= self.config.stats_interval:
                publisher.publish_stats(self.stats(cameras, publisher))
                last_stats = now

    def _finish(
        self, cam: CameraState, ts: float, publisher: Publisher, seq: SeqCounter, reader: Reader
    ) -> None:
        """End the camera's open visits and announce it offline."""
        cam.done = True
        self._publish(cam, cam.tracker.flush(ts), publisher, seq, reader)
        publisher.publish_status(cam.name, False)

    def _publish(
        self,
        cam: CameraState,
        events: list[VisitEvent],
        publisher: Publisher,
        seq: SeqCounter,
        reader: Reader,
    ) -> None:
        for event in events:
            msg = payload(
                event,
                device_id=self.config.device_id,
                camera=cam.name,
                seq=seq.take(),
                min_confidence=self.config.reader.min_confidence,
                models=reader.models,
            )
            publisher.publish_event(cam.name, msg)
            logger.info(
                "%s %s %s %s (%.3f)",
                cam.name,
                event.type,
                msg["event_id"][:8],
                msg["vin"] or msg.get("reason"),
                msg["confidence"],
            )
            best = event.visit.best_frame
            if event.type == "end" and self.config.events.snapshots and best is not None:
                ok, jpeg = cv2.imencode(".jpg", best, [cv2.IMWRITE_JPEG_QUALITY, 85])
                if ok:
                    publisher.publish_snapshot(cam.name, jpeg.tobytes())
                event.visit.best_frame = None

    def stats(self, cameras: list[CameraState], publisher: Publisher) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "version": __version__,
            "uptime_s": round(now - self.started, 1),
            "cpu_temperature_c": cpu_temperature(),
            "cameras": {
                c.name: {
                    "online": bool(c.capture.online),
                    "fps": round(c.fps(now), 2),
                    "inference_ms": round(c.infer_ms, 1),
                    "frames": c.frames,
                    "dropped": c.capture.dropped,
                    "skipped_still": c.capture.skipped_still,
                }
                for c in cameras
            },
            "publisher": publisher.stats(),
        }
