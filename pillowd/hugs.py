"""Hugs between pillows: a press goes to every partner, and the conversation that follows."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from . import files
from .errors import PillowError
from .history import iso
from .messages import HOLD_RANGE, held
from .queues import QueueAuthError, QueueError, QueueUnavailable

log = logging.getLogger(__name__)

# Seconds a hug event may wait in a partner's queue (SPEC): an older hug is recorded
# there as expired, not played in the middle of the night hours later.
HUG_TTL = 600


class HugNotKept(PillowError, OSError):
    """A hug event could not be written to the outbox: it will not be sent."""


class UnknownPartner(PillowError, ValueError):
    """A press asked for one partner this pillow has no queue for."""


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

# What on_hug is told: a press here, an event a partner's queue took, a message from
# someone that played here, a partner's hug back (an answer to one of ours), and a
# partner's receipt for our hug.
HUG_KINDS = ("pressed", "sent", "received", "returned", "delivered")
# Kept on the page while unseen, at most (the oldest go first).
WHILE_QUIET = 50


class Conversation:
    """Who this pillow answers and until when, and what became of the hugs it sent.

    Fed explicit events, never guesses: a message played (``heard``), a local press
    (``press``), a partner's queue took or dropped an event (the Outbox's listeners),
    the owner saw the night's messages (``seen``). It owns

    - the reply target: the last message from someone else that came through the
      queue, answerable for *window* seconds from the moment it played here;
    - the pillow's own recent hug ids, each with the moment it played on each
      partner (from their receipts): a partner's signed answer is a hug back when
      the partner pressed within *window* of playing ours, by the partner's own
      clock, so both sides count from the same moment;
    - ``last_sent`` and ``while_quiet``, the snapshot's sections (SPEC "Hugs between
      pillows"), reported through *on_section(name, value)*.

    It is kept in *path* (JSON), so a restart forgets no answer that may still come.
    The Outbox only delivers what it sends.
    """

    def __init__(self, pillow_name: str, *, window: float, send_scene: str,
                 path: str | Path, outbox: Outbox | None = None,
                 partners: dict[str, str] | None = None, family=None,
                 roster_name: str | None = None, colors: dict[str, str] | None = None,
                 quiet: Callable[[], bool] = lambda: False,
                 hurry: Callable[[float], None] = lambda seconds: None,
                 on_hug: Callable[[str, str | None, str | None], None] = (
                     lambda kind, sender, text: None),
                 on_section: Callable[[str, object], None] = lambda name, value: None,
                 clock: Callable[[], float] = time.time, ttl: float = HUG_TTL):
        self.name = pillow_name   # what the pillow shows: its events' "from"
        # What the partners call it (the roster's name): its events' "pillow", and
        # how it knows its own events come back.
        self.roster_name = roster_name or pillow_name
        self.window = window
        self.send_scene = send_scene
        self.ttl = ttl
        self.path = Path(path)
        self.outbox = outbox
        # The family roster, {partner's name: its queue}: where a hug for that
        # partner, and a receipt for its hug, go.
        self.partners = dict(partners or {})
        self.colors = dict(colors or {})  # {partner: "#rrggbb"}: its hugs play in it
        self.family = family      # FamilyKey or None: unsigned, no receipts
        self.clock = clock        # epoch seconds; a test may set it
        self._quiet = quiet
        self._hurry = hurry
        self._on_hug = on_hug
        self._on_section = on_section
        self._lock = threading.RLock()
        kept = load_state(self.path)
        self.target: dict | None = kept.get("target")        # {"id", "from", "at"}
        self.own: dict[str, dict] = kept.get("own", {})       # id -> {"at", "played"}
        self.last_sent: dict | None = kept.get("last_sent")
        self.while_quiet: list[dict] = kept.get("while_quiet", [])
        if outbox is not None:
            outbox.on_sent(self._sent)
            outbox.on_dropped(self._dropped)

    def report(self) -> None:
        """Tell on_section the current ``last_sent`` and ``while_quiet``."""
        # Under the lock: two threads' reports never reach the snapshot out of order.
        with self._lock:
            self._on_section("last_sent", json.loads(json.dumps(self.last_sent)))
            self._on_section("while_quiet", [dict(item) for item in self.while_quiet])

    # -- what plays here ---------------------------------------------------------

    def answers(self, command) -> bool:
        """Whether *command* is a partner's hug back to one of this pillow's hugs.

        Asked by the Player before it records a message, so the history, the
        announcement and the snapshot all say so."""
        reply_to = command.reply_to
        if not (_partner(command) and command.event == "hug" and reply_to):
            return False
        with self._lock:
            mine = self.own.get(reply_to.get("id"))
            if mine is None:
                return False
            pressed = command.sent_at.timestamp() if command.sent_at else self.clock()
            played = mine.get("played", {}).get(command.pillow)
        if played is not None:
            # Both times by the partner's clock: its press, and when ours played there.
            return pressed - played <= self.window + 1
        # No receipt (an older pillow): the answer can come no later than our hug's
        # ttl in its queue plus the window.
        return pressed - mine["at"] <= self.ttl + self.window + 60

    def dressed(self, command):
        """*command* in its partner's roster colour, when it is a partner's hug that
        names none and its scene has a colour to set; else *command* as it is."""
        color = self.colors.get(command.pillow) if _partner(command) else None
        if color is None or command.color is not None or command.scene is None \
                or "color" not in command.scene.params:
            return command
        from dataclasses import replace

        from .effects import parse_color
        return replace(command, color=parse_color(color))

    def heard(self, command, outcome, through_queue: bool) -> None:
        """A message got its *outcome* (the Player's record); *through_queue*: it
        came off the pillow's queue, not from the page, a script or Home Assistant."""
        if not through_queue or command is None:
            return
        partner = _partner(command)
        if command.sender == self.name or (partner and command.pillow == self.roster_name):
            return  # our own event come back (a pillow listed as its own partner)
        if command.scene is None:
            if partner and command.event == "receipt" and outcome.outcome == "applied":
                self._receipt(command, outcome)
            return
        hug = partner and command.event == "hug"
        if outcome.outcome != "applied":
            # Every partner hug that reaches an outcome is answered: one that a newer
            # message took the place of was delivered all the same.
            if hug and outcome.outcome in ("expired", "superseded"):
                # Superseded, it reached a pillow that may be asleep: say so.
                self._answer(command, outcome, quiet=outcome.outcome == "superseded"
                             and bool(self._quiet()))
            return
        now = self.clock()
        quiet = bool(self._quiet())
        with self._lock:
            if not command.forged:  # claimed a partner's name without the family's sig
                self.target = {"id": outcome.id, "from": command.sender, "at": now}
            if quiet:
                self.while_quiet.append({"id": outcome.id, "from": command.sender,
                                         "text": command.text, "at": outcome.at})
                del self.while_quiet[:-WHILE_QUIET]
            if hug and outcome.reply and self.last_sent and \
                    command.reply_to["id"] == self.last_sent["id"]:
                entry = self.last_sent["partners"].setdefault(
                    command.pillow, _partner_entry())
                entry["hugged_back"] = outcome.at
        self._save()
        if hug:
            self._answer(command, outcome, quiet=quiet)
        if hug and outcome.reply:
            self._tell("returned", command.sender, command.text)
        elif command.sender is not None:
            self._tell("received", command.sender, command.text)
        self.report()

    def answer_again(self, command, outcome) -> None:
        """A partner's hug came back after its outcome was kept (a crash before its
        delete): its receipt is made again, the same one (the same id), in case
        the crash came before it was kept. The partner keeps one of each id."""
        if not (_partner(command) and command.event == "hug"):
            return
        if command.pillow == self.roster_name or outcome.outcome not in (
                "applied", "superseded", "expired"):
            return
        with self._lock:
            quiet = any(item.get("id") == outcome.id for item in self.while_quiet)
        self._answer(command, outcome, quiet=quiet)

    def _answer(self, command, outcome, *, quiet: bool = False) -> None:
        """Send a partner a receipt for its hug: one add, on its queue only."""
        queue = self.partners.get(command.pillow)
        if self.family is None or self.outbox is None or queue is None or not command.id:
            return
        receipt = make_receipt(command.id, self.roster_name, outcome, quiet=quiet,
                               sent_at=_iso(self.clock()), ttl=self.ttl)
        try:
            self.outbox.add(self.family.signed(receipt), to=[queue])
        except sqlite3.Error as err:  # the hug played; only the sender's page misses it
            log.warning("no receipt for %s: the outbox cannot keep it: %s", command.id, err)

    def _receipt(self, command, outcome) -> None:
        """A partner says our hug *command.of* played there (or was superseded, or
        expired). One receipt per hug per partner counts: a copy is only kept."""
        played = command.played_at.timestamp() if command.played_at else None
        with self._lock:
            mine = self.own.get(command.of)
            if mine is not None:
                answered = mine.setdefault("answered", [])
                if command.pillow in answered:
                    log.info("receipt %s for hug %s: %s answered it already", outcome.id,
                             command.of, command.pillow)
                    return
                answered.append(command.pillow)
                if played is not None:
                    mine.setdefault("played", {})[command.pillow] = played
            last = self.last_sent
            current = last is not None and last["id"] == command.of
            if current:
                entry = last["partners"].setdefault(command.pillow, _partner_entry())
                if command.expired:
                    entry["expired"] = True
                elif command.superseded:
                    # Delivered, though a newer message played there instead.
                    entry["delivered"] = iso(command.sent_at) if command.sent_at \
                        else outcome.at
                    entry["quiet"] = bool(command.quiet)
                    entry["superseded"] = True
                else:
                    # As the receipt says it (no float round trip to lose a ms).
                    entry["delivered"] = iso(command.played_at) if played else None
                    entry["quiet"] = bool(command.quiet)
        self._save()
        if current and command.superseded and not command.expired:
            self._tell("delivered", command.pillow, None)
        if played is not None and not command.expired:
            # The answer may come until the window, counted from that play, ends.
            # played is by the partner's clock, now by ours: a skewed clock (a Pi
            # booted before NTP) must not hurry the poll for longer than a window.
            left = min(played + self.window - self.clock(), self.window)
            if left > 0:
                self._hurry(left)
            if current:
                self._tell("delivered", command.pillow, None)
        self.report()

    # -- what this pillow does ---------------------------------------------------

    def press(self, source: str = "button", *, to: str | None = None,
              text: str | None = None, ident: str | None = None,
              felt: dict | None = None) -> dict:
        """The hug event for a press now, kept for the partners (or only for the
        partner pillow *to*), carrying *text* when given (checked by the caller
        under the message rules), under the id *ident* when given (the press's own
        history row), and *felt*'s ``hold`` and ``strength`` (checked by the caller:
        signed with the rest); the night's messages count as seen. Raises HugNotKept when it
        cannot be kept, UnknownPartner for a *to* without a queue."""
        queues = self.queues_for(to)
        # One press at a time, from the target it answers to last_sent (the button's
        # thread and the page's at once): last_sent is always the hug kept last,
        # and no receipt finds it unknown. (The outbox calls no conversation from add.)
        with self._lock:
            now = self.clock()
            target = self.target
            recent = target is not None and now - target["at"] <= self.window
            reply_to = {"id": target["id"], "from": target["from"]} if recent else None
            event = {"scene": self.send_scene, "from": self.name,
                     "id": ident or str(uuid.uuid4()),
                     "sent_at": _iso(now), "ttl": self.ttl, "event": "hug",
                     "pillow": self.roster_name, "reply_to": reply_to}
            if text:
                event["text"] = text
            event.update(felt or {})
            if self.family is not None:
                event = self.family.signed(event)
            if self.outbox is not None:
                try:
                    self.outbox.add(event, to=queues)
                except sqlite3.Error as err:  # disk full, state_dir gone: say so, once
                    raise HugNotKept(f"the hug event could not be kept in "
                                     f"{self.outbox.path}: {err}") from None
            self.own[event["id"]] = {"at": now, "played": {}}
            # Forgotten once no answer could count any more: the file stays small.
            horizon = now - (self.ttl + self.window + 60)
            self.own = {i: e for i, e in self.own.items() if e["at"] >= horizon}
            if self.outbox is not None:
                names = [to] if to is not None else [
                    self.outbox.partners[q] for q in self.outbox.queues]
                self.last_sent = {"id": event["id"], "at": event["sent_at"],
                                  "partners": {p: _partner_entry() for p in names}}
            self.while_quiet = []
        self._save()
        log.info("hug %s (%s)%s%s", event["id"], source,
                 f" to {to}" if to else "",
                 f", answering {reply_to['id']}" if reply_to else "")
        self._tell("pressed", self.name, None)
        self.report()
        return event

    def queues_for(self, to: str | None) -> list[str] | None:
        """The outbox queues a press *to* one partner pillow goes to (None: all)."""
        if to is None:
            return None
        if to not in self.partners:
            known = ", ".join(sorted(self.partners)) or "none"
            raise UnknownPartner(f"no partner named {to!r} (partners: {known})")
        return [self.partners[to]]

    def seen(self) -> None:
        """The owner has seen what came in quiet hours (POST /api/seen, a press)."""
        with self._lock:
            if not self.while_quiet:
                return
            self.while_quiet = []
        self._save()
        self.report()

    def _sent(self, event: dict, queue: str) -> None:
        # A partner's queue took our hug: a hug back may come, so poll fast for it.
        if event.get("event") != "hug":
            return
        self._restamped(event)
        self._hurry(self.window)
        self._tell("sent", self.name, None)

    def _restamped(self, event: dict) -> None:
        # The outbox put sent_at right (the clock was stepped since the press): the
        # page shows when the hug was really sent, and an answer counts from then.
        with self._lock:
            last, mine = self.last_sent, self.own.get(event.get("id"))
            at = _epoch(event.get("sent_at"))
            if at is None or mine is None or abs(mine["at"] - at) <= CLOCK_STEP:
                return
            mine["at"] = at
            if last is not None and last["id"] == event["id"]:
                last["at"] = event["sent_at"]
        self._save()
        self.report()

    def _dropped(self, event: dict, queue: str) -> None:
        # Too old to send: it will never play there, and no answer will come.
        partner = self.outbox.partners.get(queue, queue) if self.outbox else queue
        with self._lock:
            last = self.last_sent
            if event.get("event") != "hug" or last is None or last["id"] != event.get("id"):
                return
            last["partners"].setdefault(partner, _partner_entry())["expired"] = True
        self._save()
        self.report()

    def _tell(self, kind: str, sender: str | None, text: str | None) -> None:
        try:
            self._on_hug(kind, sender, text)
        except Exception:  # Home Assistant's trouble is not the hug's
            log.exception("on_hug(%r) failed", kind)

    # -- kept across restarts ----------------------------------------------------

    def _save(self) -> None:
        # Under the lock: an older state never replaces a newer one on disk.
        with self._lock:
            text = json.dumps({"target": self.target, "own": self.own,
                               "last_sent": self.last_sent,
                               "while_quiet": self.while_quiet})
            try:
                files.write(self.path, text)
            except OSError as err:  # the hug still goes; a restart forgets the answer
                log.warning("cannot keep the conversation in %s: %s", self.path, err)


def receipt_id(of: str, pillow: str) -> str:
    """A receipt's id: the same for the same hug answered by the same pillow, so a
    receipt made again (after a crash) or copied is kept once by the sender."""
    return "receipt-" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"pillowd:{pillow}:{of}"))


def make_receipt(of: str, pillow: str, outcome, *, quiet: bool, sent_at: str,
                 ttl: float) -> dict:
    """The receipt (unsigned) for a partner's hug *of* that got *outcome* here."""
    receipt = {"event": "receipt", "of": of, "pillow": pillow, "id": receipt_id(of, pillow),
               "sent_at": sent_at, "ttl": ttl,
               "played_at": outcome.at if outcome.outcome == "applied" else None,
               "quiet": quiet, "superseded": outcome.outcome == "superseded"}
    if outcome.outcome == "expired":
        receipt["expired"] = True
    return receipt


def load_state(path: Path) -> dict:
    """conversation.json as kept, checked: an entry that is not as this pillow writes
    it (edited by hand, a bug, a torn write) is dropped, with one log line naming
    them, so that no press or message ever trips on it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        log.warning("starting a new conversation: %s cannot be read (%s)", path, err)
        return {}
    if not isinstance(data, dict):
        log.warning("starting a new conversation: %s holds no object", path)
        return {}
    kept, dropped = checked_state(data)
    if dropped:
        log.warning("%s: dropped what is not as pillowd writes it: %s", path,
                    "; ".join(dropped))
    return kept


def checked_state(data: dict) -> tuple[dict, list[str]]:
    """(the conversation's state with only well-formed entries, what was dropped)."""
    dropped: list[str] = []
    kept: dict = {}
    target = data.get("target")
    if target is not None:
        if _is_target(target):
            kept["target"] = target
        else:
            dropped.append("target")
    own = data.get("own", {})
    if not isinstance(own, dict):
        dropped.append("own")
        own = {}
    kept["own"] = {}
    for ident, entry in own.items():
        if _is_own(entry):
            kept["own"][ident] = entry
        else:
            dropped.append(f"own[{ident!r}]"[:80])
    last = data.get("last_sent")
    if last is not None:
        if _is_last_sent(last):
            kept["last_sent"] = last
        else:
            dropped.append("last_sent")
    items = data.get("while_quiet", [])
    if not isinstance(items, list):
        dropped.append("while_quiet")
        items = []
    kept["while_quiet"] = [i for i in items if _is_quiet_item(i)]
    if len(kept["while_quiet"]) != len(items):
        dropped.append(f"{len(items) - len(kept['while_quiet'])} of while_quiet")
    return kept, dropped


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text_or_none(value) -> bool:
    return value is None or isinstance(value, str)


def _is_target(value) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("id"), str)
            and _text_or_none(value.get("from")) and _number(value.get("at")))


def _is_own(value) -> bool:
    if not isinstance(value, dict) or not _number(value.get("at")):
        return False
    played = value.setdefault("played", {})
    answered = value.setdefault("answered", [])
    return (isinstance(played, dict) and all(_number(v) for v in played.values())
            and isinstance(answered, list) and all(isinstance(a, str) for a in answered))


def _is_last_sent(value) -> bool:
    if not (isinstance(value, dict) and isinstance(value.get("id"), str)
            and isinstance(value.get("at"), str)
            and isinstance(value.get("partners"), dict)):
        return False
    for name, entry in value["partners"].items():
        if not isinstance(entry, dict):
            return False
        value["partners"][name] = {**_partner_entry(), **entry}
    return True


def _is_quiet_item(value) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("id"), str)
            and all(_text_or_none(value.get(k)) for k in ("from", "text", "at")))


def _partner(command) -> bool:
    # A partner's signed event (SPEC, the family key); an unsigned claim is nobody's.
    return bool(getattr(command, "partner", False))


def _partner_entry() -> dict:
    return {"delivered": None, "quiet": None, "hugged_back": None, "expired": False}


def _iso(epoch: float) -> str:
    return iso(datetime.fromtimestamp(epoch, timezone.utc))


class Hugs:
    """A press (the button, POST /api/hug): plays [button] scene here, through the
    same path as any play from the page, and has the conversation send the hug."""

    def __init__(self, settings, *, conversation: Conversation,
                 play: Callable[[dict, str], object]):
        self.scene = settings.scene
        self.conversation = conversation
        self._play = play
        self.presses = 0

    @property
    def partners(self) -> list[str]:
        """The partner pillows a press may go to alone (pressed(to=...))."""
        return sorted(self.conversation.partners)

    def pressed(self, source: str = "button", *, to: str | None = None,
                text: str | None = None, hold: float | None = None,
                strength: float | None = None) -> str:
        """Play the press here and send the hug event (to every partner, or only
        to the partner pillow *to*, with *text* if given, held *hold* seconds at
        *strength*, 0.1..1, if given); returns the event's id.

        Raises UnknownPartner for a *to* without a queue, Rejection (a ValueError)
        for a *hold* or *strength* out of range or not a number, HugNotKept when
        the event cannot be kept: in each case nothing plays and nothing is sent."""
        felt = held({"hold": hold, "strength": strength})
        self.conversation.queues_for(to)  # an unknown partner plays nothing
        self.presses += 1
        # The press's history row has the event's id: the partners' receipts name it
        # ("of"), and the page shows "delivered" on that row.
        ident = str(uuid.uuid4())
        try:
            self._play({"scene": self.scene, "id": ident}, source)
        except Exception as err:  # the event still goes: the hug was felt
            log.warning("could not play the %r scene: %s", self.scene, err)
        return self.conversation.press(source, to=to, text=text, ident=ident,
                                       felt=felt)["id"]

    def seen(self) -> None:
        self.conversation.seen()


# The shortest and longest hold a hug carries (SPEC): a hug still held at the
# longest is sent then.
HOLD_MIN, MAX_HOLD = HOLD_RANGE


class HugButton:
    """The physical button, debounced by gpiozero: a hug is sent on its release,
    held from press to release (``on_press(hold=seconds)``), or after MAX_HOLD
    seconds if it is still held, once.

    While it is held, one named thread waits for the release or the end of
    MAX_HOLD (no thread at rest). *clock* and *wait(event, seconds)* are the
    time it is measured on and the wait for the release: a test drives them."""

    def __init__(self, pin, *, pull_up: bool, bounce_seconds: float,
                 on_press: Callable[..., object], pin_factory,
                 max_hold: float = MAX_HOLD, clock: Callable[[], float] = time.monotonic,
                 wait: Callable[[threading.Event, float], bool] = (
                     lambda event, seconds: event.wait(seconds))):
        from gpiozero import Button
        self._on_press = on_press
        self._max_hold = max_hold
        self._clock, self._wait = clock, wait
        self._lock = threading.Lock()
        self._press: _Press | None = None   # the press being held, if any
        self.device = Button(pin, pull_up=pull_up, bounce_time=bounce_seconds or None,
                             pin_factory=pin_factory)
        self.device.when_pressed = self._down
        self.device.when_released = self._up

    def _down(self) -> None:
        press = _Press(self._clock())
        with self._lock:
            if self._press is not None:  # a release gpiozero never told: that one ends
                self._press.released.set()
            self._press = press
        threading.Thread(target=self._held, args=(press,), name="pillowd-hold",
                         daemon=True).start()

    def _up(self) -> None:
        with self._lock:
            press, self._press = self._press, None
        if press is not None:
            press.up_at = self._clock()
            press.released.set()

    def _held(self, press: "_Press") -> None:
        # Sends the hug once: at the release, or when MAX_HOLD has passed.
        while True:
            left = self._max_hold - (self._clock() - press.down_at)
            if left <= 0 or self._wait(press.released, left):
                break
        if press.cancelled:
            return
        up = press.up_at if press.released.is_set() and press.up_at is not None \
            else press.down_at + self._max_hold
        hold = min(self._max_hold, max(HOLD_MIN, up - press.down_at))
        _logged(lambda: self._on_press(hold=round(hold, 2)))

    def close(self) -> None:
        if self.device is not None:
            self.device.close()
            self.device = None
        with self._lock:
            press, self._press = self._press, None
        if press is not None:  # a press held at shutdown is not sent half-way
            press.cancelled = True
            press.released.set()


class _Press:
    """One press of the button: when it began, and its release."""

    def __init__(self, down_at: float):
        self.down_at = down_at
        self.up_at: float | None = None
        self.released = threading.Event()
        self.cancelled = False


def _logged(on_press: Callable[[], object]) -> None:
    # gpiozero's thread would print a traceback and lose the line; one line instead.
    try:
        on_press()
    except HugNotKept as err:
        log.error("%s", err)
    except Exception:  # a bug: the next press must still work
        log.exception("the hug button's press failed")
