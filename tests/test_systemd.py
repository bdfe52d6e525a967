"""sd_notify on a real datagram socket, and the shipped unit checked by systemd itself."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agent.systemd import Notifier, watchdog_interval
from tests.conftest import REPO

UNIT = REPO / "systemd" / "vin-agent.service"


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_messages_arrive_on_the_notify_socket(notify_socket: socket.socket) -> None:
    """Type=notify services are only 'started' once READY=1 arrives on this socket."""
    n = Notifier()
    assert n.ready("reading 1 camera(s)")
    assert notify_socket.recv(1024) == b"READY=1\nSTATUS=reading 1 camera(s)"
    n.watchdog()
    assert notify_socket.recv(1024) == b"WATCHDOG=1"
    n.status("gate 4.0 fps")
    assert notify_socket.recv(1024) == b"STATUS=gate 4.0 fps"
    n.stopping()
    assert notify_socket.recv(1024) == b"STOPPING=1"
    n.close()


def test_abstract_namespace_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"vin-agent-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    Notifier().ready()
    assert sock.recv(64) == b"READY=1"
    sock.close()


def test_without_systemd_everything_is_a_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled and not n.ready() and not n.watchdog()


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ping at half of WatchdogSec, and only in the process systemd watches."""
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_interval() is None


def _unit_with_local_exec(tmp_path: Path) -> Path:
    """The shipped unit, with ExecStart pointed at this checkout's installed CLI."""
    exe = shutil.which("vin-agent") or str(Path(sys.executable).with_name("vin-agent"))
    text = UNIT.read_text().replace("/opt/vin-agent/.venv/bin/vin-agent", exe)
    out = tmp_path / "vin-agent.service"
    out.write_text(text)
    return out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(_unit_with_local_exec(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "vin-agent.service" not in proc.stderr  # no warnings about our unit


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_unit_exposure_is_ok_or_better(tmp_path: Path) -> None:
    """The README quotes this score; keep the hardening from regressing."""
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(_unit_with_local_exec(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    line = next(x for x in proc.stdout.splitlines() if "Overall exposure level" in x)
    score = float(line.split(":")[1].split()[0])
    assert score <= 3.0, line
