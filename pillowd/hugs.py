"""Hugs between pillows: a press plays here and goes to every partner as a message."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

from .errors import PillowError
from .history import iso_now
from .queues import QueueError

log = logging.getLogger(__name__)

# Seconds a hug event may wait in a partner's queue (SPEC): an older hug is recorded
# there as expired, not played in the middle of the night hours later.
HUG_TTL = 600


class HugNotKept(PillowError, OSError):
    """A hug event could not be written to the outbox: it will not be sent."""


class Outbox:
    """Hug events for the partners' queues, kept in SQLite until each queue took them.

    An event waits once per queue: it is forgotten for a queue only after that
    queue accepted it, so none is lost while a partner's queue is offline or the
    pillow restarts, and a partner that is away never holds back another (each
    queue has its own back-off). A crash between a put and its record may send one
    twice, which is why every event carries an ``id``.

    It also remembers the ids of the pillow's own events for *remember_seconds*,
    across restarts: a message answering one of them is a hug back.
    """

    def __init__(self, path: str | Path, queues, *, remember_seconds: float = 600,
                 retry_min: float = 0.5, retry_max: float = 30.0,
                 clock=time.monotonic, wall=time.time):
        if not isinstance(queues, (list, tuple)):
            queues = [queues]
        self.queues = {getattr(q, "name", f"queue{i}"): q for i, q in enumerate(queues)}
        self.remember_seconds = remember_seconds
        self.retry_min, self.retry_max = retry_min, retry_max
        self._clock, self._wall = clock, wall
        self._lock = threading.Lock()
        self._wake = threading.Event()     # an event was added, or stop()
        self._stopped = threading.Event()
        self._listeners: list[Callable[[dict, str], None]] = []
        self.away: dict[str, str] = {}     # queue name -> why it refused, while it does
        self.sent = 0
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

    @property
    def online(self) -> bool | None:
        """False while any queue refuses; None before the first try."""
        if self.away:
            return False
        return True if self.sent else None

    def on_sent(self, listener: Callable[[dict, str], None]) -> None:
        """Call *listener(event, queue name)* each time a queue has taken an event."""
        self._listeners.append(listener)

    def add(self, event: dict) -> None:
        """Keep *event* for every queue, and remember its id as the pillow's own."""
        body = json.dumps(event, separators=(",", ":"))
        now = self._wall()
        with self._lock, self._db:
            self._db.execute("BEGIN")
            seq = self._db.execute("INSERT INTO events (id, body) VALUES (?, ?)",
                                   (str(event.get("id", "")), body)).lastrowid
            self._db.executemany("INSERT INTO waiting (seq, queue) VALUES (?, ?)",
                                 [(seq, name) for name in self.queues])
            if event.get("id"):
                self._db.execute("INSERT OR REPLACE INTO own (id, at) VALUES (?, ?)",
                                 (str(event["id"]), now))
            # Forgotten once no answer could count any more: the table stays small.
            self._db.execute("DELETE FROM own WHERE at < ?", (now - self.remember_seconds,))
            self._db.execute("COMMIT")
        self._wake.set()

    def ours(self, event_id: str) -> bool:
        """Whether *event_id* is one of this pillow's events of the last
        remember_seconds (a message answering it is a hug back)."""
        with self._lock:
            row = self._db.execute("SELECT at FROM own WHERE id = ?", (event_id,)).fetchone()
        return row is not None and row[0] >= self._wall() - self.remember_seconds

    def pending(self, queue: str | None = None) -> list[dict]:
        """Events some queue (or *queue*) has not taken yet, oldest first."""
        where, args = ("WHERE w.queue = ?", (queue,)) if queue else ("", ())
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
                    "SELECT e.seq, e.body FROM events e JOIN waiting w ON w.seq = e.seq"
                    " WHERE w.queue = ? ORDER BY e.seq LIMIT 1", (queue,)).fetchone()
            if row is None:
                return True
            seq, body = row
            try:
                target.put(body)
            except QueueError as err:
                if queue not in self.away:
                    log.warning("partner queue %r unavailable, keeping %d event(s): %s",
                                queue, len(self.pending(queue)), err)
                self.away[queue] = str(err)
                return False
            with self._lock, self._db:
                self._db.execute("BEGIN")
                self._db.execute("DELETE FROM waiting WHERE seq = ? AND queue = ?",
                                 (seq, queue))
                self._db.execute("DELETE FROM events WHERE seq = ? AND NOT EXISTS"
                                 " (SELECT 1 FROM waiting WHERE seq = ?)", (seq, seq))
                self._db.execute("COMMIT")
            if self.away.pop(queue, None) is not None:
                log.info("partner queue %r back", queue)
            self.sent += 1
            event = json.loads(body)
            for listener in self._listeners:
                try:
                    listener(event, queue)
                except Exception:  # a listener's bug must not resend the event
                    log.exception("outbox listener failed")

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


_OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL DEFAULT '', body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS waiting (
    seq INTEGER NOT NULL, queue TEXT NOT NULL, PRIMARY KEY (seq, queue));
CREATE TABLE IF NOT EXISTS own (id TEXT PRIMARY KEY, at REAL NOT NULL);
"""

# What on_hug is told: a press here, an event a partner's queue took, a partner's hug
# that played here, and a partner's hug back (an answer to one of ours).
HUG_KINDS = ("pressed", "sent", "received", "returned")


class Hugs:
    """A press (the button, POST /api/hug): plays [button] scene here and sends a hug event.

    The event (SPEC "Hugs between pillows") answers the last message someone else
    sent, if it came within the reply window. *on_hug(kind, sender, text)* hears of
    each step, kind one of HUG_KINDS; *hurry(seconds)* makes the queue poll fast
    while a hug back may come.
    """

    def __init__(self, pillow_name: str, settings, *, timeline,
                 play: Callable[[dict, str], object], outbox: Outbox | None = None,
                 on_hug: Callable[[str, str | None, str | None], None] = (
                     lambda kind, sender, text: None),
                 hurry: Callable[[float], None] = lambda seconds: None,
                 clock=time.monotonic):
        self.pillow_name = pillow_name
        self.scene = settings.scene
        self.send_scene = settings.send_scene
        self.window = settings.reply_window_seconds
        self._play = play
        self.outbox = outbox
        self._on_hug = on_hug
        self._hurry = hurry
        self._clock = clock
        self._lock = threading.Lock()
        self.last_message: dict | None = None   # {"id", "from"} to answer
        self._last_seen = -float("inf")
        self._pressing: int | None = None   # the thread playing a press right now
        self.presses = 0
        timeline.on_change(self.seen)
        if outbox is not None:
            outbox.on_sent(self._sent)

    def seen(self, playing) -> None:
        """Timeline listener: remember who last sent something, to reply to them,
        and tell on_hug of a partner's hug (or hug back) that plays."""
        message = playing.message
        if not message or not message.get("id") or self._pressing == threading.get_ident():
            return  # nothing from anyone, or our own press (played in pressed())
        command = playing.command
        if message.get("from") == self.pillow_name or (
                command is not None and command.pillow == self.pillow_name):
            return  # our own event come back (a pillow listed as its own partner)
        if command is not None and command.forged:
            return  # claimed to be a partner's without the family's sig: never answered
        with self._lock:
            self.last_message = {"id": message["id"], "from": message.get("from")}
            self._last_seen = self._clock()
        if command is not None and command.event == "hug":
            self._tell("returned" if message.get("reply") else "received",
                       message.get("from"), message.get("text"))

    def pressed(self, source: str = "button") -> str:
        """Play the press here and send the hug event; returns the event's id."""
        self.presses += 1
        self._pressing = threading.get_ident()
        try:
            self._play({"scene": self.scene}, source)
        except Exception as err:  # the event still goes: the hug was felt
            log.warning("could not play the %r scene: %s", self.scene, err)
        finally:
            self._pressing = None
        with self._lock:
            recent = self._clock() - self._last_seen <= self.window
            reply_to = dict(self.last_message) if recent and self.last_message else None
        event = {"scene": self.send_scene, "from": self.pillow_name,
                 "id": str(uuid.uuid4()), "sent_at": iso_now(), "ttl": HUG_TTL,
                 "event": "hug", "pillow": self.pillow_name, "reply_to": reply_to}
        if self.outbox is not None:
            try:
                self.outbox.add(event)
            except sqlite3.Error as err:  # disk full, state_dir gone: say so, once
                raise HugNotKept(f"the hug event could not be kept in "
                                 f"{self.outbox.path}: {err}") from None
        log.info("hug %s (%s)%s", event["id"], source,
                 f", answering {reply_to['id']}" if reply_to else "")
        self._tell("pressed", self.pillow_name, None)
        return event["id"]

    def _sent(self, event: dict, queue: str) -> None:
        # A partner's queue took our hug: a hug back may come, so poll fast for it.
        if event.get("event") != "hug":
            return
        self._hurry(self.window)
        self._tell("sent", self.pillow_name, None)

    def _tell(self, kind: str, sender: str | None, text: str | None) -> None:
        try:
            self._on_hug(kind, sender, text)
        except Exception:  # Home Assistant's trouble is not the hug's
            log.exception("on_hug(%r) failed", kind)


class HugButton:
    """The physical button, debounced by gpiozero; calls *on_press* on each press."""

    def __init__(self, pin, *, pull_up: bool, bounce_seconds: float,
                 on_press: Callable[[], None], pin_factory):
        from gpiozero import Button
        self.device = Button(pin, pull_up=pull_up, bounce_time=bounce_seconds or None,
                             pin_factory=pin_factory)
        self.device.when_pressed = lambda: _logged(on_press)

    def close(self) -> None:
        if self.device is not None:
            self.device.close()
            self.device = None


def _logged(on_press: Callable[[], object]) -> None:
    # gpiozero's thread would print a traceback and lose the line; one line instead.
    try:
        on_press()
    except HugNotKept as err:
        log.error("%s", err)
