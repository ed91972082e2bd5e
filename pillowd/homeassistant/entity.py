"""What every entity shares: its discovery config, state and commands (Entity), and their helpers."""

from __future__ import annotations

import json
import re
from typing import Callable

from ..errors import PillowError
from ..messages import Rejection


# A command bigger than this is not something Home Assistant sends.
MAX_COMMAND = 4096


class Entity:
    """One Home Assistant entity of the pillow's device.

    A subclass says what it is (``component``, ``key``, ``name``, ``icon``), adds
    its own discovery keys in ``config()``, gives its retained states from the
    pillow's snapshot in ``states()``, and, if Home Assistant can command it,
    names ``command_topic`` and handles the payload in ``command()`` (raising
    Rejection for one it cannot use: nothing changes then). Its topics live
    under the device's *topic*, at ``<topic>/<key>/…``.
    """

    component = ""
    key = ""
    name: str | None = None
    icon = ""
    commands = False      # True: it has a command topic, `<topic>/<key>/set`
    stateful = True       # False: no state topic (a button, a notify, a trigger)
    diagnostic = False    # True: entity_category diagnostic (not on the dashboard)
    per_partner = False   # True: one of it per partner pillow, made with *partner*

    def __init__(self, topic: str, *, controls, scenes: list[str], hugs=None,
                 fire: Callable[..., None] | None = None, partner: str | None = None):
        self.topic = topic
        self.controls = controls      # the page's calls (pillow.Controls)
        self.scenes = list(scenes)
        self.hugs = hugs              # hugs.Hugs: a press, to all or to one partner
        self.hug_event = fire         # hug_event(event_type, ..., reason=): fires the hug event
        self.partner = partner

    @property
    def state_topic(self) -> str:
        return f"{self.topic}/{self.key}/state"

    @property
    def command_topic(self) -> str | None:
        return f"{self.topic}/{self.key}/set" if self.commands else None

    @property
    def retained(self) -> list[str]:
        """The state topics it publishes retained (emptied when the device goes)."""
        return [self.state_topic] if self.stateful else []

    @property
    def entity(self) -> bool:
        """An entity of Home Assistant's (with a unique_id), not a device trigger."""
        return True

    def config(self) -> dict:
        """Its discovery config, less what every entity of the device shares."""
        config = {"name": self.name, "icon": self.icon}
        if self.stateful:
            config["state_topic"] = self.state_topic
        if self.command_topic:
            config["command_topic"] = self.command_topic
        if self.diagnostic:
            config["entity_category"] = "diagnostic"
        return config

    def legacy_config(self) -> dict:
        """Its config in the per-entity form, for Home Assistant before 2024.12."""
        return self.config()

    def states(self, snapshot: dict) -> dict[str, str | None]:
        """Its retained state payloads by topic (None: nothing to say yet)."""
        return {}

    def events(self) -> list[str]:
        """Payloads for its state topic that are not kept (taken: sent once)."""
        return []

    def forget(self) -> None:
        """A new connection: drop the events noted while there was none."""

    def command(self, payload: bytes, snapshot: Callable[[], dict]) -> None:
        raise Rejection("this entity takes no commands")


def press(hugs, *, to: str | None = None, text: str | None = None) -> None:
    """A press from Home Assistant (source "mqtt"), as the pillow's button makes."""
    if hugs is None:
        raise Rejection("this pillow cannot send hugs")
    try:
        hugs.pressed("mqtt", to=to, text=text)
    except PillowError as err:  # not kept (disk full), or no such partner
        raise Rejection(str(err)) from None


def object_id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "partner"


def json_object(payload: bytes) -> dict:
    if len(payload) > MAX_COMMAND:
        raise Rejection(f"command is {len(payload)} bytes; at most {MAX_COMMAND}")
    try:
        value = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Rejection("command is not JSON") from None
    if not isinstance(value, dict):
        raise Rejection(f"command must be a JSON object, not {type(value).__name__}")
    return value


def short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
