"""Bookkeeping between the outbox and paho: which rows are in flight under which
message id, which the broker refused, and which to send next.

Used by the MQTT publisher's worker thread only, so it needs no lock.
"""

from __future__ import annotations

import time

from agent.publish.outbox import Outbox, OutboxRow

# Events handed to paho and not yet acknowledged; small enough to stay under the
# broker's receive maximum (mosquitto: 20) together with status messages.
WINDOW = 16
# A message the broker refused (PUBACK reason >= 0x80) is tried again after this.
PARK_S = 30.0


class Delivery:
    """At most ``window`` outbox rows in flight, oldest first."""

    def __init__(self, outbox: Outbox, window: int = WINDOW) -> None:
        self._outbox = outbox
        self._max_window = window
        self.window = window
        self._held: dict[int, int] = {}  # paho mid -> outbox row id
        self._held_rows: set[int] = set()
        self._parked: dict[int, float] = {}  # row id -> monotonic time to retry

    @property
    def in_flight(self) -> int:
        """Rows handed to paho and not yet acknowledged."""
        return len(self._held)

    def new_session(self, dropped_mids: list[int], receive_max: int | None) -> None:
        """A connection was accepted; paho dropped ``dropped_mids`` instead of resending."""
        for mid in dropped_mids:
            row = self._held.pop(mid, None)
            if row is not None:
                self._held_rows.discard(row)
        self._parked.clear()  # a new session: give refused messages another go
        if receive_max:
            # Leave room for "online" and camera statuses, which are QoS 1 too.
            self.window = max(1, min(self._max_window, receive_max - 4))
        else:
            self.window = self._max_window

    def sent(self, mid: int, row_id: int) -> None:
        """paho accepted ``row_id`` as message ``mid``."""
        self._held[mid] = row_id
        self._held_rows.add(row_id)

    def acked(self, mid: int, ok: bool) -> int | None:
        """PUBACK for ``mid``; returns its row id if it is one of ours.

        A refused row (``ok`` false) is parked for PARK_S and stays in the outbox.
        """
        row = self._held.pop(mid, None)
        if row is None:
            return None  # "online", statuses, QoS 0 messages, or dropped at a reconnect
        self._held_rows.discard(row)
        if not ok:
            self.park(row)
        return row

    def park(self, row_id: int) -> None:
        """Do not send ``row_id`` again for PARK_S seconds."""
        self._parked[row_id] = time.monotonic() + PARK_S

    def next_rows(self) -> list[OutboxRow]:
        """The oldest rows that are neither in flight nor parked, up to the free window."""
        room = self.window - len(self._held)
        if room <= 0:
            return []
        now = time.monotonic()
        self._parked = {row: t for row, t in self._parked.items() if t > now}
        skip = self._held_rows | self._parked.keys()
        rows = [r for r in self._outbox.pending(room + len(skip)) if r.id not in skip]
        return rows[:room]
