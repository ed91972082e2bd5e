"""The hug event: each step of a hug (pressed, sent, received, returned, delivered)."""

from __future__ import annotations

import json
from collections import deque

from .entity import Entity


# The hug event's types (SPEC "Home Assistant"): a press here, a partner's queue
# took our hug, a message from someone played, a partner hugged back, a partner's
# pillow played our hug (its receipt came).
HUG_EVENTS = ("pressed", "sent", "received", "returned", "delivered", "refused")


class HugEvent(Entity):
    """The hug event entity: each step of a hug, with who sent it and its words.

    ``fire()`` may come from any thread; the events wait for the MQTT thread,
    and those noted while offline are dropped at the next connection (an
    automation must not flash the hall light for a hug from an hour ago).
    """

    component, key, name, icon = "event", "hug", "Hug", "mdi:hand-heart"

    def __init__(self, topic: str, **parts):
        super().__init__(topic, **parts)
        self._pending: deque[str] = deque(maxlen=100)

    @property
    def state_topic(self) -> str:
        return f"{self.topic}/hug"

    @property
    def retained(self) -> list[str]:
        return []  # events are not kept by the broker

    def config(self) -> dict:
        return {**super().config(), "event_types": list(HUG_EVENTS)}

    def fire(self, event_type: str, sender: str | None = None,
             text: str | None = None, reason: str | None = None,
             more: dict | None = None) -> None:
        if event_type not in HUG_EVENTS:
            raise ValueError(f"hug event type must be one of {', '.join(HUG_EVENTS)}, "
                             f"not {event_type!r}")
        event = {"event_type": event_type, "from": sender, "text": text}
        if reason is not None:
            event["reason"] = reason
        event.update(more or {})  # a partner's name, its hug's colour, hold, strength
        self._pending.append(json.dumps(event))

    def forget(self) -> None:
        self._pending.clear()

    def events(self) -> list[str]:
        taken = []
        while self._pending:
            taken.append(self._pending.popleft())
        return taken
