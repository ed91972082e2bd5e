"""Receipts: a partner's hug is answered here with what became of it (played, superseded, expired)."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from datetime import datetime, timezone
from typing import Callable

from ..history import iso

log = logging.getLogger(__name__)


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


class Receipts:
    """Answers each partner's hug with one signed receipt, on that partner's queue only.

    Without the family key, an outbox, or the partner in the roster, nothing is
    sent: an unsigned receipt would be nobody's. *partners* is the roster,
    {partner's name: its queue}; *pillow* is this pillow's name in it.
    """

    def __init__(self, pillow: str, *, family, outbox, partners: dict[str, str],
                 ttl: float, clock: Callable[[], float]):
        self.pillow = pillow
        self.family = family
        self.outbox = outbox
        self.partners = partners
        self.ttl = ttl
        self._clock = clock

    def answer(self, command, outcome, *, quiet: bool = False) -> None:
        queue = self.partners.get(command.pillow)
        if self.family is None or self.outbox is None or queue is None or not command.id:
            return
        sent_at = iso(datetime.fromtimestamp(self._clock(), timezone.utc))
        receipt = make_receipt(command.id, self.pillow, outcome, quiet=quiet,
                               sent_at=sent_at, ttl=self.ttl)
        try:
            self.outbox.add(self.family.signed(receipt), to=[queue])
        except sqlite3.Error as err:  # the hug played; only the sender's page misses it
            log.warning("no receipt for %s: the outbox cannot keep it: %s", command.id, err)
