"""Shared fixtures: locating the installed CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

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


def run_cli(cli: list[str], *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*cli, *args], input=stdin, capture_output=True, timeout=120, check=False)


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
