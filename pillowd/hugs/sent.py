"""What became of what the pillow sent: its recent hugs, the receipts for them, ``last_sent``."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..history import iso
from .outbox import CLOCK_STEP, _epoch

log = logging.getLogger(__name__)


def partner_entry() -> dict:
    """What ``last_sent`` says of one partner before anything is known."""
    return {"delivered": None, "quiet": None, "hugged_back": None, "expired": False}


@dataclass(frozen=True)
class Receipt:
    """What a partner's receipt changed here."""

    current: bool              # it is for the hug last sent (the page shows it)
    played: float | None       # when ours played there, by the partner's clock


class SentHugs:
    """The pillow's own recent hugs and ``last_sent``, as the partners answer them.

    ``own`` holds each recent hug's id with when it was sent and, from the
    partners' receipts, when it played on each of them (by that partner's clock)
    and who answered: a partner's signed hug back counts as one when the partner
    pressed within *window* of playing ours, so both sides count from the same
    moment. ``last`` is the snapshot's ``last_sent``: the last hug, and per partner
    whether it was delivered, in quiet hours, hugged back, or expired. Hugs are
    forgotten once no answer could count any more. Only the Conversation calls it,
    under its lock.
    """

    def __init__(self, own: dict[str, dict] | None, last: dict | None, *,
                 window: float, ttl: float):
        self.window = window
        self.ttl = ttl
        self.own: dict[str, dict] = dict(own or {})   # id -> {"at", "played", "answered"}
        self.last: dict | None = last

    def answers(self, command, now: float) -> bool:
        """Whether the partner's hug *command* answers one of ours in time."""
        mine = self.own.get((command.reply_to or {}).get("id"))
        if mine is None:
            return False
        pressed = command.sent_at.timestamp() if command.sent_at else now
        played = mine.get("played", {}).get(command.pillow)
        if played is not None:
            # Both times by the partner's clock: its press, and when ours played there.
            return pressed - played <= self.window + 1
        # No receipt (an older pillow): the answer can come no later than our hug's
        # ttl in its queue plus the window.
        return pressed - mine["at"] <= self.ttl + self.window + 60

    def sent(self, event: dict, now: float, partners: list[str] | None) -> None:
        """The hug *event* was kept for *partners* (None: no outbox, no last_sent)."""
        self.own[event["id"]] = {"at": now, "played": {}}
        # Forgotten once no answer could count any more: the file stays small.
        horizon = now - (self.ttl + self.window + 60)
        self.own = {i: e for i, e in self.own.items() if e["at"] >= horizon}
        if partners is not None:
            self.last = {"id": event["id"], "at": event["sent_at"],
                         "partners": {p: partner_entry() for p in partners}}

    def hugged_back(self, command, at: str) -> bool:
        """A partner's hug back played at *at*: True when it answers the last hug."""
        last = self.last
        if not (last and command.reply_to["id"] == last["id"]):
            return False
        last["partners"].setdefault(command.pillow, partner_entry())["hugged_back"] = at
        return True

    def receipt(self, command, outcome) -> Receipt | None:
        """A partner says our hug *command.of* played there (or was superseded, or
        expired). One receipt per hug per partner counts: a copy changes nothing
        (None)."""
        played = command.played_at.timestamp() if command.played_at else None
        mine = self.own.get(command.of)
        if mine is not None:
            answered = mine.setdefault("answered", [])
            if command.pillow in answered:
                log.info("receipt %s for hug %s: %s answered it already", outcome.id,
                         command.of, command.pillow)
                return None
            answered.append(command.pillow)
            if played is not None:
                mine.setdefault("played", {})[command.pillow] = played
        last = self.last
        current = last is not None and last["id"] == command.of
        if current:
            entry = last["partners"].setdefault(command.pillow, partner_entry())
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
        return Receipt(current, played)

    def restamped(self, event: dict) -> bool:
        """The outbox put the hug's sent_at right (the clock was stepped since the
        press): an answer counts from then, and the page shows it. True if changed."""
        mine = self.own.get(event.get("id"))
        at = _epoch(event.get("sent_at"))
        if at is None or mine is None or abs(mine["at"] - at) <= CLOCK_STEP:
            return False
        mine["at"] = at
        if self.last is not None and self.last["id"] == event["id"]:
            self.last["at"] = event["sent_at"]
        return True

    def dropped(self, event: dict, partner: str) -> bool:
        """The hug was too old to send to *partner*: it expired there. True if it
        was the last hug sent."""
        last = self.last
        if event.get("event") != "hug" or last is None or last["id"] != event.get("id"):
            return False
        last["partners"].setdefault(partner, partner_entry())["expired"] = True
        return True

