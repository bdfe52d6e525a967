"""Faults a gate meets in months unattended: long broker outages, a broker that keeps
restarting, and the agent killed at random moments. Real Mosquitto, real processes."""

from __future__ import annotations

import json
import random
import re
import resource
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from agent.publish.mqtt import MqttConfig, MqttPublisher
from agent.publish.outbox import Outbox
from tests.barcode_frames import make_vin, write_frames
from tests.conftest import agent_env
from tests.mqtt_broker import HOST, Collector, MosquittoBroker, event_ids, wait_until

pytestmark = pytest.mark.integration


def _publisher(broker: MosquittoBroker, tmp_path: Path, max_messages: int) -> MqttPublisher:
    config = MqttConfig(host=broker.host, port=broker.port, reconnect_min_s=1, reconnect_max_s=1)
    outbox = Outbox(tmp_path / "outbox.sqlite", max_messages=max_messages, synchronous="NORMAL")
    return MqttPublisher(config, "dev", outbox)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_long_outage_keeps_the_newest_events_within_the_bound(
    broker_factory: Any, tmp_path: Path
) -> None:
    """While the broker is gone the outbox grows to its bound, then drops the oldest (the
    documented policy), counting them; memory stays flat; after the broker returns
    everything inside the bound is delivered, in order."""
    broker: MosquittoBroker = broker_factory()
    broker.stop()
    pub = _publisher(broker, tmp_path, max_messages=200)
    pub.start()
    try:
        pad = "x" * 800  # about the size of a real event
        rss0 = _rss_mb()
        for i in range(3000):
            pub.publish_event("cam", {"id": f"o{i}", "pad": pad})
        grew = _rss_mb() - rss0
        stats = pub.stats()["outbox"]
        assert (stats["depth"], stats["dropped_full"]) == (200, 2800)
        assert grew < 40, f"RSS grew {grew:.0f} MB while queuing"
        broker.start()
        sub = Collector(HOST, broker.port, "vin/+/+/events")
        msgs = sub.wait_for(lambda m: len(event_ids(m)) >= 200, timeout=30)
        sub.close()
        assert event_ids(msgs) == [f"o{i}" for i in range(2800, 3000)]
        assert wait_until(lambda: pub.stats()["outbox"]["depth"] == 0)
    finally:
        pub.stop(timeout=3)


def test_broker_restarting_again_and_again_loses_nothing(
    broker_factory: Any, tmp_path: Path
) -> None:
    """A flapping broker (power, OOM, upgrades): five restarts while events stream in; every
    event arrives at least once to a persistent-session subscriber."""
    broker: MosquittoBroker = broker_factory(persistence=True)
    sub = Collector(HOST, broker.port, "vin/+/+/events", client_id="backend", persistent=True)
    pub = _publisher(broker, tmp_path, max_messages=10_000)
    pub.start()
    sent: list[str] = []
    try:
        for restart in range(5):
            assert wait_until(lambda: pub.connected, timeout=15)
            for i in range(40):
                sent.append(f"r{restart}-{i}")
                pub.publish_event("cam", {"id": sent[-1]})
                time.sleep(0.005)
            broker.restart()
        msgs = sub.wait_for(lambda m: set(event_ids(m)) >= set(sent), timeout=40)
        got = event_ids(msgs)
        assert set(got) >= set(sent), f"missing {sorted(set(sent) - set(got))[:10]}"
        # The last restart too: its reconnect may come after the events arrived.
        assert wait_until(lambda: pub.stats()["reconnects"] >= 5, timeout=15)
    finally:
        sub.close()
        pub.stop(timeout=3)


_NEW = re.compile(r"cam0 new ([0-9a-f]{8}) ([A-HJ-NPR-Z0-9]{17})")


@pytest.mark.slow
def test_agent_killed_at_random_moments_never_loses_a_queued_event(
    cli: list[str], broker_factory: Any, tmp_path: Path
) -> None:
    """SIGKILL at random moments during replays, many times, with the broker down: every
    event the agent logged as queued (committed to the outbox) is delivered once the
    broker is back and the agent runs again. Frames carry barcode VINs so that every
    round produces events whatever the OCR models' accuracy."""
    broker: MosquittoBroker = broker_factory()
    url = f"mqtt://{broker.host}:{broker.port}"
    broker.stop()
    rng = random.Random(11)
    env = agent_env()
    base = [*cli, "run", "--device-id", "gate", "--state-dir", str(tmp_path / "state")]
    base += ["--mqtt-url", url]
    queued: dict[str, str] = {}
    for round_ in range(8):
        frames = tmp_path / f"round{round_}"
        write_frames(frames, [make_vin(rng) for _ in range(4)])
        proc = subprocess.Popen(
            [*base, "--source", str(frames)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        time.sleep(rng.uniform(1.5, 6.0))
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=10)
        queued.update(dict(m.groups() for m in _NEW.finditer(err)))
    assert len(queued) >= 4, "too few events were queued before the kills to test anything"

    broker.start()
    sub = Collector(HOST, broker.port, "vin/+/+/events")
    drain = tmp_path / "drain"
    write_frames(drain, [make_vin(rng)])
    proc = subprocess.run(
        [*base, "--source", str(drain)], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]

    def delivered(msgs: list[Any]) -> set[str]:
        return {json.loads(m.payload)["event_id"][:8] for m in msgs}

    msgs = sub.wait_for(lambda m: delivered(m) >= set(queued), timeout=30)
    sub.close()
    missing = set(queued) - delivered(msgs)
    assert not missing, f"{len(missing)} of {len(queued)} queued events never arrived"
    print(f"\n{len(queued)} events queued across 8 killed runs; all delivered")
