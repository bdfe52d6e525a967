"""MqttPublisher against a real mosquitto: delivery, retained state, last will,
outages, crashes, credentials, TLS and protocol versions. No mocks of paho."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.publish.mqtt import MqttConfig, MqttPublisher
from agent.publish.outbox import Outbox
from tests.mqtt_broker import (
    HOST,
    Collector,
    MosquittoBroker,
    TestPki,
    event_ids,
    free_port,
    make_test_pki,
    payloads,
    wait_until,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DEVICE = "dev"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Factory for publishers and collectors; everything is stopped at teardown."""
    made: list[Any] = []

    def make(kind: str, *args: Any, state: Path | None = None, **kwargs: Any) -> Any:
        if kind == "collector":
            obj: Any = Collector(*args, **kwargs)
            made.append(obj)
            return obj
        cfg = MqttConfig(reconnect_min_s=1, reconnect_max_s=1, **kwargs)
        outbox = Outbox((state or tmp_path / "state") / "outbox.sqlite", synchronous="NORMAL")
        pub = MqttPublisher(cfg, DEVICE, outbox)
        made.append((pub, outbox))
        return pub

    yield make
    for obj in reversed(made):
        if isinstance(obj, Collector):
            obj.close()
        else:
            obj[0].stop(timeout=2)
            obj[1].close()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


def test_events_arrive_in_order_with_qos1(broker: MosquittoBroker, stack: Any) -> None:
    """The core promise: every event, in order, QoS 1, on the documented topics."""
    sub = stack("collector", broker.host, broker.port)
    pub = stack("publisher", url=f"mqtt://{broker.host}:{broker.port}")
    pub.start()
    for i in range(30):
        assert pub.publish_event(f"cam{i % 2}", {"id": f"e{i}", "vin": "1HGCM82633A004352"}) > 0
    msgs = sub.wait_for(lambda m: len(event_ids(m)) >= 30)
    events = [m for m in msgs if m.topic.endswith("/events")]
    assert event_ids(events) == [f"e{i}" for i in range(30)]
    assert [m.topic for m in events[:2]] == ["vin/dev/cam0/events", "vin/dev/cam1/events"]
    assert {m.qos for m in events} == {1}
    assert events[0].properties.ContentType == "application/json"
    assert wait_until(lambda: pub.stats()["acked"] == 30)
    stats = pub.stats()
    assert stats["outbox"]["depth"] == 0
    assert (stats["connected"], stats["sent"], stats["reconnects"]) == (True, 30, 0)


def test_available_online_then_offline_retained(broker: MosquittoBroker, stack: Any) -> None:
    """Dashboards read `available` and camera status as retained state at any time."""
    pub = stack("publisher", host=broker.host, port=broker.port)
    pub.start()
    pub.publish_status("cam1", True)
    assert wait_until(lambda: pub.connected)
    late = stack("collector", broker.host, broker.port)  # subscribes after the fact
    msgs = late.wait_for(lambda m: len(m) >= 2)
    retained = {m.topic: m.payload for m in msgs if m.retain}
    assert retained["vin/dev/available"] == b"online"
    assert json.loads(retained["vin/dev/cam1/status"])["online"] is True
    pub.stop(timeout=3)
    assert not pub.connected
    later = stack("collector", broker.host, broker.port, "vin/dev/available")
    msgs = later.wait_for(lambda m: len(m) >= 1)
    assert (msgs[0].payload, msgs[0].retain) == (b"offline", True)


def test_status_set_before_connecting_is_sent_once(broker: MosquittoBroker, stack: Any) -> None:
    """A camera state queued before the connect goes out with the announcement, not again.

    Then each change is sent once, and a repeat of the same state not at all.  (A
    flip and its undo within one worker turn collapse to the latest state: this
    topic is retained state, not a log; the stats and logs count reconnects.)
    """
    sub = stack("collector", broker.host, broker.port, "vin/dev/+/status")
    pub = stack("publisher", host=broker.host, port=broker.port)
    pub.publish_status("gate-once", True)  # before start: queued for the worker
    pub.start()
    assert wait_until(lambda: pub.connected)
    sub.wait_for(lambda m: len(m) >= 1)
    pub.publish_status("gate-once", False)
    sub.wait_for(lambda m: len(m) >= 2)
    pub.publish_status("gate-once", False)
    pub.publish_status("gate-once", True)
    sub.wait_for(lambda m: len(m) >= 3)
    time.sleep(0.5)  # a duplicate would arrive by now
    states = [json.loads(m.payload)["online"] for m in sub.messages]
    assert states == [True, False, True]


def test_stop_flushes_what_it_can(broker: MosquittoBroker, stack: Any) -> None:
    """Events published just before shutdown are delivered by stop(), not left behind."""
    sub = stack("collector", broker.host, broker.port)
    pub = stack("publisher", host=broker.host, port=broker.port)
    pub.start()
    assert wait_until(lambda: pub.connected)
    for i in range(200):
        pub.publish_event("cam", {"id": f"s{i}"})
    pub.stop(timeout=5)
    assert pub.stats()["outbox"]["depth"] == 0
    msgs = sub.wait_for(lambda m: len(event_ids(m)) >= 200)
    assert event_ids(msgs) == [f"s{i}" for i in range(200)]
    assert payloads(msgs, "vin/dev/available")[-1] == b"offline"


def test_stop_before_the_first_connack_still_flushes(broker: MosquittoBroker, stack: Any) -> None:
    """A short-lived run (one image, a replay) may stop before its connection is up; its
    events must reach the broker within the flush timeout, not wait for the next start."""
    sub = stack("collector", broker.host, broker.port)
    pub = stack("publisher", host=broker.host, port=broker.port)
    for i in range(5):
        pub.publish_event("cam", {"id": f"e{i}"})
    pub.start()
    pub.stop(timeout=5)  # microseconds after connect_async: no CONNACK yet
    assert pub.stats()["outbox"]["depth"] == 0
    msgs = sub.wait_for(lambda m: len(event_ids(m)) >= 5)
    assert event_ids(msgs) == [f"e{i}" for i in range(5)]


_CHILD = """
import logging, sys, time
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from agent.publish.mqtt import MqttConfig, MqttPublisher
from agent.publish.outbox import Outbox
port, state, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
cfg = MqttConfig(host="127.0.0.1", port=port, reconnect_min_s=1, reconnect_max_s=1)
pub = MqttPublisher(cfg, "dev", Outbox(state + "/outbox.sqlite"))
pub.start()
for i in range(n):
    pub.publish_event("cam", {"id": "k%d" % i})
print("queued", flush=True)
while not pub.connected:
    time.sleep(0.02)
print("connected", flush=True)
time.sleep(120)
"""


def _child(port: int, state: Path, n: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(port), str(state), str(n)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )


def test_last_will_when_process_is_killed(
    broker: MosquittoBroker, stack: Any, tmp_path: Path
) -> None:
    """A crashed agent cannot say goodbye; the broker must publish `offline` for it."""
    sub = stack("collector", broker.host, broker.port, "vin/dev/available")
    child = _child(broker.port, tmp_path / "child", 0)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "queued"
        assert child.stdout.readline().strip() == "connected"
        sub.wait_for(lambda m: b"online" in payloads(m, "vin/dev/available"))
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(10)
    msgs = sub.wait_for(lambda m: payloads(m, "vin/dev/available")[-1:] == [b"offline"])
    assert payloads(msgs, "vin/dev/available")[-1] == b"offline"


def test_broker_restart_mid_stream_loses_nothing(broker_factory: Any, stack: Any) -> None:
    """Events published while the broker is down are delivered once it is back.

    The broker runs with persistence so the subscriber's persistent session (and
    the messages queued for it) survive the restart: then it does not matter
    whether the publisher or the subscriber reconnects first.
    """
    broker = broker_factory(persistence=True)
    sub = stack("collector", broker.host, broker.port, client_id="outage-sub", persistent=True)
    pub = stack("publisher", host=broker.host, port=broker.port)
    pub.start()
    assert wait_until(lambda: pub.connected)
    sent: list[str] = []
    for i in range(60):
        if i == 20:
            broker.stop()
            assert wait_until(lambda: not pub.connected, 5)
        if i == 40:
            broker.start()
        sent.append(f"r{i}")
        pub.publish_event("cam", {"id": sent[-1]})
        time.sleep(0.02)
    msgs = sub.wait_for(lambda m: set(event_ids(m)) >= set(sent), timeout=15)
    got = event_ids(msgs)
    assert set(got) >= set(sent), f"missing: {sorted(set(sent) - set(got))}"
    assert wait_until(lambda: pub.stats()["outbox"]["depth"] == 0)
    assert pub.stats()["reconnects"] >= 1


def test_killed_publisher_delivers_unacked_rows_after_restart(
    broker: MosquittoBroker, stack: Any, tmp_path: Path
) -> None:
    """Events queued by an agent that was SIGKILLed are sent by the next one (same state dir)."""
    state = tmp_path / "shared-state"
    broker.stop()  # nobody can ack: all rows stay unacknowledged in the outbox
    child = _child(broker.port, state, 5)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "queued"
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(10)
    broker.start()
    sub = stack("collector", broker.host, broker.port)
    pub = stack("publisher", host=broker.host, port=broker.port, state=state)
    assert pub.stats()["outbox"]["depth"] == 5
    pub.start()
    msgs = sub.wait_for(lambda m: len(event_ids(m)) >= 5)
    assert event_ids(msgs) == [f"k{i}" for i in range(5)]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_wrong_password_is_logged_once_and_never_raised(
    broker_factory: Any, stack: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, protocol: str
) -> None:
    """Bad credentials: one clear error, retries with backoff, no crash, no password in logs."""
    secret = "wr0ng-Pa55word-XYZ"  # noqa: S105 - a test credential
    broker = broker_factory(users={"gate": "right-password"})
    (tmp_path / "pw").write_text(secret + "\n")
    caplog.set_level(logging.DEBUG, logger="agent.publish")
    pub = stack(
        "publisher",
        url=f"mqtt://gate@{broker.host}:{broker.port}",
        password_file=tmp_path / "pw",
        protocol=protocol,
    )
    pub.start()
    pub.publish_event("cam", {"id": "x"})

    def refusals() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "refused the login" in r.getMessage()]

    assert wait_until(lambda: len(refusals()) >= 2, 6), "no retry after the refusal"
    assert not pub.connected
    errors = [r for r in refusals() if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "broker 127.0.0.1" in errors[0].getMessage()
    assert "user gate" in errors[0].getMessage()
    assert "not authori" in errors[0].getMessage()
    assert "password_file" in errors[0].getMessage()
    assert secret not in caplog.text
    assert pub.stats()["outbox"]["depth"] == 1  # kept for when the password is fixed
    (tmp_path / "pw").write_text("right-password\n")  # read again at the next attempt
    assert wait_until(lambda: pub.connected, 5)
    assert wait_until(lambda: pub.stats()["outbox"]["depth"] == 0)


def test_unreachable_broker_keeps_queuing(
    stack: Any, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """No broker: warn (once, not per retry), keep events, and still stop promptly."""
    caplog.set_level(logging.WARNING, logger="agent.publish")
    pub = stack("publisher", host=HOST, port=free_port())
    pub.start()
    for i in range(3):
        pub.publish_event("cam", {"id": i})
    assert wait_until(lambda: any("cannot reach" in r.getMessage() for r in caplog.records))
    time.sleep(2.2)  # a couple more attempts
    warnings = [r for r in caplog.records if "cannot reach" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert not pub.connected
    t0 = time.monotonic()
    pub.stop(timeout=2)
    assert time.monotonic() - t0 < 3
    assert pub.stats()["outbox"]["depth"] == 3


def test_refused_publish_keeps_the_row(
    broker_factory: Any, stack: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """MQTT 5 PUBACK >= 0x80 (here: ACL says not authorised) means not delivered: keep it."""
    broker = broker_factory(acl="topic readwrite vin/dev/available\n")
    caplog.set_level(logging.WARNING, logger="agent.publish")
    pub = stack("publisher", host=broker.host, port=broker.port)
    pub.start()
    row = pub.publish_event("cam", {"id": "denied"})
    assert wait_until(lambda: pub.stats()["failed"] == 1)
    stats = pub.stats()
    assert stats["acked"] == 0
    assert stats["outbox"]["depth"] == 1
    assert any(f"refused outbox message {row}" in r.getMessage() for r in caplog.records)


def test_tls_with_client_certificate(broker_factory: Any, stack: Any, pki: TestPki) -> None:
    """mqtts with our CA and a client certificate (broker requires one) delivers events."""
    broker = broker_factory(pki=pki)
    sub = stack("collector", broker.host, broker.port)
    pub = stack(
        "publisher",
        url=f"mqtts://{broker.host}:{broker.tls_port}",
        ca_file=pki.ca,
        cert_file=pki.client_cert,
        key_file=pki.client_key,
    )
    pub.start()
    pub.publish_event("cam", {"id": "tls"})
    msgs = sub.wait_for(lambda m: event_ids(m) == ["tls"])
    assert event_ids(msgs) == ["tls"]


def test_tls_unknown_ca_is_refused(
    broker_factory: Any, stack: Any, pki: TestPki, caplog: pytest.LogCaptureFixture
) -> None:
    """Verification is on by default: a broker certificate from an unknown CA is rejected."""
    broker = broker_factory(pki=pki)
    caplog.set_level(logging.WARNING, logger="agent.publish")
    # No ca_file: only the system CAs are trusted, and they did not sign the test CA.
    pub = stack(
        "publisher",
        url=f"mqtts://{broker.host}:{broker.tls_port}",
        cert_file=pki.client_cert,
        key_file=pki.client_key,
    )
    pub.start()
    assert wait_until(lambda: any("TLS" in r.getMessage() for r in caplog.records), 5)
    assert not pub.connected
    error = next(r for r in caplog.records if "TLS" in r.getMessage())
    assert error.levelno == logging.ERROR
    assert "certificate verify failed" in error.getMessage() or "verification" in error.getMessage()
    assert "ca_file" in error.getMessage()


def test_mqtt_311(broker: MosquittoBroker, stack: Any) -> None:
    """Older brokers and bridges speak 3.1.1 only; events and the will must still work."""
    sub = stack("collector", broker.host, broker.port, v5=False)
    pub = stack("publisher", host=broker.host, port=broker.port, protocol="3.1.1")
    pub.start()
    for i in range(3):
        pub.publish_event("cam", {"id": f"v3-{i}"})
    msgs = sub.wait_for(lambda m: len(event_ids(m)) >= 3)
    assert event_ids(msgs) == ["v3-0", "v3-1", "v3-2"]
    assert b"online" in payloads(msgs, "vin/dev/available")
    assert wait_until(lambda: pub.stats()["acked"] == 3)


def test_mosquitto_sub_sees_events(broker: MosquittoBroker, stack: Any) -> None:
    """The tool operators actually use to check a gate: mosquitto_sub must see the events."""
    if shutil.which("mosquitto_sub") is None:
        pytest.skip("mosquitto_sub missing: apt-get install mosquitto-clients")
    # mosquitto_sub block-buffers stdout into a pipe; line buffering lets us see its
    # SUBACK (-d) and publish only once it is subscribed.
    line_buffered = ["stdbuf", "-oL"] if shutil.which("stdbuf") else []
    proc = subprocess.Popen(
        [*line_buffered, "mosquitto_sub", "-h", broker.host, "-p", str(broker.port),
         "-q", "1", "-v", "-d", "-t", f"vin/{DEVICE}/+/events", "-C", "2", "-W", "15"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        if line_buffered:
            while "SUBACK" not in proc.stdout.readline():
                pass
        else:
            time.sleep(1.0)
        pub = stack("publisher", host=broker.host, port=broker.port)
        pub.start()
        pub.publish_event("gate1", {"id": "a"})
        pub.publish_event("gate1", {"id": "b"})
        out, _ = proc.communicate(timeout=15)
    finally:
        proc.kill()
    data = [line for line in out.splitlines() if line.startswith("vin/")]
    assert data == ['vin/dev/gate1/events {"id":"a"}', 'vin/dev/gate1/events {"id":"b"}']


def test_unreadable_password_file_never_logs_in_without_it(
    broker_factory: Any, stack: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A password file that is missing (not yet provisioned, wrong path) must not turn into
    a login without a password: a broker could accept that and drop the publishes by ACL
    while still acknowledging them. Events wait until the file can be read."""
    broker = broker_factory(users={"gate": "right-password"})
    pw = tmp_path / "pw"
    caplog.set_level(logging.ERROR, logger="agent.publish")
    pub = stack("publisher", url=f"mqtt://gate@{broker.host}:{broker.port}", password_file=pw)
    pub.start()
    pub.publish_event("cam", {"id": "wait"})
    assert wait_until(lambda: "cannot read password_file" in caplog.text, 5)
    time.sleep(1.5)
    assert not pub.connected
    assert pub.stats()["outbox"]["depth"] == 1
    pw.write_text("right-password\n")
    assert wait_until(lambda: pub.connected, 10)
    assert wait_until(lambda: pub.stats()["outbox"]["depth"] == 0)
