"""Every message's outcome, kept in state_dir: the history page and the dedupe memory."""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .errors import PillowError

OUTCOMES = ("applied", "superseded", "expired", "duplicate", "rejected")


class HistoryError(PillowError, OSError):
    """The history file cannot be written; the message must come back later."""


def iso_now() -> str:
    return iso(datetime.now(timezone.utc))


def iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


@dataclass(frozen=True)
class Outcome:
    """How one message ended."""

    id: str                 # the sender's id, else the queue message id
    outcome: str
    scene: str | None
    sender: str | None
    reason: str | None
    at: str
    queue: str = ""         # where it came from: a queue name, or "web"
    queue_message_id: str = ""
    poisoned: bool = False  # rejected and safely copied to the poison queue
    event: str | None = None  # a pillow's own event ("hug"), from the message
    reply: bool = False     # it answers one of this pillow's recent hugs
    text: str | None = None   # the message's words, so a superseded note can be read
    of: str | None = None     # a receipt's: the id of the hug it answers
    seq: int = 0
    # How the message was felt as it played: its hold, strength and colour (only
    # those it had; the snapshot's last_hug, kept across a restart).
    felt: dict | None = field(default=None, compare=False)

    def as_json(self) -> dict:
        item = {"id": self.id, "outcome": self.outcome, "scene": self.scene,
                "from": self.sender, "reason": self.reason, "at": self.at,
                "reply": self.reply}
        # Only when the message had them (SPEC "Web": history items carry `text`; a
        # receipt's carry "event": "receipt" and "of").
        if self.text is not None:
            item["text"] = self.text
        if self.event is not None:
            item["event"] = self.event
        if self.of is not None:
            item["of"] = self.of
        return item


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outcomes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    scene TEXT, sender TEXT, reason TEXT,
    at TEXT NOT NULL,
    queue TEXT NOT NULL,
    queue_message_id TEXT NOT NULL,
    poisoned INTEGER NOT NULL DEFAULT 0,
    event TEXT,
    reply INTEGER NOT NULL DEFAULT 0,
    text TEXT,
    of_id TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS outcomes_delivery ON outcomes (queue, queue_message_id)
    WHERE queue_message_id != '';
CREATE INDEX IF NOT EXISTS outcomes_applied ON outcomes (id) WHERE outcome = 'applied';
CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, at TEXT, pad BLOB);
CREATE TABLE IF NOT EXISTS held (
    queue TEXT NOT NULL,
    queue_message_id TEXT NOT NULL,
    pop_receipt TEXT NOT NULL,
    PRIMARY KEY (queue, queue_message_id)
);
"""

_COLUMNS = ("id, outcome, scene, sender, reason, at, queue, queue_message_id, poisoned,"
            " event, reply, text, of_id, felt, seq")
# Columns added since the first history files: (name, its SQL), added by ALTER TABLE
# to a file an older pillowd wrote, so an upgrade keeps every outcome.
_ADDED = (("event", "event TEXT"), ("reply", "reply INTEGER NOT NULL DEFAULT 0"),
          ("text", "text TEXT"), ("of_id", "of_id TEXT"), ("felt", "felt TEXT"))


def _row(row) -> Outcome:
    *head, poisoned, event, reply, text, of, felt, seq = row
    return Outcome(*head, poisoned=bool(poisoned), event=event, reply=bool(reply),
                   text=text, of=of, felt=_felt(felt), seq=seq)


def _felt(text: str | None) -> dict | None:
    # As record() wrote it (JSON); anything else is as if the message had none.
    try:
        felt = json.loads(text) if text else None
    except ValueError:
        return None
    return felt if isinstance(felt, dict) else None


class History:
    """An append-only log of outcomes in SQLite, pruned to the newest *keep*."""

    def __init__(self, path: str | Path, keep: int = 20_000):
        self.path = Path(path)
        self.keep = keep
        self._lock = threading.Lock()
        self._since_prune = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=10, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: an outcome must be on disk before its message is deleted.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            have = {row[1] for row in self._db.execute("PRAGMA table_info(outcomes)")}
            for name, sql in _ADDED:
                if name not in have:
                    self._db.execute(f"ALTER TABLE outcomes ADD COLUMN {sql}")
            self._db.commit()
        except (sqlite3.Error, OSError) as err:
            raise HistoryError(f"cannot open the history {self.path}: {err}") from None

    def record(self, outcome: Outcome) -> Outcome | None:
        """Keep *outcome*; returns None if that delivery already has one."""
        with self._lock:
            try:
                with self._db:
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO outcomes (id, outcome, scene, sender, reason,"
                        " at, queue, queue_message_id, poisoned, event, reply, text, of_id,"
                        " felt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (outcome.id, outcome.outcome, outcome.scene, outcome.sender,
                         outcome.reason, outcome.at, outcome.queue,
                         outcome.queue_message_id, int(outcome.poisoned),
                         outcome.event, int(outcome.reply), outcome.text, outcome.of,
                         json.dumps(outcome.felt) if outcome.felt else None))
                    if not cur.rowcount:
                        return None
                    seq = cur.lastrowid
                    self._since_prune += 1
                    if self._since_prune >= 500:
                        self._since_prune = 0
                        self._db.execute("DELETE FROM outcomes WHERE seq <= ?",
                                         (seq - self.keep,))
            except sqlite3.Error as err:
                raise HistoryError(f"cannot write the history {self.path}: {err}") from None
        return Outcome(**{**outcome.__dict__, "seq": seq})

    def delivery(self, queue: str, queue_message_id: str) -> Outcome | None:
        """The outcome already recorded for this queue message, if any."""
        return self._one("SELECT %s FROM outcomes WHERE queue = ? AND queue_message_id = ?"
                         % _COLUMNS, (queue, queue_message_id))

    def was_applied(self, message_id: str) -> bool:
        return self._one("SELECT %s FROM outcomes WHERE outcome = 'applied' AND id = ?"
                         " LIMIT 1" % _COLUMNS, (message_id,)) is not None

    def last_hug(self) -> Outcome | None:
        """The newest hug event that played here, for the snapshot after a restart."""
        return self._one("SELECT %s FROM outcomes WHERE outcome = 'applied'"
                         " AND event = 'hug' ORDER BY seq DESC LIMIT 1" % _COLUMNS, ())

    def mark_poisoned(self, seq: int) -> None:
        self._write("UPDATE outcomes SET poisoned = 1 WHERE seq = ?", [(seq,)])

    # -- messages taken off a queue and not settled yet ------------------------

    def hold(self, queue: str, messages: list[tuple[str, str]]) -> None:
        """Remember (queue message id, pop receipt) pairs taken and being handled."""
        self._write("INSERT OR REPLACE INTO held (queue, queue_message_id, pop_receipt)"
                    " VALUES (?, ?, ?)", [(queue, m, r) for m, r in messages if r])

    def unhold(self, queue: str, message_ids: list[str]) -> None:
        self._write("DELETE FROM held WHERE queue = ? AND queue_message_id = ?",
                    [(queue, m) for m in message_ids])

    def held(self, queue: str) -> list[tuple[str, str]]:
        """What a run that ended without settling had taken off *queue*."""
        with self._lock:
            try:
                return self._db.execute("SELECT queue_message_id, pop_receipt FROM held"
                                        " WHERE queue = ?", (queue,)).fetchall()
            except sqlite3.Error as err:
                raise HistoryError(f"cannot read the history {self.path}: {err}") from None

    def probe(self) -> None:
        """A committed write about the size of an outcome's; HistoryError while the
        file cannot be written (a full disk, a lock), so the queue loop can wait for
        the history to work before it takes messages again."""
        self._write("INSERT OR REPLACE INTO probe (id, at, pad) VALUES (1, ?, randomblob(512))",
                    [(iso_now(),)])

    def _write(self, sql: str, rows: list) -> None:
        if not rows:
            return
        with self._lock:
            try:
                with self._db:
                    self._db.executemany(sql, rows)
            except sqlite3.Error as err:
                raise HistoryError(f"cannot write the history {self.path}: {err}") from None

    def page(self, limit: int = 50, before: int | None = None) -> list[Outcome]:
        """The newest outcomes first, older than the *before* sequence number."""
        with self._lock:
            rows = self._db.execute(
                "SELECT %s FROM outcomes WHERE seq < ? ORDER BY seq DESC LIMIT ?" % _COLUMNS,
                (before if before is not None else 2 ** 62, limit)).fetchall()
        return [_row(r) for r in rows]

    def receipts(self) -> int:
        """Partners' receipts kept as applied: no message played for them."""
        with self._lock:
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM outcomes WHERE outcome = 'applied'"
                " AND event = 'receipt'").fetchone()
        return count

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT outcome, COUNT(*) FROM outcomes GROUP BY outcome").fetchall()
        counts = dict.fromkeys(OUTCOMES, 0)
        counts.update(rows)
        return counts

    def _one(self, sql, args):
        with self._lock:
            try:
                row = self._db.execute(sql, args).fetchone()
            except sqlite3.Error as err:
                raise HistoryError(f"cannot read the history {self.path}: {err}") from None
        return _row(row) if row else None

    def close(self) -> None:
        with self._lock:
            self._db.close()
