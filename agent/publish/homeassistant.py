"""Home Assistant MQTT discovery: one "last VIN" sensor per camera, no HA-side YAML.

Why: Home Assistant creates entities for whatever it finds, retained, under
``<discovery prefix>/<component>/<object_id>/config``. Publishing such a config
for each camera turns the agent's existing topics into a device with one sensor
per camera, so users need no hand-written ``mqtt:`` sensors that break when a
topic or field changes. The sensor only points at topics the agent already
publishes (events and ``available``); nothing extra is sent per read.

Why every connect: a broker without persistence forgets retained messages when
it restarts, and so would Home Assistant's entities after its own restart.

Pure functions: the publisher (``agent.publish.mqtt``) sends what these return.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

from agent import __version__
from agent.publish.mqtt_config import MqttConfig
from agent.publish.topics import Topics

# Home Assistant accepts only these characters in the node/object id of a discovery topic.
_NOT_ID = re.compile(r"[^a-zA-Z0-9_-]")

# Fields of the event payload (agent.events.payload) the sensor shows as attributes.
ATTRIBUTES = ("confidence", "box", "timestamp", "decoded", "camera", "event_id")

# The state is the VIN of the latest successful read. A miss (success false, vin null)
# keeps the previous VIN and its attributes instead of blanking the sensor.
VALUE_TEMPLATE = "{{ value_json.vin if value_json.success else this.state }}"
ATTRIBUTES_TEMPLATE = (
    "{% if value_json.success %}{{ {"
    + ", ".join(f'"{name}": value_json.{name}' for name in ATTRIBUTES)
    + "} | tojson }}{% else %}{{ this.attributes | tojson }}{% endif %}"
)


def object_id(device_id: str, camera: str) -> str:
    """``<device>_<camera>_vin`` reduced to ``[a-zA-Z0-9_-]``; also the sensor's unique_id.

    When characters had to be replaced, a short hash of the real names is appended,
    so cameras such as ``gate 1`` and ``gate_1`` do not collide in Home Assistant.
    """
    raw = f"{device_id}_{camera}_vin"
    clean = _NOT_ID.sub("_", raw)
    if clean != raw:
        digest = hashlib.sha256(f"{device_id}/{camera}".encode()).hexdigest()[:8]
        clean = f"{clean}_{digest}"
    return clean


def config_topic(discovery_prefix: str, device_id: str, camera: str) -> str:
    """Where the discovery config of ``camera``'s sensor is published (retained)."""
    return f"{discovery_prefix}/sensor/{object_id(device_id, camera)}/config"


def device_block(topics: Topics) -> dict[str, Any]:
    """The Home Assistant device all of this agent's sensors belong to."""
    return {
        "identifiers": [f"vin-agent_{topics.device_id}"],
        "name": f"VIN reader {topics.device_id}",
        "manufacturer": "vin-agent",
        "model": "vin-agent edge VIN reader",
        "sw_version": __version__,
    }


def sensor_config(topics: Topics, camera: str) -> dict[str, Any]:
    """Discovery config of the sensor whose state is ``camera``'s last VIN."""
    events = topics.events(camera)
    return {
        "name": f"{camera} VIN",
        "unique_id": object_id(topics.device_id, camera),
        "icon": "mdi:car",
        "state_topic": events,
        "value_template": VALUE_TEMPLATE,
        "json_attributes_topic": events,
        "json_attributes_template": ATTRIBUTES_TEMPLATE,
        "qos": 1,  # events are published with QoS 1; subscribe the same way
        "availability_topic": topics.available,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device_block(topics),
    }


def discovery_messages(
    config: MqttConfig, topics: Topics, cameras: Iterable[str]
) -> list[tuple[str, bytes]]:
    """(topic, JSON payload) of every camera's discovery config, to publish retained;
    none unless ``config.homeassistant_discovery`` is on.

    Raises ValueError for a camera name that cannot be a topic level.
    """
    if not config.homeassistant_discovery:
        return []
    return [
        (
            config_topic(config.homeassistant_prefix, topics.device_id, camera),
            json.dumps(sensor_config(topics, camera), ensure_ascii=False).encode(),
        )
        for camera in cameras
    ]
