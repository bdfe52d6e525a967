"""Fleet scale: many agents, one Mosquitto, a backend consumer group on MQTT 5 shared
subscriptions. Each agent is a real `vin-agent run` process with its own device id.

The frames carry VINs as Code 39 barcodes (what door labels and windshield stickers
print), so every agent reads every vehicle whatever the OCR models' accuracy: this test
is about delivery across a fleet, not about reading.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import agent_env
from tests.mqtt_broker import HOST, Collector, MosquittoBroker

pytest.importorskip("zxingcpp")

from tests.barcode_frames import make_vin, write_frames

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AGENTS = 5
VEHICLES = 4  # per agent, each seen in two consecutive frames
CONSUMERS = 3
SHARED = "$share/backend/vin/+/+/events"


def test_a_fleet_delivers_every_event_to_a_consumer_group(
    cli: list[str], broker: MosquittoBroker, tmp_path: Path
) -> None:
    """Many devices publish at once; a backend scales out with a shared subscription.

    Every visit event of every device must arrive (QoS 1: at least once), the group must
    share the load (more than one consumer gets events), and each consumer must see each
    device's events in that device's ``seq`` order (the broker keeps per-publisher order
    on a subscription; idempotent ingestion keys on ``event_id`` + ``type``).
    """
    rng = random.Random(7)
    expected: dict[str, set[str]] = {}
    for a in range(AGENTS):
        vins = [make_vin(rng) for _ in range(VEHICLES)]
        expected[f"gate-{a}"] = set(vins)
        write_frames(tmp_path / f"frames-{a}", vins)
    consumers = [
        Collector(HOST, broker.port, SHARED, client_id=f"backend-{i}") for i in range(CONSUMERS)
    ]
    env = agent_env()
    t0 = time.monotonic()
    procs = []
    for a in range(AGENTS):
        args = [*cli, "run", "--source", str(tmp_path / f"frames-{a}"), "--device-id", f"gate-{a}"]
        args += [
            "--mqtt-url",
            f"mqtt://{HOST}:{broker.port}",
            "--state-dir",
            str(tmp_path / f"s{a}"),
        ]
        procs.append(
            subprocess.Popen(
                args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
            )
        )
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-2000:]
    wall = time.monotonic() - t0

    def ends(msgs: list[Any]) -> int:
        # Ends of published visits; a miss visit (success false: a line never read
        # confidently) ends without a `new` and is not part of the count.
        return sum((e := json.loads(m.payload))["type"] == "end" and e["success"] for m in msgs)

    want_ends = AGENTS * VEHICLES
    deadline = time.monotonic() + 30
    while sum(ends(c.messages) for c in consumers) < want_ends and time.monotonic() < deadline:
        time.sleep(0.1)
    for c in consumers:
        c.close()

    per_consumer = [[json.loads(m.payload) for m in c.messages] for c in consumers]
    events = [e for msgs in per_consumer for e in msgs]
    got: dict[str, set[str]] = defaultdict(set)
    for e in events:
        if e["type"] == "new":
            assert e["success"] and e["source"] in ("barcode", "both")
            got[e["device_id"]].add(e["vin"])
    assert dict(got) == expected
    ended = {(e["device_id"], e["event_id"]) for e in events if e["type"] == "end" and e["success"]}
    opened = {(e["device_id"], e["event_id"]) for e in events if e["type"] == "new"}
    assert ended == opened and len(opened) == want_ends
    assert sum(1 for msgs in per_consumer if msgs) >= 2, [len(m) for m in per_consumer]
    for msgs in per_consumer:
        by_device: dict[str, list[int]] = defaultdict(list)
        for e in msgs:
            by_device[e["device_id"]].append(e["seq"])
        for seqs in by_device.values():
            assert seqs == sorted(seqs)
    print(
        f"\nfleet: {AGENTS} agents, {len(events)} events in {wall:.1f} s, split "
        f"{[len(m) for m in per_consumer]} across {CONSUMERS} consumers"
    )
