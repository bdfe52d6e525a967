"""Opening the outbox's SQLite file: healthy, moved aside if corrupt, or a clear error.

Kept apart from the queue logic in :mod:`agent.publish.outbox`; this module
only answers "give me a usable connection at this path, or tell the operator
exactly what is wrong with it".
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# AUTOINCREMENT: an id is never reused, so a late acknowledgement for an old
# message can never delete a newer row that happened to get the same id.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_created ON outbox(created);
"""


class OutboxError(Exception):
    """The outbox cannot do what was asked."""


class OutboxUnavailableError(OutboxError):
    """The outbox database cannot be opened or created where it was asked to live."""


class _CorruptError(Exception):
    """The file is not a usable SQLite database."""


def _errorname(exc: BaseException) -> str:
    return str(getattr(exc, "sqlite_errorname", "") or "")


def _is_corrupt(exc: BaseException) -> bool:
    if isinstance(exc, _CorruptError):
        return True
    if _errorname(exc).startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return True
    text = str(exc).lower()
    return "file is not a database" in text or "malformed" in text


def advice(exc: BaseException, path: Path) -> str:
    """What an operator should do about ``exc`` raised for the database at ``path``."""
    name = _errorname(exc)
    text = str(exc).lower()
    if name == "SQLITE_FULL" or "full" in text or getattr(exc, "errno", None) == 28:
        return f"the file system holding {path.parent} is full; free some space"
    if name.startswith("SQLITE_IOERR") or "i/o" in text:
        return "the storage device reported an I/O error; check it (dmesg)"
    # READONLY, CANTOPEN, PERM, EACCES, EROFS and ENOTDIR all land here.
    return (
        f"make {path.parent} a writable directory for the agent's user (check its"
        " permissions, a read-only mount, or systemd StateDirectory=/ReadWritePaths=),"
        " or point the state directory somewhere writable"
    )


def _unavailable(exc: BaseException, path: Path, what: str = "") -> OutboxUnavailableError:
    lead = what or f"cannot open the outbox database {path}"
    return OutboxUnavailableError(f"{lead}: {exc}; {advice(exc, path)}")


def open_database(path: Path, synchronous: str) -> sqlite3.Connection:
    """A connection to a healthy outbox database at ``path`` (created if missing).

    A corrupt file is moved aside and replaced by an empty database; anything
    else that stops it raises OutboxUnavailableError.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unavailable(exc, path, f"cannot create directory {path.parent}") from exc
    for attempt in (1, 2):
        try:
            # isolation_level=None: no implicit transactions; BEGIN/COMMIT are explicit.
            # check_same_thread=False: the Outbox serialises use with its own lock.
            conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise _unavailable(exc, path) from exc
        try:
            _prepare(conn, path, synchronous)
            return conn
        except (_CorruptError, sqlite3.DatabaseError) as exc:
            if attempt == 1 and _is_corrupt(exc):
                # Move the files while the connection is still open: closing the last
                # connection deletes the -wal, which may hold the newest events.
                try:
                    _move_aside(path, exc)
                finally:
                    conn.close()
                continue
            conn.close()
            raise _unavailable(exc, path) from exc
        except BaseException:
            conn.close()
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def _prepare(conn: sqlite3.Connection, path: Path, synchronous: str) -> None:
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        # e.g. a file system without shared-memory support: still safe, slower.
        logger.warning("outbox %s: journal_mode is %s, not WAL", path, mode)
    conn.execute(f"PRAGMA synchronous={synchronous}")
    # Cheap at outbox sizes (milliseconds for 100k rows) and catches a damaged
    # file at start-up instead of at the first put.
    check = conn.execute("PRAGMA quick_check").fetchone()[0]
    if check != "ok":
        raise _CorruptError(f"quick_check failed: {check}")
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise OutboxUnavailableError(
            f"outbox {path} was written by a newer vin-agent (schema {version});"
            " upgrade the agent or move the file away"
        )
    conn.executescript(_SCHEMA)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _move_aside(path: Path, exc: BaseException) -> None:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    try:
        path.rename(aside)
        # The journal files belong to the broken database; the new one must not
        # replay them.
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                side.rename(aside.with_name(aside.name.replace(".corrupt-", f"{suffix}.corrupt-")))
    except OSError as err:
        raise _unavailable(
            err, path, f"outbox database {path} is corrupt ({exc}) and cannot be moved aside"
        ) from err
    logger.error(
        "outbox database %s is corrupt (%s); moved it aside to %s and started an empty one."
        " Events queued in it were NOT sent; try `sqlite3 %s .recover` to salvage them",
        path,
        exc,
        aside,
        aside,
    )
