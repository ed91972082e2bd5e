"""A press: the hug button and POST /api/hug play the hug here and have the conversation send it."""

from __future__ import annotations

import logging
import uuid
from typing import Callable

from .conversation import Conversation
from .outbox import HugNotKept

log = logging.getLogger(__name__)


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
                text: str | None = None) -> str:
        """Play the press here and send the hug event (to every partner, or only
        to the partner pillow *to*, with *text* if given); returns the event's id."""
        self.conversation.queues_for(to)  # an unknown partner plays nothing
        self.presses += 1
        # The press's history row has the event's id: the partners' receipts name it
        # ("of"), and the page shows "delivered" on that row.
        ident = str(uuid.uuid4())
        try:
            self._play({"scene": self.scene, "id": ident}, source)
        except Exception as err:  # the event still goes: the hug was felt
            log.warning("could not play the %r scene: %s", self.scene, err)
        return self.conversation.press(source, to=to, text=text, ident=ident)["id"]

    def seen(self) -> None:
        self.conversation.seen()


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