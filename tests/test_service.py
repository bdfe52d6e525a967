"""`vin-agent run` as a subprocess on the bundled clip, to stdout and to a real broker."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from agent.service import EXIT_CONFIG
from tests.conftest import REPO, agent_env
from tests.mqtt_broker import Collector, MosquittoBroker

pytestmark = pytest.mark.integration

CLIP = REPO / "samples" / "clip.avi"
CLIP_VINS = json.loads((REPO / "samples" / "clip.json").read_text())["vins"]
EVENT_KEYS = {"success", "vin", "box", "confidence", "candidates", "message", "type",
              "event_id", "seq", "device_id", "camera", "timestamp", "start_time", "frames",
              "checksum_valid", "source", "decoded", "model"}  # fmt: skip


def _run(cli: list[str], tmp_path: Path, *extra: str, **kw: Any) -> subprocess.Popen[str]:
    args = [*cli, "--log-format", "json", "run", "--device-id", "test-gate"]
    args += ["--state-dir", str(tmp_path / "state"), *extra]
    env = agent_env()
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kw
    )


def _visits(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_id[e["event_id"]].append(e)
    return by_id


def _check_schema(events: list[dict[str, Any]]) -> None:
    for e in events:
        assert EVENT_KEYS <= set(e), EVENT_KEYS - set(e)
        assert e["device_id"] == "test-gate" and e["camera"] == "cam0"
        assert e["success"] or e["vin"] is None  # a miss never carries a VIN
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def _check_one_visit_per_vehicle(events: list[dict[str, Any]]) -> None:
    reads = [e for e in events if e["success"]]
    for e in reads:
        assert EVENT_KEYS <= set(e), EVENT_KEYS - set(e)
        assert e["device_id"] == "test-gate" and e["camera"] == "cam0"
    visits = _visits(reads)
    vins = {msgs[0]["vin"] for msgs in visits.values()}
    assert vins == set(CLIP_VINS), f"read {vins}, expected {set(CLIP_VINS)}"
    assert len(visits) == len(CLIP_VINS), "a vehicle was announced as two visits"
    for msgs in visits.values():
        assert msgs[0]["type"] == "new" and msgs[-1]["type"] == "end"
        assert {m["vin"] for m in msgs} == {msgs[0]["vin"]}
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def _stdout_run(cli: list[str], tmp_path: Path) -> tuple[list[dict[str, Any]], str]:
    proc = _run(cli, tmp_path, "--source", str(CLIP), "--no-realtime")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return [json.loads(x) for x in out.splitlines() if x.strip()], err


def test_clip_to_stdout_one_visit_per_vehicle(cli: list[str], tmp_path: Path) -> None:
    """The quickstart's run: every vehicle of the clip once, new then end."""
    lines, _ = _stdout_run(cli, tmp_path)
    _check_one_visit_per_vehicle([m["payload"] for m in lines if m["topic"].endswith("/events")])


def test_clip_to_stdout_runs_clean(cli: list[str], tmp_path: Path) -> None:
    """The quickstart's run ends by itself: exit 0, valid messages, camera offline at the end."""
    lines, err = _stdout_run(cli, tmp_path)
    _check_schema([m["payload"] for m in lines if m["topic"].endswith("/events")])
    statuses = [m["payload"] for m in lines if m["topic"].endswith("/cam0/status")]
    assert statuses[-1]["online"] is False
    assert "Traceback" not in err


def test_clip_to_broker_and_availability(
    cli: list[str], tmp_path: Path, broker: MosquittoBroker
) -> None:
    """Events reach a real broker; `available` is online while running, offline after."""
    sub = Collector(broker.host, broker.port, "vin/#")
    url = f"mqtt://{broker.host}:{broker.port}"
    proc = _run(cli, tmp_path, "--source", str(CLIP), "--no-realtime", "--mqtt-url", url)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    msgs = sub.wait_for(lambda m: any(x.payload == b"offline" and x.topic.endswith(
        "/available") for x in m))  # fmt: skip
    sub.close()
    events = [json.loads(m.payload) for m in msgs if m.topic == "vin/test-gate/cam0/events"]
    _check_schema(events)
    avail = [m.payload for m in msgs if m.topic == "vin/test-gate/available"]
    assert avail[0] == b"online" and avail[-1] == b"offline"
    assert any(m.topic == "vin/test-gate/cam0/status" for m in msgs)


def test_sigterm_flushes_and_exits_within_ten_seconds(
    cli: list[str], tmp_path: Path, broker: MosquittoBroker
) -> None:
    """systemd stops with SIGTERM: open visits end, `offline` is published, exit 0, < 10 s."""
    sub = Collector(broker.host, broker.port, "vin/#")
    url = f"mqtt://{broker.host}:{broker.port}"
    proc = _run(cli, tmp_path, "--source", str(CLIP), "--mqtt-url", url)  # paced like a camera
    sub.wait_for(lambda m: any(x.topic.endswith("/cam0/status") for x in m), timeout=60)
    time.sleep(1.0)  # mid-clip: frames are being read
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err[-3000:]
    assert time.monotonic() - t0 < 10
    msgs = sub.wait_for(lambda m: any(x.payload == b"offline" for x in m))
    sub.close()
    events = [json.loads(m.payload) for m in msgs if m.topic.endswith("/events")]
    for msgs_of_visit in _visits(events).values():
        assert msgs_of_visit[-1]["type"] == "end"  # nothing left open


def test_killed_agent_delivers_its_outbox_after_restart(
    cli: list[str], tmp_path: Path, broker_factory: Any
) -> None:
    """Events read while the broker was down survive a SIGKILL of the agent."""
    broker: MosquittoBroker = broker_factory()
    url = f"mqtt://{broker.host}:{broker.port}"
    broker.stop()
    proc = _run(cli, tmp_path, "--source", str(CLIP), "--no-realtime", "--mqtt-url", url)
    seen: list[str] = []
    deadline = time.monotonic() + 120
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        if '"cam0 new' in line or "cam0 new" in line:
            seen.append(line)
            if len(seen) >= 2:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert seen, "no event was produced before the kill"
    broker.start()
    sub = Collector(broker.host, broker.port, "vin/+/+/events")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "blank.png").write_bytes(
        bytes.fromhex(
            "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
            "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
        )
    )
    proc2 = _run(cli, tmp_path, "--source", str(empty), "--mqtt-url", url)
    _, err = proc2.communicate(timeout=120)
    assert proc2.returncode == 0, err[-3000:]

    def news(m: list[Any]) -> int:
        # Miss visits' `end` events may come first in the outbox: count the `new` ones.
        return sum(json.loads(x.payload)["type"] == "new" for x in m)

    msgs = sub.wait_for(lambda m: news(m) >= 2, timeout=20)
    sub.close()
    assert news(msgs) >= 2


def test_bad_config_is_a_clear_error(cli: list[str], tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[[cameras]]\nname = "a"\n[cameras.source]\ntype = "opencv"\n')
    proc = _run(cli, tmp_path, "--config", str(cfg))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_CONFIG  # the unit does not restart on it
    assert "cameras.0.source.opencv.url" in err and "Traceback" not in err


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_unusable_state_directory_is_a_clear_error_not_a_crash_loop(
    cli: list[str], tmp_path: Path, fault: str
) -> None:
    """A read-only or full state directory (SD card remounted ro, disk filled by something
    else): the agent names the directory and what to do, and exits 78, which the systemd
    unit lists in RestartPreventExitStatus= instead of restarting every 5 s forever."""
    import shutil

    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    state = tmp_path / "state"
    state.mkdir()
    d = str(state)
    if fault == "read-only":
        setup = f"mount --bind '{d}' '{d}' && mount -o remount,ro,bind '{d}' '{d}'"
    else:
        setup = f"mount -t tmpfs -o size=64k tmpfs '{d}' && head -c 60000 /dev/zero > '{d}/fill'"
    args = [
        *cli,
        "run",
        "--source",
        str(CLIP),
        "--state-dir",
        d,
        "--mqtt-url",
        "mqtt://127.0.0.1:9",
    ]
    proc = subprocess.run(
        ["unshare", "--mount", "--map-root-user", "sh", "-c", f'{setup} && exec "$@"', "sh", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if proc.returncode != EXIT_CONFIG and "mount" in proc.stderr and "agent" not in proc.stderr:
        pytest.skip(f"cannot mount in a private namespace here: {proc.stderr[-300:]}")
    assert proc.returncode == EXIT_CONFIG, proc.stderr[-2000:]
    assert d in proc.stderr and "Traceback" not in proc.stderr


def test_unit_does_not_restart_on_configuration_errors() -> None:
    """The exit status for "restarting cannot help" and the unit must agree."""
    unit = (REPO / "systemd" / "vin-agent.service").read_text()
    assert f"RestartPreventExitStatus={EXIT_CONFIG}" in unit


def test_sighup_reloads_the_config(cli: list[str], tmp_path: Path) -> None:
    """`systemctl reload` sends SIGHUP: the new config takes effect without a restart."""
    cfg = tmp_path / "config.toml"
    body = '[[cameras]]\nname = "{name}"\n[cameras.source]\ntype = "opencv"\nurl = "{clip}"\n'
    cfg.write_text('device_id = "test-gate"\n' + body.format(name="first", clip=CLIP))
    proc = _run(cli, tmp_path, "--config", str(cfg))
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert "/first/status" in first
    cfg.write_text('device_id = "test-gate"\n' + body.format(name="second", clip=CLIP))
    proc.send_signal(signal.SIGHUP)
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if "/second/status" in line:
            break
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=15)
    assert any("/second/status" in line for line in seen), seen
    assert proc.returncode == 0


def test_daemon_serves_vinocr_when_configured(cli: list[str], tmp_path: Path) -> None:
    """`[serve] enabled = true` puts /v1/vinocr beside the cameras: one process on the device,
    with keys enforced and a CarsXE response for a keyed request; SIGTERM stops both."""
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    import base64
    import socket
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    keys = tmp_path / "keys"
    keys.write_text("k1\n")
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'device_id = "test-gate"\n[serve]\nenabled = true\nport = {port}\nkeys_file = "{keys}"\n'
        f'[[cameras]]\nname = "cam0"\n[cameras.source]\ntype = "opencv"\nurl = "{CLIP}"\n'
    )
    proc = _run(cli, tmp_path, "--config", str(cfg))
    image = base64.b64encode((REPO / "samples" / "scenes" / "scene_0000.jpg").read_bytes())
    body = json.dumps({"image_url": image.decode()}).encode()
    url = f"http://127.0.0.1:{port}/v1/vinocr"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                req = urllib.request.Request(url + "?key=k1", body, method="POST")
                with urllib.request.urlopen(req, timeout=10) as resp:
                    out = json.loads(resp.read())
                break
            except urllib.error.URLError:
                assert proc.poll() is None, proc.communicate()[1][-2000:]
                assert time.monotonic() < deadline, "the endpoint never came up"
                time.sleep(0.2)
        assert {"success", "vin", "box", "confidence", "candidates", "message"} <= set(out)
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(urllib.request.Request(url, body, method="POST"), timeout=10)
        assert denied.value.code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err[-2000:]
