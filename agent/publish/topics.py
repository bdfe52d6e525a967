"""MQTT topic layout for one device, validated so nothing escapes the prefix.

Layout (``prefix`` defaults to ``vin``)::

    <prefix>/<device_id>/available            "online" / "offline", retained (last will)
    <prefix>/<device_id>/stats                periodic agent statistics
    <prefix>/<device_id>/<camera>/events      one JSON object per VIN read, QoS 1
    <prefix>/<device_id>/<camera>/status      camera online/offline, retained
    <prefix>/<device_id>/<camera>/snapshot    JPEG frames on request
"""

from __future__ import annotations

import re

# MQTT forbids NUL in topics and reserves + and # as wildcards; "/" would let a
# device id or camera name add levels (and so escape its slot in the layout).
# The other C0/C1 control characters are legal but only ever come from a typo or
# a bad template, and they make topics impossible to type in mosquitto_sub.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# The topic length limit of the protocol, in UTF-8 bytes.
_MAX_TOPIC_BYTES = 65535


def _check_level(kind: str, value: str) -> str:
    """Return ``value`` if it is usable as exactly one topic level, else raise ValueError."""
    if not isinstance(value, str):
        raise ValueError(f"{kind} must be a string, got {type(value).__name__}")
    if value == "":
        raise ValueError(f"{kind} must not be empty (it is a topic level)")
    if "/" in value:
        raise ValueError(f"{kind} {value!r} must not contain '/': it is one topic level")
    if "+" in value or "#" in value:
        raise ValueError(f"{kind} {value!r} must not contain the MQTT wildcards '+' or '#'")
    if _CONTROL.search(value):
        raise ValueError(f"{kind} {value!r} must not contain NUL or other control characters")
    if value != value.strip():
        raise ValueError(f"{kind} {value!r} must not start or end with whitespace")
    return value


def check_prefix(prefix: str) -> str:
    """Validate a topic prefix: one or more non-empty levels, no wildcards, not ``$...``."""
    if not isinstance(prefix, str) or prefix == "":
        raise ValueError("topic prefix must be a non-empty string such as 'vin'")
    if prefix.startswith("$"):
        # Brokers reserve $-topics ($SYS, $share) and do not match them with '#'.
        raise ValueError(f"topic prefix {prefix!r} must not start with '$' (reserved by brokers)")
    for level in prefix.split("/"):
        if level == "":
            raise ValueError(
                f"topic prefix {prefix!r} has an empty level (leading, trailing or double '/')"
            )
        _check_level("topic prefix level", level)
    return prefix


class Topics:
    """The topics one device publishes to; every one of them is under ``prefix``."""

    def __init__(self, prefix: str = "vin", device_id: str = "") -> None:
        self.prefix = check_prefix(prefix)
        self.device_id = _check_level("device_id", device_id)
        self._base = f"{self.prefix}/{self.device_id}"
        if len(self._base.encode()) > _MAX_TOPIC_BYTES // 2:
            # Leave room for camera names; a prefix this long is a mistake anyway.
            raise ValueError("topic prefix plus device_id is too long for an MQTT topic")

    def __repr__(self) -> str:
        return f"Topics(prefix={self.prefix!r}, device_id={self.device_id!r})"

    @property
    def available(self) -> str:
        """Retained ``online``/``offline``; also the last-will topic."""
        return f"{self._base}/available"

    @property
    def stats(self) -> str:
        """Periodic agent statistics."""
        return f"{self._base}/stats"

    def events(self, camera: str) -> str:
        """VIN read events from one camera."""
        return self._camera_topic(camera, "events")

    def status(self, camera: str) -> str:
        """Retained online/offline state of one camera."""
        return self._camera_topic(camera, "status")

    def snapshot(self, camera: str) -> str:
        """JPEG snapshots from one camera."""
        return self._camera_topic(camera, "snapshot")

    def _camera_topic(self, camera: str, leaf: str) -> str:
        topic = f"{self._base}/{_check_level('camera', camera)}/{leaf}"
        if len(topic.encode()) > _MAX_TOPIC_BYTES:
            raise ValueError(f"camera name is too long for an MQTT topic ({len(camera)} chars)")
        return topic
