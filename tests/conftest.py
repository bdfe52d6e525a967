"""Shared fixtures and helpers: the installed CLI, pip against PyPI, MQTT brokers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.mqtt_broker import MosquittoBroker, mosquitto_binary

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cli() -> list[str]:
    """The installed ``vin-agent`` console script (the one users run)."""
    exe = shutil.which("vin-agent") or str(Path(sys.executable).with_name("vin-agent"))
    if not Path(exe).exists():
        pytest.fail("vin-agent is not installed: run `pip install -e .[dev]` first")
    return [exe]


def agent_env() -> dict[str, str]:
    """This environment without VIN_AGENT_* settings: a developer's own must not reach the
    daemons the tests start."""
    return {k: v for k, v in os.environ.items() if not k.startswith("VIN_AGENT_")}


def start_daemon(
    cli: list[str], config: Path, state_dir: Path
) -> tuple[subprocess.Popen[str], list[str], threading.Thread]:
    """`vin-agent run --config` in the background; its stderr is read continuously into
    the returned list (by the returned thread: join it once the daemon has exited) so the
    daemon never blocks on a full pipe."""
    proc = subprocess.Popen(
        [*cli, "run", "--config", str(config), "--state-dir", str(state_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=agent_env(),
    )
    lines: list[str] = []
    drain = threading.Thread(target=lambda: lines.extend(proc.stderr or []), daemon=True)
    drain.start()
    return proc, lines, drain


def run_cli(cli: list[str], *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*cli, *args], input=stdin, capture_output=True, timeout=120, check=False)


# -- pip against PyPI (tests/test_packaging.py, tests/vision/test_legacy_runtime.py) --

#: What pip (urllib3) prints when the index cannot be reached, as opposed to
#: an index that answered "no such version" or a dependency conflict.
PIP_NETWORK_ERRORS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ProxyError",
    "SSLError",
    "Connection refused",
    "connection broken by",
)


def run_pip(args: list[str], what: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a pip command that needs PyPI; skip (never pass) when PyPI is out of reach.

    Any other failure fails the test with pip's output.
    """
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip(f"{what}: pip did not finish in {timeout:.0f} s (PyPI unreachable or slow)")
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        network = [ln for ln in output.splitlines() if any(m in ln for m in PIP_NETWORK_ERRORS)]
        # A retried connection followed by a real error (a conflict, a build failure) still fails.
        if network and ("No matching distribution found" in output or network[-1] in output[-600:]):
            pytest.skip(f"{what}: pip cannot reach the package index: {network[-1].strip()[:300]}")
        pytest.fail(f"{what}: pip failed ({proc.returncode}):\n{output[-4000:]}")
    return proc


# -- MQTT broker (tests/mqtt_broker.py) ---------------------------------------


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., MosquittoBroker]]:
    """Start real mosquitto brokers (options: users, pki, persistence); all stopped after."""
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto): MQTT tests need it")
    brokers: list[MosquittoBroker] = []

    def make(**options: object) -> MosquittoBroker:
        b = MosquittoBroker(tmp_path / f"broker{len(brokers)}", **options)
        brokers.append(b)
        b.start()
        return b

    yield make
    for b in brokers:
        b.kill()


@pytest.fixture
def broker(broker_factory: Callable[..., MosquittoBroker]) -> MosquittoBroker:
    """A running anonymous mosquitto on a free loopback port."""
    return broker_factory()


def count_calls(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[int]:
    """Count calls of ``owner.name`` while still calling it (the real thing runs)."""
    calls: list[int] = []
    real = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls
