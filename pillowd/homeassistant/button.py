"""The buttons: Hug (every partner) and Hug <partner>, sent as a press."""

from __future__ import annotations

from typing import Callable

from ..messages import Rejection
from .entity import Entity, object_id, press, short


# What Home Assistant's button sends on a press (its default payload_press).
PRESS = b"PRESS"


class SendHug(Entity):
    """The "Hug" button: a press, exactly as the pillow's own button (signed, with
    reply_to, last_sent and receipts), to every partner."""

    component, key, name, icon, commands = "button", "send", "Hug", "mdi:hand-heart", True
    stateful = False

    def config(self) -> dict:
        return {**super().config(), "payload_press": PRESS.decode()}

    def command(self, payload: bytes, snapshot: Callable[[], dict]) -> None:
        if payload != PRESS:
            raise Rejection(f"the hug button takes {PRESS.decode()}, not {short(payload)}")
        press(self.hugs, to=self.partner)


class SendHugTo(SendHug):
    """"Hug bob": a press that goes to one partner only (one button per partner)."""

    per_partner = True

    def __init__(self, topic: str, *, partner: str, **parts):
        super().__init__(topic, partner=partner, **parts)
        self.key = f"send_{object_id(partner)}"
        self.name = f"Hug {partner}"
