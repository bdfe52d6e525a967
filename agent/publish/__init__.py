"""Publishing reads: MQTT with a durable on-disk outbox, or JSON lines on stdout."""

from agent.publish.base import Publisher

__all__ = ["Publisher"]
