"""The conversation: what one pillow says to its partners and hears back, from its parts."""

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

from ..errors import PillowError
from ..history import iso
from .kept import ConversationFile
from .night import WhileQuiet
from .outbox import HugNotKept, Outbox
from .receipts import Receipts
from .sent import SentHugs
from .target import ReplyTarget

log = logging.getLogger(__name__)

# Seconds a hug event may wait in a partner's queue (SPEC): an older hug is recorded
# there as expired, not played in the middle of the night hours later.
HUG_TTL = 600
# What on_hug is told: a press here, an event a partner's queue took, a message from
# someone that played here, a partner's hug back (an answer to one of ours), and a
# partner's receipt for our hug.
HUG_KINDS = ("pressed", "sent", "received", "returned", "delivered")


class UnknownPartner(PillowError, ValueError):
    """A press asked for one partner this pillow has no queue for."""


class Conversation:
    """What this pillow says to its partners and hears back, in four parts:

    - ``target`` (ReplyTarget): who a press answers, and for how long;
    - ``sent`` (SentHugs): what became of the hugs it sent: the partners' receipts,
      their hugs back, ``last_sent``;
    - ``night`` (WhileQuiet): what came in quiet hours, until the owner saw it;
    - ``file`` (ConversationFile): how all of this is kept across restarts.

    and ``receipts`` (Receipts), which answers each partner's hug. It is fed
    explicit events, never guesses: a message played (``heard``), a local press
    (``press``), a partner's queue took or dropped an event (the Outbox's
    listeners), the owner saw the night's messages (``seen``); it holds the one
    lock the parts are used under, saves after each change, and reports the
    snapshot's ``last_sent`` and ``while_quiet`` through *on_section(name, value)*.
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
        self.file = ConversationFile(path)
        kept = self.file.load()
        self.target = ReplyTarget(kept.get("target"), window=window)
        self.sent = SentHugs(kept.get("own"), kept.get("last_sent"), window=window, ttl=ttl)
        self.night = WhileQuiet(kept.get("while_quiet"))
        self.receipts = Receipts(self.roster_name, family=family, outbox=outbox,
                                 partners=self.partners, ttl=ttl,
                                 clock=lambda: self.clock())
        if outbox is not None:
            outbox.on_sent(self._sent)
            outbox.on_dropped(self._dropped)

    @property
    def path(self) -> Path:
        return self.file.path

    @property
    def last_sent(self) -> dict | None:
        return self.sent.last

    @property
    def while_quiet(self) -> list[dict]:
        return self.night.items

    def report(self) -> None:
        """Tell on_section the current ``last_sent`` and ``while_quiet``."""
        # Under the lock: two threads' reports never reach the snapshot out of order.
        with self._lock:
            self._on_section("last_sent", json.loads(json.dumps(self.sent.last)))
            self._on_section("while_quiet", self.night.view())

    # -- what plays here ---------------------------------------------------------

    def answers(self, command) -> bool:
        """Whether *command* is a partner's hug back to one of this pillow's hugs.

        Asked by the Player before it records a message, so the history, the
        announcement and the snapshot all say so."""
        if not (_partner(command) and command.event == "hug" and command.reply_to):
            return False
        with self._lock:
            return self.sent.answers(command, self.clock())

    def dressed(self, command):
        """*command* in its partner's roster colour, when it is a partner's hug that
        names none and its scene has a colour to set; else *command* as it is."""
        color = self.colors.get(command.pillow) if _partner(command) else None
        if color is None or command.color is not None or command.scene is None \
                or "color" not in command.scene.params:
            return command
        from dataclasses import replace

        from ..messages import parse_color
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
                self.target.heard(outcome.id, command.sender, now)
            if quiet:
                self.night.came(outcome.id, command.sender, command.text, outcome.at)
            if hug and outcome.reply:
                self.sent.hugged_back(command, outcome.at)
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
            quiet = self.night.holds(outcome.id)
        self._answer(command, outcome, quiet=quiet)

    def _answer(self, command, outcome, *, quiet: bool = False) -> None:
        """Send a partner a receipt for its hug: one add, on its queue only."""
        self.receipts.answer(command, outcome, quiet=quiet)

    def _receipt(self, command, outcome) -> None:
        """A partner's receipt for our hug *command.of*."""
        with self._lock:
            receipt = self.sent.receipt(command, outcome)
        if receipt is None:
            return   # a copy of one already counted
        self._save()
        if receipt.current and command.superseded and not command.expired:
            self._tell("delivered", command.pillow, None)
        if receipt.played is not None and not command.expired:
            # The answer may come until the window, counted from that play, ends.
            # played is by the partner's clock, now by ours: a skewed clock (a Pi
            # booted before NTP) must not hurry the poll for longer than a window.
            left = min(receipt.played + self.window - self.clock(), self.window)
            if left > 0:
                self._hurry(left)
            if receipt.current:
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
            reply_to = self.target.reply_to(now)
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
            names = None
            if self.outbox is not None:
                names = [to] if to is not None else [
                    self.outbox.partners[q] for q in self.outbox.queues]
            self.sent.sent(event, now, names)
            self.night.seen()
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
            if not self.night.seen():
                return
        self._save()
        self.report()

    def _sent(self, event: dict, queue: str) -> None:
        # A partner's queue took our hug: a hug back may come, so poll fast for it.
        if event.get("event") != "hug":
            return
        with self._lock:
            restamped = self.sent.restamped(event)
        if restamped:
            self._save()
            self.report()
        self._hurry(self.window)
        self._tell("sent", self.name, None)

    def _dropped(self, event: dict, queue: str) -> None:
        # Too old to send: it will never play there, and no answer will come.
        partner = self.outbox.partners.get(queue, queue) if self.outbox else queue
        with self._lock:
            if not self.sent.dropped(event, partner):
                return
        self._save()
        self.report()

    def _tell(self, kind: str, sender: str | None, text: str | None) -> None:
        try:
            self._on_hug(kind, sender, text)
        except Exception:  # Home Assistant's trouble is not the hug's
            log.exception("on_hug(%r) failed", kind)

    def _save(self) -> None:
        # Under the lock: an older state never replaces a newer one on disk.
        with self._lock:
            self.file.save({"target": self.target.current, "own": self.sent.own,
                            "last_sent": self.sent.last, "while_quiet": self.night.items})


def _partner(command) -> bool:
    # A partner's signed event (SPEC, the family key); an unsigned claim is nobody's.
    return bool(getattr(command, "partner", False))


def _iso(epoch: float) -> str:
    return iso(datetime.fromtimestamp(epoch, timezone.utc))
