"""Home Assistant MQTT discovery: the config payload (unit) and what a real broker
carries to a Home Assistant-like subscriber (integration, real mosquitto)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agent import __version__
from agent.config import AgentConfig
from agent.events import payload
from agent.fusion import Visit, VisitEvent
from agent.publish.homeassistant import (
    ATTRIBUTES,
    ATTRIBUTES_TEMPLATE,
    VALUE_TEMPLATE,
    config_topic,
    discovery_messages,
    object_id,
    sensor_config,
)
from agent.publish.mqtt import MqttConfig, MqttPublisher
from agent.publish.topics import Topics
from agent.service import make_publisher
from tests.mqtt_broker import Collector, MosquittoBroker, wait_until

VIN = "1HGCM82633A004352"
DEVICE = "dev"
ON = {"host": "127.0.0.1", "homeassistant_discovery": True}

# Options of Home Assistant's MQTT sensor schema (and its discovery device block) that
# the config may use; a misspelt key would be rejected by Home Assistant.
SENSOR_KEYS = {
    "availability_topic", "device", "icon", "json_attributes_template",
    "json_attributes_topic", "name", "payload_available", "payload_not_available", "qos",
    "state_topic", "unique_id", "value_template",
}  # fmt: skip
DEVICE_KEYS = {"identifiers", "name", "manufacturer", "model", "sw_version"}


def read_event(camera: str, *, success: bool = True) -> dict[str, Any]:
    """An event payload exactly as the daemon builds it (agent.events.payload)."""
    visit = Visit(
        event_id="9b2f6c1e-0000-4000-8000-000000000001",
        start_time=1_700_000_000.0,
        last_seen=1_700_000_001.0,
        frames=4,
        vin=VIN,
        confidence=0.97 if success else 0.2,
        checksum_valid=True,
        box={"x": 10, "y": 20, "w": 300, "h": 40},
        published=success,
    )
    return payload(
        VisitEvent("new" if success else "end", visit, 1_700_000_001.0),
        device_id=DEVICE,
        camera=camera,
        seq=1,
        min_confidence=0.8,
        models=None,
    )


# -- payload (unit) -------------------------------------------------------------


def test_discovery_is_off_by_default() -> None:
    """Discovery publishes retained topics outside the agent's prefix: only on request."""
    cfg = MqttConfig(host="broker.lan")
    assert cfg.homeassistant_discovery is False
    assert cfg.homeassistant_prefix == "homeassistant"
    assert discovery_messages(cfg, Topics("vin", DEVICE), ["gate"]) == []


def test_sensor_config_has_what_home_assistant_requires() -> None:
    """Home Assistant drops a discovery config with unknown keys or without a state_topic,
    and can only group sensors into a device and keep them across restarts with
    identifiers and a unique_id."""
    topics = Topics("vin", DEVICE)
    cfg = sensor_config(topics, "gate")
    assert set(cfg) <= SENSOR_KEYS, f"not sensor options: {set(cfg) - SENSOR_KEYS}"
    for key in ("state_topic", "unique_id", "name", "availability_topic", "device"):
        assert cfg[key], key
    assert cfg["icon"] == "mdi:car"
    assert cfg["qos"] == 1
    device = cfg["device"]
    assert set(device) == DEVICE_KEYS
    assert isinstance(device["identifiers"], list) and device["identifiers"]
    assert device["manufacturer"] == "vin-agent"
    assert device["sw_version"] == __version__
    # One device per agent: every camera's sensor joins the same one.
    assert sensor_config(topics, "lot")["device"] == device
    assert sensor_config(topics, "lot")["unique_id"] != cfg["unique_id"]


def test_topics_are_the_ones_the_agent_publishes() -> None:
    """The sensor is only useful if it listens where the agent publishes, whatever the
    topic prefix; availability must use the agent's own last-will topic and payloads."""
    topics = Topics("site/vin", "gate-north-1")
    cfg = sensor_config(topics, "gate")
    assert cfg["state_topic"] == topics.events("gate") == "site/vin/gate-north-1/gate/events"
    assert cfg["json_attributes_topic"] == topics.events("gate")
    assert cfg["availability_topic"] == topics.available
    # What MqttPublisher sends on connect / stop and what the broker sends as last will.
    assert (cfg["payload_available"], cfg["payload_not_available"]) == ("online", "offline")
    mqtt_cfg = MqttConfig(host="b", homeassistant_discovery=True, homeassistant_prefix="ha")
    [(topic, data)] = discovery_messages(mqtt_cfg, topics, ["gate"])
    assert topic == "ha/sensor/gate-north-1_gate_vin/config"
    assert json.loads(data) == cfg


def test_templates_only_read_fields_that_events_have() -> None:
    """A template reading a field the event lacks renders nothing in Home Assistant, with
    no error on our side: check every ``value_json.x`` against real event payloads."""
    used = set(re.findall(r"value_json\.(\w+)", VALUE_TEMPLATE + ATTRIBUTES_TEMPLATE))
    assert {"vin", "success", *ATTRIBUTES} <= used
    for success in (True, False):
        event = read_event("gate", success=success)
        assert used <= set(event), f"missing in events: {used - set(event)}"
        assert event["success"] is success
    assert read_event("gate")["vin"] == VIN


def test_object_ids_are_safe_stable_and_distinct() -> None:
    """Home Assistant only accepts [a-zA-Z0-9_-] in the discovery topic's object id; names
    that differ only in replaced characters must not end up as the same entity."""
    assert object_id("gate-north-1", "gate") == "gate-north-1_gate_vin"
    spaced, underscored = object_id("dev", "lot 2"), object_id("dev", "lot_2")
    assert spaced != underscored
    for oid in (spaced, underscored, object_id("gate.local", "Einfahrt Süd")):
        assert re.fullmatch(r"[a-zA-Z0-9_-]+", oid), oid
    assert object_id("dev", "lot 2") == spaced  # stable across restarts
    assert config_topic("homeassistant", "dev", "lot 2") == f"homeassistant/sensor/{spaced}/config"


def test_bad_names_and_prefixes_are_refused() -> None:
    """Mistakes must fail at start-up, not as a topic the broker rejects later."""
    with pytest.raises(ValueError, match="camera"):
        discovery_messages(MqttConfig(**ON), Topics("vin", DEVICE), ["a/b"])
    for prefix in ("", "$SYS", "ha/#", "ha//x"):
        with pytest.raises(ValidationError, match="homeassistant_prefix"):
            MqttConfig(host="b", homeassistant_prefix=prefix)


# -- against a real broker (integration) ------------------------------------------


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Factory for publishers (from an agent config) and collectors; stopped at teardown."""
    made: list[Any] = []

    def make(kind: str, *args: Any, **kwargs: Any) -> Any:
        if kind == "collector":
            obj: Any = Collector(*args, **kwargs)
            made.append(obj)
            return obj
        cameras = kwargs.pop("cameras", ["gate"])
        cfg = AgentConfig.model_validate(
            {
                "device_id": DEVICE,
                "state_dir": tmp_path / "state",
                "mqtt": {"reconnect_min_s": 1, "reconnect_max_s": 1, **ON, **kwargs},
                "cameras": [
                    {"name": name, "source": {"type": "images", "path": str(tmp_path)}}
                    for name in cameras
                ],
            }
        )
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        pub = make_publisher(cfg)  # as the daemon builds it: camera names from the config
        assert isinstance(pub, MqttPublisher)
        made.append(pub)
        return pub

    yield make
    for obj in reversed(made):
        if isinstance(obj, Collector):
            obj.close()
        else:
            obj.stop(timeout=2)
            obj._outbox.close()


@pytest.mark.integration
def test_retained_config_leads_to_the_vin(broker: MosquittoBroker, stack: Any) -> None:
    """End to end as Home Assistant sees it: a late subscriber to homeassistant/# gets a
    retained JSON config per camera, and the config's topics carry the VIN and `online`."""
    early = stack("collector", broker.host, broker.port, "homeassistant/#")
    pub = stack("publisher", port=broker.port, cameras=["gate", "lot 2"])
    pub.start()
    early.wait_for(lambda m: len(m) >= 2)  # published: now the broker holds them
    ha = stack("collector", broker.host, broker.port, "homeassistant/#")
    msgs = ha.wait_for(lambda m: len(m) >= 2)
    by_topic = {m.topic: m for m in msgs}
    assert set(by_topic) == {
        config_topic("homeassistant", DEVICE, "gate"),
        config_topic("homeassistant", DEVICE, "lot 2"),
    }
    assert all(m.retain and m.qos == 1 for m in msgs)
    configs = {json.loads(m.payload)["name"]: json.loads(m.payload) for m in msgs}
    gate = configs["gate VIN"]

    available = stack("collector", broker.host, broker.port, gate["availability_topic"])
    [status] = available.wait_for(lambda m: len(m) >= 1)
    assert (status.payload.decode(), status.retain) == (gate["payload_available"], True)

    state = stack("collector", broker.host, broker.port, gate["state_topic"])
    pub.publish_event("lot 2", read_event("lot 2"))  # another camera: not this sensor's
    pub.publish_event("gate", read_event("gate"))
    [msg] = state.wait_for(lambda m: len(m) >= 1)
    assert json.loads(msg.payload)["vin"] == VIN  # what value_template renders
    assert json.loads(msg.payload)["camera"] == "gate"


@pytest.mark.integration
def test_config_is_republished_after_a_broker_restart(broker: MosquittoBroker, stack: Any) -> None:
    """A broker without persistence forgets retained messages when it restarts; the
    agent must announce the sensor again on reconnect or Home Assistant loses it."""
    early = stack("collector", broker.host, broker.port, "homeassistant/#")
    pub = stack("publisher", port=broker.port)
    pub.start()
    early.wait_for(lambda m: len(m) >= 1)
    broker.restart()
    assert wait_until(lambda: pub.connected and pub.stats()["reconnects"] >= 1, 15)
    # It re-subscribes on reconnect and sees the config again, live or retained.
    assert len(early.wait_for(lambda m: len(m) >= 2, 15)) >= 2
    ha = stack("collector", broker.host, broker.port, "homeassistant/#")
    [msg] = ha.wait_for(lambda m: len(m) >= 1)
    assert (msg.topic, msg.retain) == (config_topic("homeassistant", DEVICE, "gate"), True)


@pytest.mark.integration
def test_nothing_is_announced_when_disabled(broker: MosquittoBroker, stack: Any) -> None:
    """Off by default: without the option the agent writes nothing outside its prefix."""
    everything = stack("collector", broker.host, broker.port, "#")
    pub = stack("publisher", port=broker.port, homeassistant_discovery=False)
    pub.start()
    pub.publish_event("gate", read_event("gate"))
    # Discovery would be sent before any event of the same connection.
    msgs = everything.wait_for(lambda m: any(x.topic.endswith("/events") for x in m))
    assert any(m.topic.endswith("/events") for m in msgs)
    assert not [m.topic for m in msgs if not m.topic.startswith("vin/")]
