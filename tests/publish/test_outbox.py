"""The durable outbox: order, acks, bounds, expiry, durability and broken storage."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest

import agent.publish.outbox as outbox_mod
from agent.publish.outbox import Outbox, OutboxUnavailableError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "outbox.sqlite"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A settable wall clock for the outbox module only."""
    now = [1_700_000_000.0]
    monkeypatch.setattr(outbox_mod, "time", types.SimpleNamespace(time=lambda: now[0]))
    return now


def test_order_and_ack(db: Path) -> None:
    """Rows come back oldest first and disappear only when acked: the delivery contract."""
    with Outbox(db) as ob:
        ids = [ob.put("t/a", f"m{i}".encode()) for i in range(5)]
        assert ids == sorted(ids)
        assert [r.payload for r in ob.pending(10)] == [b"m0", b"m1", b"m2", b"m3", b"m4"]
        assert [r.id for r in ob.pending(2)] == ids[:2]
        ob.ack(ids[1])
        ob.ack_many([ids[0], ids[3], 999_999])  # unknown ids are ignored
        assert [r.payload for r in ob.pending(10)] == [b"m2", b"m4"]
        assert ob.depth() == 2
        row = ob.pending(1)[0]
        assert (row.topic, row.qos, row.retain) == ("t/a", 1, False)


def test_put_validates(db: Path) -> None:
    """Bad arguments are caller bugs and must fail before anything is stored."""
    with Outbox(db) as ob:
        with pytest.raises(ValueError, match="qos"):
            ob.put("t", b"x", qos=3)
        with pytest.raises(TypeError, match="bytes"):
            ob.put("t", "text")  # type: ignore[arg-type]
        assert ob.depth() == 0


def test_full_drops_oldest_and_counts(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    """When full, the newest events win (the car at the gate now) and drops are reported."""
    caplog.set_level(logging.WARNING, logger="agent.publish.outbox")
    with Outbox(db, max_messages=3) as ob:
        for i in range(5):
            ob.put("t", f"m{i}".encode())
        assert [r.payload for r in ob.pending(10)] == [b"m2", b"m3", b"m4"]
        stats = ob.stats()
        assert stats["depth"] == 3
        assert stats["dropped_full"] == 2
        assert stats["dropped_age"] == 0
    # First drop is logged at once; later ones are summarised (rate-limited), at close here.
    messages = [r.getMessage() for r in caplog.records]
    assert any("dropped 1 message(s) because it was full" in m for m in messages)
    assert any("dropped 1 message(s)" in m and "2 in total" in m for m in messages)


def test_drop_log_is_rate_limited(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A full outbox under load must not write one log line per event."""
    caplog.set_level(logging.WARNING, logger="agent.publish.outbox")
    with Outbox(db, max_messages=1, synchronous="NORMAL") as ob:
        for _ in range(50):
            ob.put("t", b"x")
        assert ob.stats()["dropped_full"] == 49
        assert len([r for r in caplog.records if "because it was full" in r.getMessage()]) == 1


def test_age_expiry(db: Path, clock: list[float]) -> None:
    """Events older than max_age_s are dropped (and counted) instead of sent days late."""
    with Outbox(db, max_age_s=60) as ob:
        ob.put("t", b"old")
        clock[0] += 30
        ob.put("t", b"younger")
        assert ob.stats()["oldest_age_s"] == pytest.approx(30)
        clock[0] += 45  # "old" is 75 s old now, "younger" 45 s
        ob.put("t", b"new")  # a put expires in its own commit
        assert ob.stats()["dropped_age"] == 1
        assert [r.payload for r in ob.pending(10)] == [b"younger", b"new"]
        assert ob.stats()["oldest_age_s"] == pytest.approx(45)
        clock[0] += 61  # reads expire too, without a put
        assert ob.pending(10) == []
        stats = ob.stats()
        assert (stats["dropped_age"], stats["depth"], stats["oldest_age_s"]) == (3, 0, 0.0)


def test_survives_reopen_and_never_reuses_ids(db: Path) -> None:
    """Queued rows outlive the process; ids stay unique so stale acks cannot hit new rows."""
    with Outbox(db) as ob:
        ids = [ob.put("t", b"a"), ob.put("t", b"b"), ob.put("t", b"c", qos=0, retain=True)]
        ob.ack(ids[2])
    with Outbox(db) as ob:
        rows = ob.pending(10)
        assert [(r.id, r.payload) for r in rows] == [(ids[0], b"a"), (ids[1], b"b")]
        ob.ack_many(ids)
        assert ob.depth() == 0
        assert ob.put("t", b"d") > ids[2]


_PUT_FOREVER = """
import sys
from agent.publish.outbox import Outbox
ob = Outbox(sys.argv[1], synchronous=sys.argv[2])
i = 0
while True:
    row_id = ob.put("vin/d/c/events", b"event %d" % i)
    print(row_id, flush=True)  # only after put() returned
    i += 1
"""


@pytest.mark.parametrize("sync", ["FULL", "NORMAL"])
def test_sigkill_after_put_loses_nothing(db: Path, sync: str) -> None:
    """The promise: once put() returned, the event survives the process being SIGKILLed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _PUT_FOREVER, str(db), sync],
        stdout=subprocess.PIPE,
        cwd=REPO,
        text=True,
    )
    assert proc.stdout is not None
    confirmed = [int(proc.stdout.readline()) for _ in range(40)]
    proc.send_signal(signal.SIGKILL)  # mid-stream: the child is putting as fast as it can
    proc.wait(10)
    with Outbox(db) as ob:
        stored = {r.id for r in ob.pending(100_000)}
    assert set(confirmed) <= stored


def test_corrupt_file_is_moved_aside(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A damaged file must not stop the agent: keep it for forensics, start a fresh outbox."""
    db.parent.mkdir(parents=True)
    garbage = b"this is not sqlite " * 500
    db.write_bytes(garbage)
    (db.parent / (db.name + "-wal")).write_bytes(b"stale wal")
    caplog.set_level(logging.ERROR, logger="agent.publish.outbox_db")
    with Outbox(db) as ob:
        assert ob.depth() == 0
        ob.put("t", b"works")
        assert ob.depth() == 1
    aside = [p for p in db.parent.iterdir() if p.name.startswith(f"{db.name}.corrupt-")]
    assert len(aside) == 1
    assert aside[0].read_bytes() == garbage
    assert any(p.name.startswith(f"{db.name}-wal.corrupt-") for p in db.parent.iterdir())
    error = next(r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert str(db) in error
    assert str(aside[0]) in error
    assert "corrupt" in error


def test_damaged_pages_are_detected(db: Path) -> None:
    """Corruption inside a valid-looking file (bad sector) is caught by quick_check at open."""
    with Outbox(db, synchronous="NORMAL") as ob:
        for i in range(300):
            ob.put("t", b"x" * 200 + str(i).encode())
    data = bytearray(db.read_bytes())
    assert len(data) > 8 * 4096
    data[5 * 4096 : 7 * 4096] = b"\xa5" * (2 * 4096)  # trash two pages, keep the header
    db.write_bytes(bytes(data))
    with Outbox(db) as ob:
        assert ob.depth() == 0
    assert any(".corrupt-" in p.name for p in db.parent.iterdir())


def test_unopenable_path_raises_clear_error(tmp_path: Path) -> None:
    """Runs anywhere (root ignores permissions): a file where the state directory should be."""
    blocker = tmp_path / "state"
    blocker.write_text("not a directory")
    with pytest.raises(OutboxUnavailableError) as err:
        Outbox(blocker / "outbox.sqlite")
    text = str(err.value)
    assert str(blocker) in text
    assert "writable" in text


def test_disk_full_during_put_falls_back_to_memory(
    db: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLITE_FULL (simulated with max_page_count) must not lose events while we run."""
    monkeypatch.setattr(outbox_mod, "RETRY_DISK_S", 0.0)
    caplog.set_level(logging.ERROR, logger="agent.publish.outbox")
    ob = Outbox(db, memory_limit=3)
    first = ob.put("t", b"on disk")
    pages = ob._conn.execute("PRAGMA page_count").fetchone()[0]
    ob._conn.execute(f"PRAGMA max_page_count={pages}")
    mem = [ob.put("t", b"m%d" % i + b"x" * 5000) for i in range(4)]
    stats = ob.stats()
    assert stats["degraded"] is True
    assert stats["memory_depth"] == 3  # bounded: the oldest in-memory event was dropped
    assert stats["dropped_full"] == 1
    assert [r.id for r in ob.pending(10)] == [first, *mem[1:]]
    assert len([r for r in caplog.records if "in memory" in r.getMessage()]) == 1
    ob.ack(mem[1])  # delivered while degraded
    ob._conn.execute("PRAGMA max_page_count=1073741823")  # space again
    ob.put("t", b"after")
    assert ob.stats()["degraded"] is False
    ob.ack(mem[2])  # an id handed out while degraded still acks the moved row
    assert [r.payload[:2] for r in ob.pending(10)] == [b"on", b"m3", b"af"]
    ob.close()
    with Outbox(db) as again:
        assert again.depth() == 3


# -- real read-only and full file systems, in a private mount namespace -----------

_OPEN_AND_REPORT = """
import json, logging, os, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
import agent.publish.outbox as m
m.RETRY_DISK_S = 0.0
result = {}
def try_open(path):
    try:
        m.Outbox(path).close()
        return "ok"
    except m.OutboxUnavailableError as exc:
        return str(exc)
mode = sys.argv[1]
d = sys.argv[2]
if mode == "readonly":
    result["new"] = try_open(d + "/new.sqlite")
    result["existing"] = try_open(d + "/existing.sqlite")
else:
    ob = m.Outbox(d + "/outbox.sqlite", max_messages=1000)
    first = ob.put("t", b"before")
    fd = os.open(d + "/filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\\0" * 65536)
    except OSError:
        os.close(fd)
    result["new"] = try_open(d + "/new.sqlite")
    ids = [ob.put("t", os.urandom(30000)) for _ in range(3)]
    result["degraded"] = ob.stats()["degraded"]
    result["pending"] = len(ob.pending(100))
    os.remove(d + "/filler")
    ob.put("t", b"after")
    result["recovered"] = not ob.stats()["degraded"]
    ob.close()
    result["reopened_depth"] = m.Outbox(d + "/outbox.sqlite").depth()
print(json.dumps(result))
"""


def _in_mount_namespace(setup: str, *args: str) -> dict[str, object]:
    """Run the probe where ``setup`` mounted something; skip if namespaces are not allowed."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    script = f'{setup} && exec "$0" -c "$1" "$2" "$3"'
    proc = subprocess.run(
        ["unshare", "--mount", "--map-root-user", "sh", "-c", script, sys.executable,
         _OPEN_AND_REPORT, *args],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    if proc.returncode != 0 and not proc.stdout:
        pytest.skip(f"cannot mount in a private namespace here: {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def test_read_only_mount_raises_clear_error(tmp_path: Path) -> None:
    """A read-only state directory (root or not): a real read-only bind mount, no chmod tricks."""
    state = tmp_path / "ro"
    state.mkdir()
    Outbox(state / "existing.sqlite").close()
    d = str(state)
    result = _in_mount_namespace(
        f"mount --bind '{d}' '{d}' && mount -o remount,ro,bind '{d}' '{d}'", "readonly", d
    )
    for key in ("new", "existing"):
        text = str(result[key])
        assert text != "ok", f"{key} outbox opened on a read-only mount"
        assert str(state) in text
        assert "writable" in text


def test_full_file_system(tmp_path: Path) -> None:
    """A real ENOSPC (tiny tmpfs): clear error at open; memory fallback then recovery in put."""
    state = tmp_path / "small"
    state.mkdir()
    d = str(state)
    result = _in_mount_namespace(f"mount -t tmpfs -o size=512k tmpfs '{d}'", "full", d)
    assert "full" in str(result["new"]) and d in str(result["new"])
    assert result["degraded"] is True
    assert result["pending"] == 4
    assert result["recovered"] is True
    assert result["reopened_depth"] == 5


def test_thread_safety(db: Path) -> None:
    """Camera threads put while the publisher thread reads and acks; nothing lost or doubled."""
    ob = Outbox(db, synchronous="NORMAL")
    ids: list[int] = []
    lock = threading.Lock()
    done = threading.Event()
    errors: list[BaseException] = []

    def producer(n: int) -> None:
        try:
            for i in range(100):
                row_id = ob.put(f"t/{n}", b"%d" % i)
                with lock:
                    ids.append(row_id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    acked: set[int] = set()

    def consumer() -> None:
        while not done.is_set() or ob.depth():
            rows = ob.pending(20)
            ob.ack_many(r.id for r in rows)
            acked.update(r.id for r in rows)

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(6)]
    reader = threading.Thread(target=consumer)
    reader.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    reader.join(30)
    assert not errors
    assert len(ids) == len(set(ids)) == 600
    assert acked == set(ids)
    assert ob.depth() == 0
    ob.close()


def test_closed_outbox_refuses_puts(db: Path) -> None:
    """Using an outbox after close() is a bug; fail loudly rather than silently drop."""
    ob = Outbox(db)
    ob.close()
    ob.close()  # idempotent
    with pytest.raises(outbox_mod.OutboxError, match="closed"):
        ob.put("t", b"x")
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
    assert os.path.exists(db)
