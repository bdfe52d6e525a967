"""The benchmark command end to end on its smallest counts: it runs, prints, writes JSON.

No timing is asserted: numbers depend on the machine; this only proves the
harness works against the shipped models.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.vision.manifest import ModelError, load_manifest, verify_all

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _models_ok() -> bool:
    """Both models the Reader needs are shipped and verify (training may not have made them)."""
    try:
        manifest = load_manifest()
    except ModelError:
        return False
    wanted = {"detector", "recognizer"}
    return wanted <= set(manifest.models) and all(r["ok"] for r in verify_all(manifest))


@pytest.mark.skipif(not _models_ok(), reason="the shipped detector or recognizer is missing")
def test_quick_benchmark_without_peers_writes_every_section(tmp_path: Path) -> None:
    pytest.importorskip("training.scenes", reason="the train extra is not installed")
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--skip-peers", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    res = json.loads(out.read_text())
    assert res["errors"] == {}
    assert {"environment", "models", "stages", "end_to_end", "scaling_vins"} <= set(res)
    assert {"clip_memory", "cold_start", "startup", "publish_paho"} <= set(res)
    assert "peers" not in res
    # What `vin-agent read` does by default is measured beside what the daemon does.
    assert {"1280x720@1", "1280x720@1@quarter turn"} <= set(res["end_to_end"])
    assert set(res["stages"]["stages"]) >= {"det_invoke", "rec_invoke", "barcode", "fusion"}
    assert all(r["exit_status"] == 0 for r in res["clip_memory"]["runs"])
    assert "stages:" in proc.stdout.decode()


def test_events_are_read_from_the_stdout_sinks_envelope(tmp_path: Path) -> None:
    """The stdout sink wraps each message as {"topic", "payload"}; counting top-level
    "type" keys found no event at all and made the clip and cold-start figures empty."""
    from benchmarks.process import _events

    out = tmp_path / "run.jsonl"
    event = {"type": "new", "event_id": "e1", "vin": "1HGCM82633A004352"}
    status = {"camera": "cam0", "online": True}
    out.write_text(
        json.dumps({"topic": "vin/d/cam0/events", "payload": event})
        + "\n"
        + json.dumps({"topic": "vin/d/cam0/status", "payload": status})
        + "\nnot json\n"
    )
    assert _events(out) == [event]
