"""The entities Home Assistant sees, in the order they are published (ENTITIES), built for one pillow."""

from __future__ import annotations

from .binary_sensor import QueueOnline
from .button import SendHug, SendHugTo
from .device_trigger import HugDelivered, HugReceived, HugReturned
from .entity import Entity
from .event import HugEvent
from .light import Light
from .notify import Message
from .sensor import HugsWaiting, LastDelivered, LastSender, LedCurrent
from .switch import QuietSwitch


# The device's entities, in the order Home Assistant lists them: a new entity is a
# class in its platform's module and its name here. A class with per_partner is made
# once per partner.
ENTITIES = (Light, HugEvent, LastSender, QuietSwitch, SendHug, SendHugTo, Message,
            HugReceived, HugReturned, HugDelivered, QueueOnline, HugsWaiting,
            LedCurrent, LastDelivered)


def build(topic: str, partners: list[str], **parts) -> list[Entity]:
    """One of each entity in ENTITIES, and of each per-partner one per partner."""
    made: list[Entity] = []
    for cls in ENTITIES:
        if cls.per_partner:
            made += [cls(topic, partner=partner, **parts) for partner in partners]
        else:
            made.append(cls(topic, **parts))
    return made


