"""MQTT publisher: events go through the durable outbox, are sent with QoS 1 and
are deleted from the outbox only when the broker acknowledges them.

Threads and who does what:

* paho's network thread runs the callbacks. They only record facts and queue
  them for the worker, because paho holds its message lock while calling
  ``on_publish``; touching our state (or the outbox) there and calling
  ``publish()`` from other threads would invite lock-order deadlocks.
* One worker thread owns delivery: it hands outbox rows to paho (at most
  ``delivery.WINDOW`` unacknowledged at a time, oldest first), maps paho message ids to
  outbox rows, acks rows on PUBACK and re-publishes ``online``, camera statuses
  and (if enabled) Home Assistant discovery configs on every connect.
* Callers only put events into the outbox and wake the worker.

Reconnects: paho keeps unacknowledged QoS 1 messages across reconnects and
resends them itself after CONNACK. The outbox also still has those rows, so on
every connect the worker asks paho to drop its copies
(``Client.drop_out_messages()`` in ``on_connect``, before paho resends) and
re-sends from the outbox, oldest first. That keeps the order, sends each
message once per connection, and loses nothing; a message the broker got just
before the link died may arrive twice (at-least-once delivery).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import threading
import time
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.publish.delivery import PARK_S, Delivery
from agent.publish.homeassistant import discovery_messages
from agent.publish.mqtt_client import BrokerLink
from agent.publish.mqtt_config import MqttConfig, MqttConfigError
from agent.publish.outbox import Outbox, OutboxError
from agent.publish.topics import Topics

__all__ = ["MqttConfig", "MqttConfigError", "MqttPublisher"]

logger = logging.getLogger(__name__)

_TICK_S = 0.5


def _json(obj: Any) -> bytes:
    # allow_nan=False: NaN/Infinity are not JSON and break strict consumers.
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


class MqttPublisher:
    """Publishes events (durably), statuses, stats and snapshots to one broker."""

    def __init__(
        self, config: MqttConfig, device_id: str, outbox: Outbox, *, cameras: Iterable[str] = ()
    ) -> None:
        self.config = config
        self.topics = Topics(config.prefix, device_id)
        self._discovery = discovery_messages(config, self.topics, cameras)  # retained, per connect
        self._outbox = outbox
        self._v5 = config.protocol == "5"
        self._client_id = config.client_id or f"vin-agent-{device_id}"
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        # Guards the counters and flags below; never held while calling paho.
        self._lock = threading.Lock()
        self._acked_cond = threading.Condition(self._lock)
        self._link_up = False
        # True while the worker has nothing it could send (outbox empty or all parked);
        # unknown (False) until it has looked. _puts tells it whether an event came in
        # while it was looking.
        self._idle = False
        self._puts = 0
        self._started = False
        self._stopping = False
        self._count = {"connects": 0, "sent": 0, "acked": 0, "failed": 0, "dropped_offline": 0}
        self._statuses: dict[str, bytes] = {}
        self._sent_status: dict[str, bytes] = {}  # worker thread only
        self._worker: threading.Thread | None = None
        # Worker-only state.
        self._delivery = Delivery(outbox)
        self._online = False
        self._json_props = self._props("application/json", utf8=True)
        self._jpeg_props = self._props("image/jpeg", utf8=False)
        self._link = BrokerLink(config, self._client_id, self.topics.available)
        self._client = self._link.client
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish

    def __repr__(self) -> str:
        return f"MqttPublisher(broker={self.config.broker!r}, client_id={self._client_id!r})"

    def _props(self, content_type: str, utf8: bool) -> Properties | None:
        if not self._v5:
            return None
        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = content_type
        if utf8:
            props.PayloadFormatIndicator = 1
        return props

    # -- public API ------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background and start delivering; returns at once.

        Raises MqttConfigError only for unusable TLS files; broker problems are
        logged and retried, never raised.
        """
        if self._started:
            return
        cfg = self.config
        if cfg.tls:
            self._link.setup_tls()
        self._started = True
        self._worker = threading.Thread(target=self._run, name="mqtt-outbox", daemon=True)
        self._worker.start()
        logger.info(
            "connecting to MQTT broker %s as %s (client id %s, MQTT %s%s)",
            cfg.broker,
            cfg.username or "anonymous",
            self._client_id,
            cfg.protocol,
            ", TLS" if cfg.tls else "",
        )
        self._client.connect_async(cfg.host or "", cfg.port or 0, cfg.keepalive)
        self._client.loop_start()

    def publish_event(self, camera: str, payload: dict[str, Any]) -> int:
        """Queue an event durably and return its outbox id; it is sent when possible.

        Raises ValueError/TypeError for a bad camera name or a payload that is not
        JSON (caller bugs); never for broker trouble.
        """
        if not isinstance(payload, dict):
            raise TypeError(f"payload must be a dict, not {type(payload).__name__}")
        row_id = self._outbox.put(self.topics.events(camera), _json(payload), qos=1)
        with self._lock:
            self._idle = False
            self._puts += 1
        self._events.put(("wake",))
        return row_id

    def publish_status(self, camera: str, online: bool) -> None:
        """Retained camera state; the latest one is re-published on every connect."""
        topic = self.topics.status(camera)  # validate before remembering it
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        data = _json({"camera": camera, "online": bool(online), "time": now})
        with self._lock:
            self._statuses[camera] = data
        # The worker publishes it, so a reconnect cannot re-send an older value after it.
        self._events.put(("status", topic, camera))

    def publish_stats(self, stats: dict[str, Any]) -> None:
        """QoS 0, not retained; dropped (and counted) while disconnected."""
        self._publish_now(self.topics.stats, _json(stats), self._json_props)

    def publish_snapshot(self, camera: str, jpeg: bytes) -> None:
        """QoS 0 JPEG; dropped (and counted) while disconnected: frames go stale fast."""
        if not isinstance(jpeg, bytes | bytearray):
            raise TypeError(f"jpeg must be bytes, not {type(jpeg).__name__}")
        self._publish_now(self.topics.snapshot(camera), bytes(jpeg), self._jpeg_props)

    def _publish_now(self, topic: str, data: bytes, props: Properties | None) -> None:
        if not self._link_up:
            with self._lock:
                self._count["dropped_offline"] += 1
            return
        self._client.publish(topic, data, qos=0, retain=False, properties=props)

    @property
    def connected(self) -> bool:
        """True between an accepted CONNACK and the loss of that connection."""
        return self._link_up

    def stats(self) -> dict[str, Any]:
        """connected, reconnects, sent, acked, failed (refused by the broker),
        dropped_offline (QoS 0 stats/snapshots while disconnected), in_flight, outbox."""
        with self._lock:
            count = dict(self._count)
            up = self._link_up
        return {
            "connected": up,
            "reconnects": max(0, count.pop("connects") - 1),
            **count,
            "in_flight": self._delivery.in_flight,
            "outbox": self._outbox.stats(),
        }

    def stop(self, timeout: float = 5.0) -> None:
        """Flush the outbox for up to ``timeout`` s, announce ``offline``, disconnect.

        The flush includes waiting for a connection still being made: a short-lived run
        (one file, a replay) often ends before its first CONNACK, and its events belong
        on the broker now, not at the next start. Undelivered events stay in the outbox
        for the next start.
        """
        if not self._started or self._stopping:
            return
        deadline = time.monotonic() + max(0.0, timeout)
        reserve = min(1.0, timeout / 4)  # for "offline" and the disconnect
        with self._acked_cond:
            self._stopping = True
            # _link_up flips without a notify (paho's thread): the short wait polls it.
            while not (self._link_up and self._idle) and self._outbox.depth() > 0:
                left = deadline - reserve - time.monotonic()
                if left <= 0:
                    break
                self._acked_cond.wait(min(left, 0.1))
        self._events.put(("stop",))
        if self._worker is not None:
            self._worker.join(max(0.1, deadline - time.monotonic()))
        if self._link_up:
            info = self._client.publish(self.topics.available, b"offline", qos=1, retain=True)
            try:
                info.wait_for_publish(max(0.05, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                logger.debug("could not publish offline before disconnecting")
        self._client.disconnect()
        # loop_stop() joins paho's thread without a timeout; do not let it hang us.
        stopper = threading.Thread(target=self._client.loop_stop, daemon=True)
        stopper.start()
        stopper.join(max(0.1, deadline - time.monotonic()))
        if stopper.is_alive():
            logger.warning("MQTT network thread did not stop within %.1f s", timeout)
        self._handle(self._drain_queue(), live=False)  # acks that came in after the worker
        left = self._outbox.depth()
        logger.info(
            "MQTT publisher stopped%s",
            f"; {left} event(s) stay in the outbox for the next start" if left else "",
        )

    # -- paho callbacks (network thread): record and hand over -----------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._link.refused(reason_code)
            return
        # Before paho re-sends what it still holds: the outbox has all of it, in order.
        dropped = [m.mid for m in client.drop_out_messages()]
        receive_max = getattr(properties, "ReceiveMaximum", None) if properties else None
        self._link.connected()
        with self._lock:
            self._link_up = True
        self._events.put(("connected", dropped, receive_max))

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            was_up, self._link_up = self._link_up, False
            self._idle = False  # rows in flight go again after the reconnect
            stopping = self._stopping
        if was_up and not stopping:
            logger.warning(
                "lost the connection to MQTT broker %s (%s); reconnecting, events stay in"
                " the outbox",
                self.config.broker,
                reason_code,
            )
        self._events.put(("disconnected",))

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._events.put(("puback", mid, reason_code.value, str(reason_code)))

    # -- worker ----------------------------------------------------------------

    def _drain_queue(self) -> list[tuple[Any, ...]]:
        batch = []
        while True:
            try:
                batch.append(self._events.get_nowait())
            except queue.Empty:
                return batch

    def _run(self) -> None:
        while True:
            try:
                batch = [self._events.get(timeout=_TICK_S)]
            except queue.Empty:
                batch = []
            # Take all that is waiting so a burst of PUBACKs is one outbox commit.
            batch += self._drain_queue()
            try:
                if not self._handle(batch, live=True):
                    return
            except OutboxError as exc:
                logger.error("MQTT publisher cannot use the outbox: %s", exc)
                time.sleep(_TICK_S)
            except Exception:
                logger.exception("MQTT publisher worker error (continuing)")
                time.sleep(_TICK_S)

    def _handle(self, batch: list[tuple[Any, ...]], live: bool) -> bool:
        """Apply queued facts; returns False once asked to stop.

        With ``live`` false (after shutdown) only acknowledgements are applied.
        """
        acks: list[int] = []
        keep_going = True
        for event in batch:
            kind = event[0]
            if kind == "puback":
                self._on_ack(event[1], event[2], event[3], acks)
            elif not live:
                continue
            elif kind == "connected":
                self._delivery.new_session(event[1], event[2])
                self._online = True
                with self._lock:
                    self._count["connects"] += 1
                self._announce()
            elif kind == "disconnected":
                self._online = False
            elif kind == "status" and self._online:
                self._publish_status(event[1], event[2])
            elif kind == "stop":
                keep_going = False
        if acks:
            self._outbox.ack_many(acks)
            with self._acked_cond:
                self._count["acked"] += len(acks)
                self._acked_cond.notify_all()
        if live and keep_going:
            self._pump()
        return keep_going

    def _on_ack(self, mid: int, value: int, name: str, acks: list[int]) -> None:
        # MQTT 5 reason codes >= 0x80 (quota, not authorised for the topic, ...) are
        # refusals: the row stays in the outbox and is retried later.
        row = self._delivery.acked(mid, ok=value < 0x80)
        if row is None:
            return
        if value < 0x80:
            acks.append(row)
            return
        with self._lock:
            self._count["failed"] += 1
        logger.warning(
            "broker %s refused outbox message %d (%s); keeping it, retrying in %.0f s",
            self.config.broker,
            row,
            name,
            PARK_S,
        )

    def _announce(self) -> None:
        self._client.publish(self.topics.available, b"online", qos=1, retain=True)
        for topic, data in self._discovery:
            self._client.publish(topic, data, qos=1, retain=True, properties=self._json_props)
        with self._lock:
            cameras = list(self._statuses)
        for camera in cameras:
            self._publish_status(self.topics.status(camera), camera, force=True)

    def _publish_status(self, topic: str, camera: str, force: bool = False) -> None:
        with self._lock:
            data = self._statuses[camera]
        # A change queued before a connect was already sent by _announce: not twice.
        if force or self._sent_status.get(camera) != data:
            self._client.publish(topic, data, qos=1, retain=True, properties=self._json_props)
            self._sent_status[camera] = data

    def _pump(self) -> None:
        """Hand the oldest unsent outbox rows to paho, up to the window."""
        if not self._online:
            return
        with self._lock:
            puts = self._puts
        rows = self._delivery.next_rows()
        for row in rows:
            info = self._client.publish(
                row.topic, row.payload, qos=row.qos, retain=row.retain, properties=self._json_props
            )
            # NO_CONN: paho keeps it; it is dropped and re-sent at the next connect.
            if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                self._delivery.sent(info.mid, row.id)
                with self._lock:
                    self._count["sent"] += 1
            else:
                logger.error(
                    "paho refused outbox message %d: %s", row.id, mqtt.error_string(info.rc)
                )
                self._delivery.park(row.id)
        with self._acked_cond:
            self._idle = not rows and self._delivery.in_flight == 0 and puts == self._puts
            self._acked_cond.notify_all()
