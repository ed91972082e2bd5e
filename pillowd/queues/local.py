"""The embedded queue: Azure Storage Queue semantics in one SQLite file."""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
import logging
import uuid
from datetime import datetime, timezone
from pathlib import Path

from .base import MessageGone, QueueMessage, QueueUnavailable

DEFAULT_TTL = 7 * 24 * 3600  # Azure's default time-to-live

log = logging.getLogger(__name__)


def _text(raw: bytes) -> str:
    """A TEXT value as str. Another writer (the sqlite3 shell, a C program) can leave
    bytes that are not UTF-8, which sqlite3 would refuse to read back: that row
    would then stop every receive. Its bad bytes become U+FFFD instead, and the
    message is decided like any other (played, or rejected with its reason)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        log.warning("the local queue holds text that is not UTF-8 (byte %d); "
                    "reading it with U+FFFD in place of the bad bytes", err.start)
        return raw.decode("utf-8", "replace")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queues (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    inserted_on REAL NOT NULL,
    expires_on REAL NOT NULL,
    visible_at REAL NOT NULL,
    dequeue_count INTEGER NOT NULL DEFAULT 0,
    pop_receipt TEXT
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, visible_at, inserted_on);
"""


class LocalStore:
    """One SQLite file holding any number of named queues, shared by processes."""

    def __init__(self, path: str | Path, clock=time.time):
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves so a receive
            # takes the write lock before reading, and two consumers never take the
            # same message.
            self._db = sqlite3.connect(self.path, timeout=10, isolation_level=None,
                                       check_same_thread=False)
            self._db.text_factory = _text
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL, not NORMAL: a put the sender was told about, or a message copied
            # to poison before the history marked it poisoned, must survive a power
            # cut as it would in Azure. Idle polls change nothing, so cost no fsync.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as err:
            raise QueueUnavailable(f"cannot open the local queue {self.path}: {err}") from None

    def queue(self, name: str) -> "LocalQueue":
        return LocalQueue(self, name)

    def _run(self, work):
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    result = work(self._db, self._clock())
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
                return result
            except sqlite3.OperationalError as err:
                raise QueueUnavailable(f"local queue {self.path}: {err}") from None

    def _read(self, work):
        """*work(db, now)* in a read-only statement: no write lock taken."""
        with self._lock:
            try:
                return work(self._db, self._clock())
            except sqlite3.OperationalError as err:
                raise QueueUnavailable(f"local queue {self.path}: {err}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


class LocalQueue:
    """A named queue in a LocalStore."""

    def __init__(self, store: LocalStore, name: str):
        self.store = store
        self.name = name

    def create(self) -> None:
        self.store._run(lambda db, now: db.execute(
            "INSERT OR IGNORE INTO queues VALUES (?)", (self.name,)))

    def put(self, body: str, ttl: float | None = None) -> str:
        message_id = str(uuid.uuid4())
        # As in Azure: -1 means the message never expires.
        lifetime = float("inf") if ttl == -1 else (ttl or DEFAULT_TTL)

        def work(db, now):
            db.execute("INSERT OR IGNORE INTO queues VALUES (?)", (self.name,))
            db.execute(
                "INSERT INTO messages (id, queue, body, inserted_on, expires_on, visible_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (message_id, self.name, body, now, now + lifetime, now))
        self.store._run(work)
        return message_id

    def receive(self, max_messages: int = 32, visibility_timeout: float = 30):
        # An idle pillow polls an empty queue forever: look first without taking
        # the write lock, which costs a Pi more than the look (and other processes
        # a wait).
        if not self.store._read(lambda db, now: db.execute(
                "SELECT 1 FROM messages WHERE queue = ? AND (visible_at <= ?"
                " OR expires_on <= ?) LIMIT 1", (self.name, now, now)).fetchone()):
            return []

        def work(db, now):
            db.execute("DELETE FROM messages WHERE queue = ? AND expires_on <= ?",
                       (self.name, now))
            rows = db.execute(
                "SELECT id, body, dequeue_count, inserted_on FROM messages"
                " WHERE queue = ? AND visible_at <= ? ORDER BY inserted_on, rowid LIMIT ?",
                (self.name, now, max_messages)).fetchall()
            taken = []
            for message_id, body, count, inserted in rows:
                receipt = secrets.token_hex(8)
                db.execute(
                    "UPDATE messages SET visible_at = ?, dequeue_count = ?, pop_receipt = ?"
                    " WHERE id = ?", (now + visibility_timeout, count + 1, receipt, message_id))
                taken.append(QueueMessage(message_id, body, count + 1, _utc(inserted), receipt))
            return taken
        return self.store._run(work)

    def _settle(self, message: QueueMessage, sql: str, args: tuple) -> None:
        def work(db, now):
            changed = db.execute(sql + " WHERE id = ? AND pop_receipt = ?",
                                 (*args, message.id, message.pop_receipt)).rowcount
            if not changed:
                raise MessageGone(f"message {message.id} is gone from {self.name!r} "
                                  "or was received again")
        self.store._run(work)

    def delete(self, message: QueueMessage) -> None:
        self._settle(message, "DELETE FROM messages", ())

    def release(self, message: QueueMessage, delay: float = 0) -> None:
        self._settle(message, "UPDATE messages SET visible_at = ?, pop_receipt = NULL",
                     (self.store._clock() + delay,))

    def peek(self, max_messages: int = 32) -> list[QueueMessage]:
        # Visible ones only, as Azure's Peek Messages: one being handled is not shown.
        def work(db, now):
            return db.execute(
                "SELECT id, body, dequeue_count, inserted_on FROM messages"
                " WHERE queue = ? AND expires_on > ? AND visible_at <= ?"
                " ORDER BY inserted_on, rowid LIMIT ?",
                (self.name, now, now, max_messages)).fetchall()
        return [QueueMessage(i, b, c, _utc(t)) for i, b, c, t in self.store._run(work)]

    def clear(self) -> None:
        self.store._run(lambda db, now: db.execute(
            "DELETE FROM messages WHERE queue = ?", (self.name,)))

    def close(self) -> None:
        pass  # the store owns the connection
