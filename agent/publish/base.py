"""The interface every publisher offers, so the daemon does not care which one it has."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Publisher(Protocol):
    """Sends reads, camera state, stats and snapshots somewhere.

    ``publish_event`` must not lose an event once it has returned (the MQTT
    publisher commits it to an on-disk outbox first); the other methods are
    best effort. None of the methods raise because a broker is unreachable.
    """

    def start(self) -> None:
        """Begin delivering (connect in the background); returns at once."""
        ...

    def stop(self, timeout: float = 5.0) -> None:
        """Deliver what can be delivered within ``timeout`` seconds, then shut down."""
        ...

    def publish_event(self, camera: str, payload: dict[str, Any]) -> int:
        """Queue one read event; returns its outbox id."""
        ...

    def publish_status(self, camera: str, online: bool) -> None:
        """Announce a camera as online or offline (retained)."""
        ...

    def publish_stats(self, stats: dict[str, Any]) -> None:
        """Publish agent statistics (not queued while disconnected)."""
        ...

    def publish_snapshot(self, camera: str, jpeg: bytes) -> None:
        """Publish one JPEG frame (not queued while disconnected)."""
        ...

    @property
    def connected(self) -> bool:
        """True while messages can reach their destination."""
        ...

    def stats(self) -> dict[str, Any]:
        """Counters for health checks and the stats topic."""
        ...
