"""The notify entity: Message, a hug that carries a text."""

from __future__ import annotations

from typing import Callable

from ..messages import Rejection, check_text
from .entity import Entity, MAX_COMMAND, press


class Message(Entity):
    """The "Message" notify entity: notify.send_message sends a hug carrying the
    message as its text, under the rules for a message's `text`. A message that
    breaks them is not sent: the reason is logged and fired as a `refused` hug
    event."""

    component, key, name, icon, commands = "notify", "message", "Message", \
        "mdi:message-text", True
    stateful = False

    def command(self, payload: bytes, snapshot: Callable[[], dict]) -> None:
        try:
            if len(payload) > MAX_COMMAND:
                raise Rejection(f"the message is {len(payload)} bytes; at most "
                                f"{MAX_COMMAND}")
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError:
                raise Rejection("the message is not UTF-8 text") from None
            check_text(text)
        except Rejection as why:
            if self.hug_event is not None:
                self.hug_event("refused", reason=f"message not sent: {why}")
            raise
        press(self.hugs, text=text or None)
