"""The installed ``vin-agent`` command, run as a user would run it."""

from __future__ import annotations

import json

import pytest

from agent import __version__
from tests.conftest import run_cli

pytestmark = pytest.mark.integration


def _lines(out: bytes) -> list[dict]:
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


def test_version(cli: list[str]) -> None:
    """--version must print the package version so installers can check it."""
    proc = run_cli(cli, "--version")
    assert proc.returncode == 0
    assert __version__ in proc.stdout.decode()


@pytest.mark.parametrize("args", [[], ["vin"], ["vin", "check"], ["models"], ["models", "verify"]])
def test_help_everywhere(cli: list[str], args: list[str]) -> None:
    """Every command must answer --help with usage and exit 0."""
    proc = run_cli(cli, *args, "--help")
    assert proc.returncode == 0
    assert b"usage:" in proc.stdout


def test_vin_check_valid_exit_zero(cli: list[str]) -> None:
    """The NHTSA example is valid: exit 0 and a JSON verdict on stdout."""
    proc = run_cli(cli, "vin", "check", "1M8GDM9AXKP042788")
    assert proc.returncode == 0, proc.stderr
    [out] = _lines(proc.stdout)
    assert out["vin"] == "1M8GDM9AXKP042788"
    assert out["valid"] is True and out["checksum_valid"] is True
    assert out["errors"] == []
    assert out["decoded"]["wmi"] == "1M8"


def test_vin_check_european_policies(cli: list[str]) -> None:
    """A European VIN is valid under auto (checksum_valid false) and invalid under required."""
    auto = run_cli(cli, "vin", "check", "WVWZZZ1JZXW000001")
    assert auto.returncode == 0
    [out] = _lines(auto.stdout)
    assert out["valid"] is True and out["checksum_valid"] is False
    req = run_cli(cli, "vin", "check", "--policy", "required", "WVWZZZ1JZXW000001")
    assert req.returncode == 1
    [out] = _lines(req.stdout)
    assert out["valid"] is False
    assert "check digit expected" in out["errors"][0]


def test_vin_check_mixed_one_line_each_exit_one(cli: list[str]) -> None:
    """Several VINs: one line each in input order; any invalid one makes the exit 1."""
    proc = run_cli(
        cli, "vin", "check", "1HGCM82633A004352", "1HGCM82633A00435", "11111111111111111"
    )
    assert proc.returncode == 1
    out = _lines(proc.stdout)
    assert [o["valid"] for o in out] == [True, False, True]
    assert "wrong length" in out[1]["errors"][0]


def test_vin_check_normalize(cli: list[str]) -> None:
    """--normalize cleans barcode text and reports what it changed."""
    proc = run_cli(cli, "vin", "check", "--normalize", "*I1M8GDM9AXKPO42788*")
    assert proc.returncode == 0, proc.stdout
    [out] = _lines(proc.stdout)
    assert out["vin"] == "1M8GDM9AXKP042788"
    assert any("O->0" in c for c in out["normalized"])


def test_usage_error_exit_two(cli: list[str]) -> None:
    """A bad option is a usage error (exit 2), not a crash."""
    proc = run_cli(cli, "vin", "check", "--policy", "sometimes", "11111111111111111")
    assert proc.returncode == 2
    assert b"invalid choice" in proc.stderr


def test_json_logs(cli: list[str]) -> None:
    """--log-format json writes one JSON object per log line to stderr."""
    proc = run_cli(
        cli, "--log-level", "debug", "--log-format", "json", "vin", "check", "11111111111111111"
    )
    assert proc.returncode == 0
    lines = proc.stderr.decode().splitlines()
    assert lines, "expected at least the debug line of `vin check`"
    for line in lines:
        entry = json.loads(line)
        assert {"time", "level", "logger", "message"} <= set(entry)
