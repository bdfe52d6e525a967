"""The ``images`` source on folders full of bad files (issue 7: bad input loses nothing).

A corrupt, empty, oversized or malicious file is skipped with a warning that
names it and says why; every good frame is still delivered, in name order.
When watching a drop folder, a file whose upload paused is read once it is
complete, not skipped forever.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.sources.base import Frame
from agent.sources.images import ImagesConfig, ImagesSource
from tests.test_fuzz_inputs import (
    encode,
    flip_bits,
    jpeg_scan_bomb,
    png_chunk_bomb,
    png_with_size,
    seeds,
    synthetic,
    tiff_with_size,
)

LOGGER = "agent.sources.images"


def _replay(folder: Path | str, **options: object) -> list[Frame]:
    src = ImagesSource(ImagesConfig(type="images", path=str(folder), **options))  # type: ignore[arg-type]
    src.open()
    frames = list(iter(src.read, None))
    src.close()
    return frames


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= 30]


#: name -> (bytes, phrase the warning must contain).  Names sort between the good ones.
BAD_FILES: dict[str, tuple[bytes, str]] = {
    "a1-zero-bytes.jpg": (b"", "empty input (0 bytes)"),
    "b1-random.jpg": (b"\xff\xd8\xff" + bytes(range(256)) * 8, "truncated or corrupt JPEG"),
    "c1-text.png": (b"this is a shopping list, not a picture\n", "not a supported image"),
    "d1-bomb.png": (png_with_size(100_000, 100_000), "pixel limit"),
    "e1-bomb.tiff": (tiff_with_size(12000, 12000), "pixel limit"),
    "f1-chunk-bomb.png": (png_chunk_bomb(), "chunk 'IDAT' declares"),
    "g1-scans.jpg": (jpeg_scan_bomb(), "scans"),
    "h1-truncated.webp": (seeds()["plain.webp"][:40], "WebP"),
    "i1-flipped-header.png": (flip_bits(seeds()["plain.png"], [(0.0, 0)]), "not a supported image"),
    "j1-half.jpg": (seeds()["progressive.jpg"][:300], "JPEG"),
}
GOOD_FILES = {
    "a0.jpg": encode(".jpg"),
    "b0.png": encode(".png"),
    "c0.webp": encode(".webp"),
    "d0.tiff": encode(".tiff"),
    "e0.bmp": encode(".bmp"),
    "f0-cmyk.jpg": seeds()["cmyk.jpg"],
    "g0-16bit.png": seeds()["16bit.png"],
    "h0-alpha.webp": seeds()["alpha.webp"],
    "z9.JPG": encode(".jpg"),
}


def test_bad_files_are_skipped_with_a_warning_naming_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Corrupt files, bombs, a zero-byte file, a non-image and a directory among good images:
    each bad one is skipped with a warning naming the file and the reason; every good frame
    comes out, in name order."""
    for name, data in {**GOOD_FILES, **{n: d for n, (d, _) in BAD_FILES.items()}}.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "k1-folder.jpg").mkdir()
    (tmp_path / "notes.txt").write_text("not an image extension: ignored, no warning\n")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        t0 = time.monotonic()
        frames = _replay(tmp_path)
        elapsed = time.monotonic() - t0
    assert [f.name for f in frames] == sorted(GOOD_FILES)
    assert all(f.image.ndim == 3 and f.image.shape[2] == 3 for f in frames)
    assert [f.index for f in frames] == list(range(1, len(GOOD_FILES) + 1))
    warnings = _warnings(caplog)
    assert len(warnings) == len(BAD_FILES) + 1, warnings
    for name, (_, reason) in BAD_FILES.items():
        [line] = [w for w in warnings if name in w]
        assert reason in line and str(tmp_path / name) in line, line
    assert any("k1-folder.jpg" in w and "not a regular file" in w for w in warnings)
    assert not any("notes.txt" in w for w in warnings)
    assert elapsed < 10, "bombs must be refused from their headers, not decoded"


_CATALOG: list[tuple[str, bytes, bool]] = [
    *((f".{n.rsplit('.', 1)[1]}", d, True) for n, d in GOOD_FILES.items()),
    *((f".{n.rsplit('.', 1)[1]}", d, False) for n, (d, _) in BAD_FILES.items()),
]


@settings(
    max_examples=25,
    deadline=None,  # file system work; bounded by the elapsed-time assert instead
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.sampled_from(range(len(_CATALOG))), min_size=1, max_size=12))
def test_any_mix_of_files_keeps_every_good_frame(tmp_path: Path, picks: list[int]) -> None:
    """Whatever mix of good and bad files a folder holds, the replay yields exactly the good
    ones, in name order, and never raises."""
    folder = tmp_path / f"mix-{time.monotonic_ns()}"
    folder.mkdir()
    expected = []
    for i, pick in enumerate(picks):
        ext, data, good = _CATALOG[pick]
        name = f"f{i:03d}{ext}"
        (folder / name).write_bytes(data)
        if good:
            expected.append(name)
    t0 = time.monotonic()
    if not expected and not picks:
        return
    frames = _replay(folder)
    assert [f.name for f in frames] == expected
    assert time.monotonic() - t0 < 10


def _watch(
    folder: Path, got: list[str], **options: object
) -> tuple[ImagesSource, threading.Thread]:
    src = ImagesSource(
        ImagesConfig(
            type="images",
            path=str(folder),
            watch=True,
            poll_s=0.03,
            settle_s=0.1,
            **options,  # type: ignore[arg-type]
        )
    )
    src.open()
    # daemon: a regression that blocks must fail the test, not hang the whole run
    thread = threading.Thread(
        target=lambda: got.extend(f.name for f in iter(src.read, None)), daemon=True
    )
    thread.start()
    return src, thread


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_watch_reads_an_upload_that_paused_once_it_completes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An FTP upload that stalls for longer than settle_s is read while partial and fails;
    when the rest arrives the file is read again, so its frame is not lost."""
    jpeg = encode(".jpg", synthetic(240, 320))
    got: list[str] = []
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        src, thread = _watch(tmp_path, got)
        try:
            path = tmp_path / "cam1_0001.jpg"
            path.write_bytes(jpeg[: len(jpeg) // 2])  # the upload stalls here
            assert _wait_for(lambda: any("cam1_0001.jpg" in w for w in _warnings(caplog)))
            with path.open("ab") as fh:  # ... and resumes
                fh.write(jpeg[len(jpeg) // 2 :])
            (tmp_path / "cam1_0002.jpg").write_bytes(jpeg)
            assert _wait_for(lambda: len(got) >= 2)
        finally:
            src.close()
            thread.join(3)
    assert got == ["cam1_0001.jpg", "cam1_0002.jpg"]


def test_watch_does_not_retry_a_bad_file_that_stays_bad(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A corrupt file that never changes is warned about once, not at every poll."""
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    got: list[str] = []
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        src, thread = _watch(tmp_path, got)
        try:
            assert _wait_for(lambda: bool(_warnings(caplog)))
            time.sleep(0.4)  # a dozen more polls
            (tmp_path / "good.jpg").write_bytes(encode(".jpg"))
            assert _wait_for(lambda: got == ["good.jpg"])
        finally:
            src.close()
            thread.join(3)
    assert len([w for w in _warnings(caplog) if "broken.jpg" in w]) == 1


@pytest.mark.parametrize("watch", [False, True])
def test_fifo_named_like_an_image_does_not_block(tmp_path: Path, watch: bool) -> None:
    """Opening a FIFO blocks until someone writes to it: the source must skip it, not hang."""
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "real.jpg").write_bytes(encode(".jpg"))
    got: list[str] = []
    if watch:
        src, thread = _watch(tmp_path, got)
        try:
            assert _wait_for(lambda: got == ["real.jpg"])
        finally:
            src.close()
            thread.join(3)
        assert not thread.is_alive()
    else:
        result: list[list[Frame]] = []
        thread = threading.Thread(target=lambda: result.append(_replay(tmp_path)), daemon=True)
        thread.start()
        thread.join(5)
        assert not thread.is_alive(), "the replay blocked on the FIFO"
        assert [f.name for f in result[0]] == ["real.jpg"]


def test_file_names_that_look_like_data_uris_are_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a relative glob, a file called 'data:x.jpg' is a file, not a data URI to parse."""
    monkeypatch.chdir(tmp_path)
    for name in ("data:x.jpg", "plain.jpg"):
        (tmp_path / name).write_bytes(encode(".jpg"))
    assert [f.name for f in _replay("*.jpg")] == ["data:x.jpg", "plain.jpg"]


def test_file_removed_between_scan_and_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file the uploader deletes or renames after the scan is skipped with a warning."""
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / name).write_bytes(encode(".jpg"))
    src = ImagesSource(ImagesConfig(type="images", path=str(tmp_path)))
    src.open()
    (tmp_path / "b.jpg").unlink()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        names = [f.name for f in iter(src.read, None)]
    assert names == ["a.jpg", "c.jpg"]
    assert any("b.jpg" in w for w in _warnings(caplog))
