"""Shared fixtures: locating the installed CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
