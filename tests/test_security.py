"""Security properties of the running daemon, checked on a real process and a real broker:
no listening sockets by default, the password never in its logs, nothing published
outside the configured topic prefix."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.barcode_frames import make_vin, write_frames
from tests.conftest import agent_env
from tests.mqtt_broker import HOST, Collector, MosquittoBroker

pytestmark = pytest.mark.integration

SECRET = "s3cret-Gate-Pa55"  # noqa: S105 - a test credential


def _listening_inodes() -> set[str]:
    """Socket inodes in LISTEN state (TCP 0A) from /proc/net/tcp and tcp6."""
    inodes = set()
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A":
                inodes.add(fields[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        match = re.fullmatch(r"socket:\[(\d+)\]", target)
        if match:
            out.add(match.group(1))
    return out


def _config(tmp_path: Path, broker: MosquittoBroker, frames: Path, extra: str = "") -> Path:
    (tmp_path / "pw").write_text(SECRET + "\n")
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'device_id = "gate-7"\nstats_interval = 1\n{extra}'
        f'[mqtt]\nurl = "mqtt://gate@{broker.host}:{broker.port}"\n'
        f'password_file = "{tmp_path / "pw"}"\nprefix = "acme/vin"\n'
        f'[[cameras]]\nname = "lane1"\n[cameras.source]\ntype = "images"\n'
        f'path = "{frames}"\nwatch = true\n'
    )
    return cfg


def _start(cli: list[str], cfg: Path, tmp_path: Path) -> subprocess.Popen[str]:
    env = agent_env()
    args = [*cli, "--log-level", "DEBUG", "run", "--config", str(cfg)]
    args += ["--state-dir", str(tmp_path / "state")]
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def test_daemon_listens_nowhere_logs_no_secret_and_stays_in_its_prefix(
    cli: list[str], broker_factory: Any, tmp_path: Path
) -> None:
    """A gate device sits on networks it does not control: by default it must open no
    listening port, its DEBUG logs must not contain the broker password (wrong at first,
    then right, so both the refusal and the login paths are logged), and every message
    must land under the configured prefix (a shared broker's ACLs rely on it)."""
    broker: MosquittoBroker = broker_factory(users={"gate": SECRET, "watcher": "w"})
    frames = tmp_path / "frames"
    write_frames(frames, [make_vin(random.Random(3))])
    cfg = _config(tmp_path, broker, frames)
    watcher = Collector(
        HOST,
        broker.port,
        "#",
        client_id="watcher",
        username="watcher",
        password="w",  # noqa: S106
    )
    (tmp_path / "pw").write_text("wrong-" + SECRET + "\n")
    proc = _start(cli, cfg, tmp_path)
    try:
        time.sleep(3)
        (tmp_path / "pw").write_text(SECRET + "\n")  # read again at the next connect
        watcher.wait_for(lambda m: any(x.topic.endswith("/lane1/events") for x in m), timeout=30)
        assert proc.poll() is None
        mine = _socket_inodes(proc.pid)
        listening = mine & _listening_inodes()
        assert not listening, f"the daemon listens on socket inode(s) {listening}"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        watcher.close()
    assert proc.returncode == 0, err[-2000:]
    assert "refused the login" in err  # the wrong password was really tried
    assert SECRET not in err and SECRET not in out
    topics = {m.topic for m in watcher.messages}
    assert topics and all(t.startswith("acme/vin/gate-7/") for t in topics), topics
