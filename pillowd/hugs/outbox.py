"""The outbox: hug events and receipts kept in SQLite until each partner's queue took them."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ..errors import PillowError
from ..history import iso
from ..queues import QueueAuthError, QueueError, QueueUnavailable

log = logging.getLogger(__name__)


class HugNotKept(PillowError, OSError):
    """A hug event could not be written to the outbox: it will not be sent."""


class Outbox:
    """Hug events and receipts for the partners' queues, kept in SQLite until each
    queue took them. It only delivers: what they mean is the Conversation's.

    An event waits once per queue: it is forgotten for a queue only after that
    queue accepted it, so none is lost while a partner's queue is offline or the
    pillow restarts, and a partner that is away never holds back another (each
    queue has its own back-off). A crash between a put and its record may send one
    twice, which is why every event carries an ``id``. An event older than its
    ``ttl`` is dropped, not sent: the partner would only record it as expired. Its
    age is counted on the clock that never steps (since boot, see EventAges), so a
    wall clock set hours forward by NTP after a boot on a stale time drops nothing
    this pillow made: the event goes with its ``sent_at`` put right (and signed
    again by *sign*). The same ``id`` is kept once: a receipt made again after a
    crash does not wait twice.

    *partners* names whose each queue is ({queue name: pillow name}), for the
    snapshot's ``"outbox"`` section, which *on_status* hears of on every change.
    """

    def __init__(self, path: str | Path, queues, *, partners: dict[str, str] | None = None,
                 on_status: Callable[[dict], None] = lambda status: None,
                 retry_min: float = 0.5, retry_max: float = 30.0,
                 clock=time.monotonic, wall=time.time,
                 sign: Callable[[dict], dict] = lambda event: event,
                 since_boot: Callable[[], tuple[str, float]] | None = None):
        if not isinstance(queues, (list, tuple)):
            queues = [queues]
        self.queues = {getattr(q, "name", f"queue{i}"): q for i, q in enumerate(queues)}
        self.partners = {name: (partners or {}).get(name, name) for name in self.queues}
        self.retry_min, self.retry_max = retry_min, retry_max
        self._clock, self._wall = clock, wall
        self._sign = sign
        self._ages = EventAges(wall, since_boot or boot_clock)
        self._on_status = on_status
        self._reporting = threading.Lock()
        self._lock = threading.Lock()
        self._wake = threading.Event()     # an event was added, or stop()
        self._stopped = threading.Event()
        self._listeners: list[Callable[[dict, str], None]] = []
        self._dropped_listeners: list[Callable[[dict, str], None]] = []
        self.away: dict[str, str] = {}     # queue name -> why it refuses, while it does
        self.sent = 0
        self.dropped = 0                   # events older than their ttl, not sent
        # Rows kept for a queue no longer configured (a partner taken out) wait, in
        # case it comes back, but are nobody's pending.
        self._marks = ", ".join("?" * len(self.queues))
        self.path = Path(path)
        self._db = sqlite3.connect(str(path), timeout=10, check_same_thread=False,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_OUTBOX_SCHEMA)
        if {r[1] for r in self._db.execute("PRAGMA table_info(events)")} == {"seq", "body"}:
            # An older outbox held events for its one queue: they go to every queue now.
            self._db.execute("ALTER TABLE events ADD COLUMN id TEXT NOT NULL DEFAULT ''")
            self._db.executemany("INSERT OR IGNORE INTO waiting (seq, queue) SELECT seq, ?"
                                 " FROM events", [(name,) for name in self.queues])
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(events)")}
        for name, sql in (("boot", "boot TEXT NOT NULL DEFAULT ''"), ("kept", "kept REAL")):
            if name not in columns:  # an outbox from before the clock-step fix
                self._db.execute(f"ALTER TABLE events ADD COLUMN {sql}")

    @property
    def online(self) -> bool | None:
        """False while any queue refuses; None before the first try."""
        if self.away:
            return False
        return True if self.sent else None

    def status(self) -> dict:
        """The snapshot's ``"outbox"`` section: events not yet taken by every queue,
        and why each queue that refuses does."""
        with self._lock:
            pending = self._db.execute(
                "SELECT COUNT(DISTINCT seq) FROM waiting WHERE queue IN"
                f" ({self._marks})", list(self.queues)).fetchone()[0]
        return {"pending": pending, "away": dict(self.away), "sent": self.sent,
                "dropped": self.dropped, "partners": dict(self.partners)}

    def on_sent(self, listener: Callable[[dict, str], None]) -> None:
        """Call *listener(event, queue name)* each time a queue has taken an event."""
        self._listeners.append(listener)

    def on_dropped(self, listener: Callable[[dict, str], None]) -> None:
        """Call *listener(event, queue name)* when an event too old to send is dropped."""
        self._dropped_listeners.append(listener)

    def add(self, event: dict, to: list[str] | None = None) -> None:
        """Keep *event* for every queue (or the queues named in *to*)."""
        body = json.dumps(event, separators=(",", ":"))
        targets = [name for name in self.queues if to is None or name in to]
        if not targets:
            return
        ident = str(event.get("id", ""))
        boot, kept = self._ages.now()
        with self._lock, self._db:
            self._db.execute("BEGIN")
            if ident and self._db.execute("SELECT 1 FROM events WHERE id = ? LIMIT 1",
                                          (ident,)).fetchone():
                self._db.execute("COMMIT")  # already waiting (made again after a crash)
                return
            seq = self._db.execute(
                "INSERT INTO events (id, body, boot, kept) VALUES (?, ?, ?, ?)",
                (ident, body, boot, kept)).lastrowid
            self._db.executemany("INSERT INTO waiting (seq, queue) VALUES (?, ?)",
                                 [(seq, name) for name in targets])
            self._db.execute("COMMIT")
        self._wake.set()
        self._report()

    def pending(self, queue: str | None = None) -> list[dict]:
        """Events some queue (or *queue*) has not taken yet, oldest first."""
        where, args = (("WHERE w.queue = ?", [queue]) if queue else
                       (f"WHERE w.queue IN ({self._marks})", list(self.queues)))
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT e.seq, e.body FROM events e JOIN waiting w"
                f" ON w.seq = e.seq {where} ORDER BY e.seq", args).fetchall()
        return [json.loads(body) for _, body in rows]

    def flush(self, queue: str | None = None) -> bool:
        """Send what waits for *queue* (else every queue), oldest first; False if a
        queue refused for now."""
        if queue is None:
            return all([self.flush(name) for name in self.queues])
        target = self.queues[queue]
        while True:
            with self._lock:
                row = self._db.execute(
                    "SELECT e.seq, e.body, e.boot, e.kept FROM events e JOIN waiting w"
                    " ON w.seq = e.seq WHERE w.queue = ? ORDER BY e.seq LIMIT 1",
                    (queue,)).fetchone()
            if row is None:
                return True
            seq, body, boot, kept = row
            event = json.loads(body)
            age = self._ages.age(event, boot, kept)
            restamped = self._ages.restamped(event, age)
            if restamped is not None:  # the wall clock was stepped since it was made
                event = self._sign(restamped)
                body = json.dumps(event, separators=(",", ":"))
                with self._lock, self._db:
                    self._db.execute("UPDATE events SET body = ? WHERE seq = ?", (body, seq))
                log.info("hug event %s: sent_at put right to %s (the clock was stepped "
                         "since it was made)", event.get("id"), event["sent_at"])
            if age is not None and age > event["ttl"]:
                self._forget(seq, queue)
                self.dropped += 1
                log.warning("hug event %s to %r dropped, not sent: %.0f s old, its ttl "
                            "is %s s", event.get("id"), queue, age, event["ttl"])
                self._tell(self._dropped_listeners, event, queue)
                self._report()
                continue
            try:
                target.put(body)
            except QueueError as err:
                why = _why(err)
                if self.away.get(queue) != why:
                    log.warning("partner queue %r unavailable, keeping %d event(s): %s",
                                queue, len(self.pending(queue)), err)
                    self.away[queue] = why
                    self._report()
                return False
            self._forget(seq, queue)
            back = self.away.pop(queue, None) is not None
            if back:
                log.info("partner queue %r back", queue)
            self.sent += 1
            self._tell(self._listeners, event, queue)
            self._report()

    def _forget(self, seq: int, queue: str) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM waiting WHERE seq = ? AND queue = ?", (seq, queue))
            self._db.execute("DELETE FROM events WHERE seq = ? AND NOT EXISTS"
                             " (SELECT 1 FROM waiting WHERE seq = ?)", (seq, seq))
            self._db.execute("COMMIT")

    @staticmethod
    def _tell(listeners, event: dict, queue: str) -> None:
        for listener in listeners:
            try:
                listener(event, queue)
            except Exception:  # a listener's bug must not resend the event
                log.exception("outbox listener failed")

    def _report(self) -> None:
        # One at a time: an older status never reaches the snapshot after a newer one.
        with self._reporting:
            try:
                self._on_status(self.status())
            except Exception:  # the snapshot's trouble is not the delivery's
                log.exception("outbox status listener failed")

    def run(self) -> None:
        """Send events as they come; a queue that refuses is retried with its own
        back-off, while the others go on at once."""
        delay = dict.fromkeys(self.queues, self.retry_min)
        retry_at = dict.fromkeys(self.queues, 0.0)   # monotonic; 0: try at once
        while not self._stopped.is_set():
            self._wake.clear()
            for name in self.queues:
                if self._stopped.is_set() or retry_at[name] > self._clock():
                    continue  # an add during a back-off waits for its end (no spin)
                try:
                    ok = self.flush(name)
                except Exception:  # a bug must not stop the outbox for good
                    log.exception("unexpected error in the outbox")
                    ok = False
                if ok:
                    delay[name], retry_at[name] = self.retry_min, 0.0
                else:
                    retry_at[name] = self._clock() + delay[name]
                    delay[name] = min(delay[name] * 2, self.retry_max)
            backing_off = [t for t in retry_at.values() if t]
            # The next add(), stop(), or the end of the first back-off.
            self._wake.wait(max(0.0, min(backing_off) - self._clock())
                            if backing_off else None)

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    def close(self) -> None:
        with self._lock:
            self._db.close()


def boot_clock() -> tuple[str, float]:
    """(this boot's id, seconds since boot): a clock NTP never steps. The id tells
    whether a reading was taken in this boot (the count starts again at each)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    clock = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)
    return boot, time.clock_gettime(clock)


# Seconds the wall clock may disagree with the boot clock before an event's sent_at
# is put right: past this, the wall clock was stepped (NTP after a stale boot).
CLOCK_STEP = 2.0


class EventAges:
    """How old an event this pillow made is, by a clock that is never stepped.

    A Pi without a real-time clock boots on fake-hwclock's last saved time (hours
    or days old) and runs on it until NTP answers, then steps. A hug pressed before
    the step carries a ``sent_at`` that is that much too old: by the wall clock it
    would be dropped here, or expire on the partner. The outbox keeps, beside each
    event, the boot's id and the seconds since boot when it was made: within the
    same boot, that is its true age, and its ``sent_at`` is put right from it
    before it goes. An event from an earlier boot (a restart with hugs waiting) is
    judged by the wall clock, as nothing better is known.
    """

    def __init__(self, wall: Callable[[], float], since_boot: Callable[[], tuple[str, float]]):
        self._wall = wall
        self._since_boot = since_boot

    def now(self) -> tuple[str, float]:
        return self._since_boot()

    def age(self, event: dict, boot: str | None, kept: float | None) -> float | None:
        """Seconds since *event* was made; None when it has no sent_at and ttl."""
        if not isinstance(event.get("ttl"), (int, float)) or not event.get("sent_at"):
            return None
        here, since = self._since_boot()
        if boot and kept is not None and boot == here and since >= kept:
            return since - kept
        sent = _epoch(event["sent_at"])
        return None if sent is None else self._wall() - sent

    def restamped(self, event: dict, age: float | None) -> dict | None:
        """*event* with sent_at = now - *age*, when the wall clock disagrees with
        *age* by more than CLOCK_STEP; None when it needs no change."""
        sent = _epoch(event.get("sent_at")) if age is not None else None
        if sent is None:
            return None
        now = self._wall()
        if abs((now - sent) - age) <= CLOCK_STEP:
            return None
        fields = {k: v for k, v in event.items() if k != "sig"}
        return {**fields, "sent_at": _iso(now - age)}


def _epoch(text) -> float | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except (TypeError, ValueError):
        return None


def _why(err: QueueError) -> str:
    """Why a partner's queue refuses, in the words the page puts after "bob's queue"."""
    text = str(err)
    if "QueueNotFound" in text:
        return "does not exist (deleted?)"
    if "AuthorizationPermissionMismatch" in text:
        # A good token that may not add: not revoked, and no wait mends it.
        return ("does not take this pillow's hugs: its token may not add (pair the "
                "pillows again, then pillowd join)")
    if isinstance(err, QueueAuthError):
        return "refused the token (revoked, expired, or its queue deleted)"
    if isinstance(err, QueueUnavailable):
        return "cannot be reached"
    return text


_OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL DEFAULT '', body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS waiting (
    seq INTEGER NOT NULL, queue TEXT NOT NULL, PRIMARY KEY (seq, queue));
"""


def _iso(epoch: float) -> str:
    return iso(datetime.fromtimestamp(epoch, timezone.utc))
