"""Camera sources on real files, streams written by OpenCV, and a picamera2 stand-in."""

from __future__ import annotations

import sys
import threading
import time
import types
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest

from agent.sources import SourceError, make_source
from agent.sources.base import Frame, Source
from agent.sources.capture import Capture, MotionGate
from agent.sources.images import ImagesConfig, ImagesSource
from agent.sources.opencv import OpenCVConfig, OpenCVSource
from agent.sources.picamera2 import Picamera2Config, Picamera2Source


def _write_images(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        img = np.full((48, 64, 3), 20 * i, np.uint8)
        p = folder / f"frame_{i:03d}.jpg"
        cv2.imwrite(str(p), img)
        paths.append(p)
    return paths


def _write_video(path: Path, n: int, fps: float = 25.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((48, 64, 3), (i * 7) % 255, np.uint8))
    writer.release()


def test_images_replay_in_name_order_skipping_bad_files(tmp_path: Path) -> None:
    """A replay is in name order, and a corrupt file is skipped, not fatal."""
    paths = _write_images(tmp_path, 3)
    (tmp_path / "frame_001b.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    src = ImagesSource(ImagesConfig(type="images", path=str(tmp_path)))
    src.open()
    names = []
    while (f := src.read()) is not None:
        names.append(f.name)
    assert names == [p.name for p in paths]
    assert src.finite


def test_images_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    src = ImagesSource(ImagesConfig(type="images", path=str(tmp_path / "nope")))
    with pytest.raises(SourceError, match="no such directory"):
        src.open()


def test_images_watch_picks_up_new_files_once_complete(tmp_path: Path) -> None:
    """FTP-fed folders: files appear over time and must each be read once, whole."""
    src = ImagesSource(
        ImagesConfig(type="images", path=str(tmp_path), watch=True, poll_s=0.05, settle_s=0.1)
    )
    src.open()
    got: list[str] = []
    t = threading.Thread(target=lambda: got.extend(f.name for f in iter(src.read, None)))
    t.start()
    _write_images(tmp_path, 2)
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    src.close()
    t.join(2)
    assert got == ["frame_000.jpg", "frame_001.jpg"]


def test_images_watch_reads_an_overwritten_file_again(tmp_path: Path) -> None:
    """Some cameras FTP every snapshot to the same name: each new version is a new frame."""
    src = ImagesSource(
        ImagesConfig(type="images", path=str(tmp_path), watch=True, poll_s=0.05, settle_s=0.1)
    )
    src.open()
    got: list[int] = []
    t = threading.Thread(
        target=lambda: got.extend(int(f.image[0, 0, 0]) for f in iter(src.read, None))
    )
    t.start()
    snapshot = tmp_path / "snapshot.png"  # lossless, so the pixel value identifies the version
    deadline = time.monotonic() + 10
    for value in (40, 120, 200):
        cv2.imwrite(str(snapshot), np.full((48, 64, 3), value, np.uint8))
        while value not in got and time.monotonic() < deadline:
            time.sleep(0.05)
    time.sleep(0.3)  # an unchanged file is not read again
    src.close()
    t.join(2)
    assert got == [40, 120, 200]


def test_video_file_all_frames_with_media_time(tmp_path: Path) -> None:
    """realtime=false processes every frame; timestamps follow the video's own clock."""
    video = tmp_path / "clip.avi"
    _write_video(video, 20, fps=10.0)
    src = OpenCVSource(OpenCVConfig(type="opencv", url=str(video), realtime=False))
    src.open()
    frames = list(iter(src.read, None))
    src.close()
    assert len(frames) == 20 and not src.live and src.finite
    span = frames[-1].timestamp - frames[0].timestamp
    assert span == pytest.approx(1.9, abs=0.15)


def test_video_file_realtime_is_paced(tmp_path: Path) -> None:
    """By default a file plays like a camera: 10 frames at 20 fps take about half a second."""
    video = tmp_path / "clip.avi"
    _write_video(video, 10, fps=20.0)
    src = OpenCVSource(OpenCVConfig(type="opencv", url=str(video)))
    src.open()
    t0 = time.monotonic()
    n = sum(1 for _ in iter(src.read, None))
    assert n == 10 and src.live
    assert time.monotonic() - t0 >= 0.4


def test_missing_device_and_file_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such video file"):
        OpenCVSource(OpenCVConfig(type="opencv", url=str(tmp_path / "x.mp4"))).open()
    with pytest.raises(SourceError, match="check the cable"):
        OpenCVSource(OpenCVConfig(type="opencv", url="/dev/video99")).open()


def test_stream_credentials_are_not_in_descriptions() -> None:
    src = OpenCVSource(OpenCVConfig(type="opencv", url="rtsp://admin:s3cret@10.0.0.5/live"))
    assert "s3cret" not in src.describe()


class FlakyCamera(Source):
    """A live source that fails to open twice, then loses the stream once."""

    live = True

    def __init__(self) -> None:
        self.opens = 0
        self.i = 0

    def open(self) -> None:
        self.opens += 1
        if self.opens <= 2:
            raise SourceError("camera not there yet")

    def read(self) -> Frame | None:
        self.i += 1
        time.sleep(0.002)
        if self.i == 50:
            raise SourceError("stream lost")
        return Frame(np.zeros((8, 8, 3), np.uint8), time.time(), self.i)

    def close(self) -> None:
        pass


def test_capture_reconnects_with_backoff_and_reports_state(monkeypatch) -> None:
    """A camera that is late or drops out is reopened; each change is reported."""
    from agent.sources import capture

    monkeypatch.setattr(capture, "BACKOFF_MIN_S", 0.01)
    states: list[bool] = []
    cap = Capture("c", FlakyCamera(), on_state=lambda _n, online, _r: states.append(online))
    cap.start()
    deadline = time.monotonic() + 5
    while states.count(True) < 2 and time.monotonic() < deadline:
        cap.get(0.05)
    cap.stop()
    assert states[:4] == [False, True, False, True]


def test_live_capture_keeps_only_the_newest_frame() -> None:
    """A slow consumer must see recent frames, not a growing backlog."""
    cap = Capture("c", FlakyCamera())
    cap.source.opens = 2  # opens at once
    cap.start()
    time.sleep(0.06)
    first = cap.get(1.0)
    time.sleep(0.05)
    second = cap.get(1.0)
    cap.stop()
    assert first is not None and second is not None
    assert second.index - first.index > 1
    assert cap.dropped > 0


def test_motion_gate_skips_still_frames_but_keeps_alive() -> None:
    gate = MotionGate(threshold=3.0, keepalive_s=1.0)
    still = np.full((72, 128, 3), 100, np.uint8)
    moved = still.copy()
    moved[:, :64] = 200
    assert gate(Frame(still, 0.0, 1))
    assert not gate(Frame(still, 0.1, 2))
    assert gate(Frame(moved, 0.2, 3))
    assert gate(Frame(moved, 1.5, 4))  # nothing moved, but the keep-alive is due


class _FakePicamera2:
    """Stand-in for picamera2.Picamera2: the camera cannot run on this machine.

    It exposes exactly the calls the source uses, and records them.
    """

    instances: ClassVar[list[_FakePicamera2]] = []

    def __init__(self, num: int = 0) -> None:
        self.num = num
        self.camera_controls = {"AfMode": (0, 2, 0)}
        self.calls: list[tuple] = []
        _FakePicamera2.instances.append(self)

    def create_video_configuration(self, **kw):
        self.calls.append(("create_video_configuration", kw))
        return kw

    def configure(self, config) -> None:
        self.calls.append(("configure", config))

    def start(self) -> None:
        self.calls.append(("start",))

    def capture_array(self, stream: str = "main") -> np.ndarray:
        size = self.calls[0][1]["main"]["size"]
        return np.zeros((size[1], size[0], 3), np.uint8)

    def stop(self) -> None:
        self.calls.append(("stop",))

    def close(self) -> None:
        self.calls.append(("close",))


def test_picamera2_source_against_a_stand_in(monkeypatch) -> None:
    """No Pi camera here: a stand-in module checks the configuration the source asks for."""
    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=_FakePicamera2))
    cfg = Picamera2Config(type="picamera2", width=1280, height=720, fps=5)
    src = make_source(cfg)
    assert isinstance(src, Picamera2Source)
    src.open()
    frame = src.read()
    src.close()
    cam = _FakePicamera2.instances[-1]
    conf = cam.calls[0][1]
    assert conf["main"] == {"size": (1280, 720), "format": "RGB888"}
    assert conf["controls"]["FrameDurationLimits"] == (200_000, 200_000)
    assert conf["controls"]["AfMode"] == 2
    assert frame is not None and frame.image.shape == (720, 1280, 3)
    assert [c[0] for c in cam.calls[-2:]] == ["stop", "close"]


def test_picamera2_missing_library_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(SourceError, match="apt install python3-picamera2"):
        Picamera2Source(Picamera2Config(type="picamera2")).open()
