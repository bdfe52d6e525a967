"""Durable outbox: an event is committed to SQLite before anyone tries to send it.

The MQTT publisher puts every event here first and deletes it only when the
broker has acknowledged it, so events survive broker outages, network loss and
the agent being killed. Rows are sent oldest first.

Storage choices:

* WAL journal: a commit appends to the ``-wal`` file instead of rewriting the
  database, and readers never block the writer.
* ``synchronous=FULL`` for ``put`` (default): the WAL is fsynced at every
  commit, so an event that ``put`` returned for also survives a power cut, not
  only the process being killed. Gates lose power; events are rare (seconds
  apart), and an fsync costs milliseconds. ``ack`` commits with ``NORMAL``
  (no fsync of its own): losing an ack in a power cut only sends that event
  again, and the next ``put`` fsyncs it anyway.
* ``AUTOINCREMENT`` ids: an id is never reused, so a late acknowledgement for an
  old message can never delete a newer row that happened to get its id.

Bounds: at most ``max_messages`` rows; when full the *oldest* rows are dropped,
because at a gate the newest vehicle is the one somebody is waiting for, and an
event that has waited through the whole backlog is the least likely still to
matter. Rows older than ``max_age_s`` are dropped too. Both are counted and
logged (rate-limited).

Failure handling:

* Corrupt database file: moved aside to ``<name>.corrupt-<UTC time>`` (with its
  ``-wal``/``-shm``), logged as an error naming both paths, and a fresh one is
  created, so a damaged SD card sector does not stop the agent.
* Cannot open or create it (read-only directory or mount, disk full, missing
  permissions): the constructor raises :class:`OutboxUnavailableError` naming
  the path and what to fix.
* Writes failing later (disk filled up, I/O errors): ``put`` keeps events in a
  bounded in-memory queue, logs an error, reports ``degraded`` in ``stats()``
  and retries the disk every few seconds; once it works again the queued
  events are moved into the database in order.
"""

from __future__ import annotations

import collections
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agent.publish.outbox_db import (
    OutboxError,
    OutboxUnavailableError,
    advice,
    open_database,
)

__all__ = ["Outbox", "OutboxError", "OutboxRow", "OutboxUnavailableError"]

logger = logging.getLogger(__name__)

# Ids of events held in memory while the disk is unusable; far above anything
# SQLite hands out, so they sort after every stored row and never collide.
_MEMORY_ID_BASE = 1 << 62
# How often a degraded outbox tries the disk again.
RETRY_DISK_S = 10.0
# At most one log line per kind of drop per this many seconds.
DROP_LOG_INTERVAL_S = 60.0
# Reads expire old rows at most this often (puts always do, in their commit).
_EXPIRE_INTERVAL_S = 10.0


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One queued message."""

    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    created: float  # wall-clock seconds since the epoch (survives restarts)


class _DropReport:
    """Counts dropped messages and logs them at most once per interval."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.total = 0
        self.unreported = 0
        self.last_log = -float("inf")

    def add(self, count: int, now: float) -> None:
        if count <= 0:
            return
        self.total += count
        self.unreported += count
        if now - self.last_log >= DROP_LOG_INTERVAL_S:
            self.flush(now)

    def flush(self, now: float) -> None:
        if self.unreported:
            logger.warning(
                "outbox dropped %d message(s) %s (%d in total since start)",
                self.unreported,
                self.what,
                self.total,
            )
            self.unreported = 0
            self.last_log = now


class Outbox:
    """SQLite-backed FIFO of messages waiting for a broker acknowledgement.

    Thread-safe: one connection, used under a lock.
    """

    def __init__(
        self,
        path: str | Path,
        max_messages: int = 100_000,
        max_age_s: float = 7 * 86400,
        *,
        memory_limit: int = 10_000,
        synchronous: Literal["NORMAL", "FULL"] = "FULL",
    ) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        if max_age_s <= 0:
            raise ValueError("max_age_s must be positive")
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError("synchronous must be 'NORMAL' or 'FULL'")
        self.path = Path(path)
        self.max_messages = max_messages
        self.max_age_s = float(max_age_s)
        self.memory_limit = max(1, memory_limit)
        self._sync = synchronous
        self._lock = threading.RLock()
        self._closed = False
        # Fallback while the disk refuses writes; see put().
        self._memory: collections.OrderedDict[int, OutboxRow] = collections.OrderedDict()
        self._next_memory_id = _MEMORY_ID_BASE
        self._moved: dict[int, int] = {}  # memory id -> database id after recovery
        self._degraded = False
        self._retry_at = 0.0
        self._last_expire = 0.0
        self._full = _DropReport(f"because it was full (max_messages={max_messages}, oldest first)")
        self._aged = _DropReport(f"older than max_age_s={self.max_age_s:g}")
        self._conn = open_database(self.path, synchronous)
        self._depth = int(self._conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        if self._depth:
            logger.info("outbox %s holds %d message(s) from before", self.path, self._depth)

    # -- writing ---------------------------------------------------------------

    def put(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        """Queue a message; it is committed (fsynced with FULL) before this returns.

        If the disk refuses the write, the message is kept in memory instead
        (``stats()["degraded"]``) and is lost only if the process dies.
        """
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, not {qos!r}")
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
        row = (time.time(), topic, bytes(payload), qos, int(bool(retain)))
        with self._lock:
            self._check_open()
            now = row[0]
            if self._degraded and not self._try_restore(now):
                return self._put_memory(*row)
            try:
                return self._insert([row], now)[0]
            except sqlite3.Error as exc:
                self._degrade(exc, now)
                return self._put_memory(*row)

    def _insert(self, rows: list[tuple[float, str, bytes, int, int]], now: float) -> list[int]:
        """Insert rows in one transaction that also expires and trims. Caller holds the lock."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            expired = conn.execute(
                "DELETE FROM outbox WHERE created < ?", (now - self.max_age_s,)
            ).rowcount
            ids = [
                int(
                    conn.execute(
                        "INSERT INTO outbox (created, topic, payload, qos, retain)"
                        " VALUES (?, ?, ?, ?, ?)",
                        r,
                    ).lastrowid
                    or 0
                )
                for r in rows
            ]
            depth = self._depth - expired + len(rows)
            dropped = 0
            if depth > self.max_messages:
                dropped = conn.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)",
                    (depth - self.max_messages,),
                ).rowcount
            conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._depth = depth - dropped
        self._last_expire = now
        self._aged.add(expired, now)
        self._full.add(dropped, now)
        return ids

    def _rollback(self) -> None:
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # no transaction left to roll back (SQLite may have ended it itself)

    def _put_memory(self, created: float, topic: str, payload: bytes, qos: int, retain: int) -> int:
        if len(self._memory) >= self.memory_limit:
            self._memory.popitem(last=False)
            self._full.add(1, created)
        row_id = self._next_memory_id
        self._next_memory_id += 1
        self._memory[row_id] = OutboxRow(row_id, topic, payload, qos, bool(retain), created)
        return row_id

    def _degrade(self, exc: sqlite3.Error, now: float) -> None:
        self._retry_at = now + RETRY_DISK_S
        if not self._degraded:
            self._degraded = True
            logger.error(
                "cannot write to the outbox database %s (%s); keeping new events in memory"
                " (at most %d) until it is writable again: they are lost if the agent stops"
                " before then; %s",
                self.path,
                exc,
                self.memory_limit,
                advice(exc, self.path),
            )

    def _try_restore(self, now: float) -> bool:
        """Move in-memory events back into the database if it accepts writes again."""
        if now < self._retry_at:
            return False
        rows = list(self._memory.values())
        try:
            ids = self._insert(
                [(r.created, r.topic, r.payload, r.qos, int(r.retain)) for r in rows], now
            )
        except sqlite3.Error as exc:
            self._retry_at = now + RETRY_DISK_S
            logger.debug("outbox database %s still not writable: %s", self.path, exc)
            return False
        self._moved.update(zip((r.id for r in rows), ids, strict=True))
        self._memory.clear()
        self._degraded = False
        logger.warning(
            "outbox database %s is writable again; moved %d event(s) from memory into it",
            self.path,
            len(rows),
        )
        return True

    def ack(self, row_id: int) -> None:
        """Delete a delivered message. Unknown ids are ignored."""
        self.ack_many([row_id])

    def ack_many(self, row_ids: Iterable[int]) -> None:
        """Delete several delivered messages in one commit."""
        with self._lock:
            if self._closed:
                return
            db_ids = []
            for row_id in row_ids:
                if self._memory.pop(row_id, None) is not None:
                    continue
                real = self._moved.pop(row_id, row_id)
                if real < _MEMORY_ID_BASE:
                    db_ids.append((real,))
            if not db_ids:
                return
            conn = self._conn
            try:
                if self._sync != "NORMAL":
                    # A lost ack only means a duplicate send; skip the fsync.
                    conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("BEGIN IMMEDIATE")
                try:
                    deleted = conn.executemany("DELETE FROM outbox WHERE id = ?", db_ids).rowcount
                    conn.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
                self._depth -= max(0, deleted)
            except sqlite3.Error as exc:
                logger.warning(
                    "could not remove %d delivered message(s) from the outbox %s (%s);"
                    " they will be sent again",
                    len(db_ids),
                    self.path,
                    exc,
                )
            finally:
                if self._sync != "NORMAL":
                    try:
                        conn.execute(f"PRAGMA synchronous={self._sync}")
                    except sqlite3.Error:
                        logger.debug("could not restore synchronous=%s", self._sync)

    # -- reading ---------------------------------------------------------------

    def pending(self, limit: int = 100) -> list[OutboxRow]:
        """Up to ``limit`` queued messages, oldest first (stored ones, then in-memory ones)."""
        if limit <= 0:
            return []
        with self._lock:
            self._check_open()
            now = time.time()
            self._maybe_expire(now)
            rows: list[OutboxRow] = []
            try:
                cur = self._conn.execute(
                    "SELECT id, topic, payload, qos, retain, created FROM outbox"
                    " ORDER BY id LIMIT ?",
                    (limit,),
                )
                rows = [OutboxRow(i, t, bytes(p), q, bool(r), c) for i, t, p, q, r, c in cur]
            except sqlite3.Error as exc:
                logger.error("cannot read the outbox database %s: %s", self.path, exc)
            for row in self._memory.values():
                if len(rows) >= limit:
                    break
                rows.append(row)
            return rows

    def _maybe_expire(self, now: float) -> None:
        cutoff = now - self.max_age_s
        stale = [k for k, r in self._memory.items() if r.created < cutoff]
        for k in stale:
            del self._memory[k]
        self._aged.add(len(stale), now)
        if now - self._last_expire < _EXPIRE_INTERVAL_S:
            return
        self._last_expire = now
        try:
            expired = self._conn.execute("DELETE FROM outbox WHERE created < ?", (cutoff,)).rowcount
        except sqlite3.Error as exc:
            logger.debug("outbox expiry failed: %s", exc)
            return
        self._depth -= max(0, expired)
        self._aged.add(expired, now)

    def depth(self) -> int:
        """Number of queued messages (on disk and in memory)."""
        with self._lock:
            return self._depth + len(self._memory)

    def stats(self) -> dict[str, Any]:
        """depth, dropped_full, dropped_age, oldest_age_s, degraded, memory_depth."""
        with self._lock:
            now = time.time()
            oldest: float | None = None
            if not self._closed:
                self._maybe_expire(now)
                try:
                    oldest = self._conn.execute("SELECT MIN(created) FROM outbox").fetchone()[0]
                except sqlite3.Error:
                    oldest = None
            if oldest is None and self._memory:
                oldest = next(iter(self._memory.values())).created
            return {
                "depth": self._depth + len(self._memory),
                "dropped_full": self._full.total,
                "dropped_age": self._aged.total,
                "oldest_age_s": round(max(0.0, now - oldest), 3) if oldest is not None else 0.0,
                "degraded": self._degraded,
                "memory_depth": len(self._memory),
            }

    # -- lifecycle -------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise OutboxError(f"outbox {self.path} is closed")

    def close(self) -> None:
        """Flush drop reports and close the database. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            now = time.time()
            self._full.flush(now)
            self._aged.flush(now)
            if self._memory:
                logger.error(
                    "outbox %s closed with %d event(s) only in memory: they are lost",
                    self.path,
                    len(self._memory),
                )
            self._conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Outbox({str(self.path)!r}, max_messages={self.max_messages})"
