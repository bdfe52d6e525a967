"""Topic layout and the validation that keeps every topic under the prefix."""

from __future__ import annotations

import pytest

from agent.publish.topics import Topics


def test_layout() -> None:
    """Subscribers and dashboards depend on these exact topic strings."""
    t = Topics("vin", "gate-7")
    assert t.available == "vin/gate-7/available"
    assert t.stats == "vin/gate-7/stats"
    assert t.events("cam1") == "vin/gate-7/cam1/events"
    assert t.status("cam1") == "vin/gate-7/cam1/status"
    assert t.snapshot("cam1") == "vin/gate-7/cam1/snapshot"


def test_multi_level_prefix() -> None:
    """Sites share brokers by giving each a multi-level prefix like acme/north/vin."""
    t = Topics("acme/north/vin", "d1")
    assert t.events("c") == "acme/north/vin/d1/c/events"


@pytest.mark.parametrize(
    ("device_id", "needle"),
    [
        ("", "empty"),
        ("a/b", "'/'"),
        ("a+", "wildcard"),
        ("#", "wildcard"),
        ("a\x00b", "NUL"),
        ("tab\there", "control"),
        (" gate", "whitespace"),
    ],
)
def test_bad_device_id(device_id: str, needle: str) -> None:
    """A device id must be exactly one safe level, or topics would escape the layout."""
    with pytest.raises(ValueError, match="device_id") as err:
        Topics("vin", device_id)
    assert needle in str(err.value)


@pytest.mark.parametrize("camera", ["", "x/y", "+", "cam#", "nul\x00", "../up"])
def test_bad_camera(camera: str) -> None:
    """Camera names come from config files; a bad one must fail loudly, not publish oddly."""
    t = Topics("vin", "d1")
    if camera == "../up":
        # '..' has no meaning in MQTT, but the '/' does: still one level only.
        with pytest.raises(ValueError, match="'/'"):
            t.events(camera)
        return
    for fn in (t.events, t.status, t.snapshot):
        with pytest.raises(ValueError, match="camera"):
            fn(camera)


@pytest.mark.parametrize(
    ("prefix", "needle"),
    [
        ("", "non-empty"),
        ("/vin", "empty level"),
        ("vin/", "empty level"),
        ("a//b", "empty level"),
        ("vin/+", "wildcard"),
        ("#", "wildcard"),
        ("$SYS", "reserved"),
        ("v\x00", "NUL"),
    ],
)
def test_bad_prefix(prefix: str, needle: str) -> None:
    """A prefix with wildcards or empty levels would publish outside the intended tree."""
    with pytest.raises(ValueError) as err:
        Topics(prefix, "d1")
    assert needle in str(err.value)


def test_every_topic_stays_under_prefix() -> None:
    """Whatever valid names are used, each topic starts with prefix + device level."""
    for prefix in ("vin", "a/b/c"):
        for camera in ("cam", "Cam 1", "gate.east", "ß-kamera"):
            t = Topics(prefix, "dev")
            for topic in (t.available, t.stats, t.events(camera), t.status(camera)):
                assert topic.startswith(f"{prefix}/dev/")
                assert topic.count("/") - prefix.count("/") in (2, 3)
