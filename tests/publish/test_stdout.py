"""StdoutPublisher: the no-broker mode writes one JSON line per message."""

from __future__ import annotations

import io
import json
import threading

import pytest

from agent.publish import Publisher
from agent.publish.mqtt import MqttPublisher
from agent.publish.stdout import StdoutPublisher


def test_lines_have_topic_and_payload() -> None:
    """Downstream tools (jq, log shippers) parse exactly {"topic", "payload"} per line."""
    out = io.StringIO()
    pub = StdoutPublisher("dev1", stream=out)
    pub.start()
    assert pub.publish_event("cam1", {"vin": "1HGCM82633A004352", "ü": 1}) == 1
    assert pub.publish_event("cam1", {"n": 2}) == 2
    pub.publish_status("cam1", True)
    pub.publish_stats({"frames": 3})
    pub.publish_snapshot("cam1", b"\xff\xd8jpeg")
    pub.stop()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["topic"] for line in lines] == [
        "vin/dev1/cam1/events",
        "vin/dev1/cam1/events",
        "vin/dev1/cam1/status",
        "vin/dev1/stats",
        "vin/dev1/cam1/snapshot",
    ]
    assert lines[0]["payload"] == {"vin": "1HGCM82633A004352", "ü": 1}
    assert lines[2]["payload"]["online"] is True
    assert lines[4]["payload"] == {"content_type": "image/jpeg", "bytes": 6}
    assert pub.stats() == {"connected": True, "written": 5, "failed": 0}


def test_both_publishers_satisfy_the_protocol() -> None:
    """The daemon is typed against Publisher; both implementations must fit it."""
    assert isinstance(StdoutPublisher("d", stream=io.StringIO()), Publisher)
    for name in ("start", "stop", "publish_event", "publish_status", "publish_stats",
                 "publish_snapshot", "stats", "connected"):  # fmt: skip
        assert hasattr(MqttPublisher, name)


def test_broken_stream_is_reported_not_raised() -> None:
    """`vin-agent | head` closes the pipe; the daemon must keep running and say so."""
    out = io.StringIO()
    pub = StdoutPublisher("d", stream=out)
    out.close()
    pub.publish_event("c", {"a": 1})
    assert pub.connected is False
    assert pub.stats()["failed"] == 1


def test_bad_payload_raises() -> None:
    """Non-JSON payloads are caller bugs and must not be written half-way."""
    out = io.StringIO()
    pub = StdoutPublisher("d", stream=out)
    with pytest.raises(ValueError):
        pub.publish_event("c", {"x": float("nan")})
    with pytest.raises(ValueError, match="camera"):
        pub.publish_event("a/b", {})
    assert out.getvalue() == ""


def test_concurrent_writers_do_not_interleave() -> None:
    """Several camera threads publish at once; every line must stay valid JSON."""
    out = io.StringIO()
    pub = StdoutPublisher("d", stream=out)

    def camera(n: int) -> None:
        for i in range(50):
            pub.publish_event(f"c{n}", {"i": i, "pad": "x" * 500})

    threads = [threading.Thread(target=camera, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = out.getvalue().splitlines()
    assert len(lines) == 200
    assert all(json.loads(line)["payload"]["pad"] for line in lines)
