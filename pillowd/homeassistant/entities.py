"""The pillow's Home Assistant entities: each one's discovery config, state and commands."""

from __future__ import annotations

import json
import re
from collections import deque
from typing import Callable

from ..errors import PillowError
from ..messages import Rejection, check_text

# A command bigger than this is not something Home Assistant sends.
MAX_COMMAND = 4096
# The hug event's types (SPEC "Home Assistant"): a press here, a partner's queue
# took our hug, a message from someone played, a partner hugged back, a partner's
# pillow played our hug (its receipt came).
HUG_EVENTS = ("pressed", "sent", "received", "returned", "delivered", "refused")
# `refused`: a message Home Assistant asked to send broke the text rules (its
# `reason` says which); nothing was sent.
# The hug event types offered as MQTT device triggers ("hug received", ...).
TRIGGERS = ("received", "returned", "delivered")
# What Home Assistant's button sends on a press (its default payload_press).
PRESS = b"PRESS"


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


class Light(Entity):
    """The LEDs as a JSON-schema light: on/off, brightness, colour; effects are scenes.

    Home Assistant's brightness 0..255 is the dimmer as a share of ``[leds]
    brightness`` (the ceiling): 255 is the ceiling, and what is set is what is
    shown back. Quiet hours dim the LEDs further without moving it (the quiet
    switch says so).
    """

    component, key, name, icon, commands = "light", "light", None, "mdi:cloud", True

    def __init__(self, topic: str, **parts):
        super().__init__(topic, **parts)
        self._restore = 1.0        # the dimmer for an ON after an OFF

    def config(self) -> dict:
        # color_mode: Home Assistant before 2024.4 refuses supported_color_modes
        # without it; 2025.3 and later log an ERROR for it. The device's
        # per-entity form (discovery = "entities", for older ones) adds it.
        return {**super().config(), "schema": "json",
                "brightness": True, "brightness_scale": 255,
                "supported_color_modes": ["rgb"],
                "effect": True, "effect_list": self.scenes}

    def legacy_config(self) -> dict:
        """The config for Home Assistant before 2024.12 (per-entity discovery)."""
        return {**self.config(), "color_mode": True}

    def states(self, snapshot: dict) -> dict[str, str | None]:
        dimmer = _dimmer(snapshot)
        lit = dimmer > 0 and snapshot.get("lights") != "off"
        light = {"state": "ON" if lit else "OFF",
                 "brightness": round(dimmer * 255), "effect": snapshot.get("scene")}
        color = snapshot.get("color")
        if isinstance(color, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", color):
            light["color_mode"] = "rgb"
            light["color"] = {"r": int(color[1:3], 16), "g": int(color[3:5], 16),
                              "b": int(color[5:7], 16)}
        return {self.state_topic: json.dumps(light, sort_keys=True)}

    def command(self, payload: bytes, snapshot: Callable[[], dict]) -> None:
        command = _json_object(payload)
        state = command.get("state")
        if state not in ("ON", "OFF"):
            raise Rejection(f"state must be \"ON\" or \"OFF\", not {_short(state)}")
        if state == "OFF":
            self.controls.off()  # what plays ends; the next message plays as usual
            return
        dimmer = None
        if "brightness" in command:
            b = command["brightness"]
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 <= b <= 255:
                raise Rejection(f"brightness must be 0..255, not {_short(b)}")
            dimmer = b / 255
        play = {}
        if "effect" in command:
            if not isinstance(command["effect"], str):
                raise Rejection(
                    f"effect must be a scene name, not {_short(command['effect'])}")
            play["scene"] = command["effect"]
        if "color" in command:
            play["color"] = _hex_color(command["color"])
        now = snapshot()
        if play:
            if "scene" not in play:  # a colour alone recolours what plays now
                play["scene"] = now.get("scene") or "idle"
            self.controls.play(play, "mqtt")  # raises Rejection: nothing changed
        if dimmer is None and _dimmer(now) <= 0:
            dimmer = self._restore  # ON after OFF lights it as it was
        if dimmer is not None and dimmer > 0:
            self._restore = dimmer
        if dimmer is not None:
            ceiling = float((now.get("leds") or {}).get("ceiling") or 1.0)
            self.controls.set_brightness(dimmer * ceiling)
        if not play:
            self.controls.on()  # after an OFF: lit again, at the brightness set


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


class LastSender(Entity):
    """A sensor with who sent the last message that played."""

    component, key, name, icon = "sensor", "last_sender", "Last message from", \
        "mdi:account-heart"

    def states(self, snapshot: dict) -> dict[str, str | None]:
        sender = next((item.get("from") for item in snapshot.get("recent") or ()
                       if item.get("outcome") == "applied" and item.get("from")), None)
        message = snapshot.get("message") or {}
        return {self.state_topic: message.get("from") or sender}


class QuietSwitch(Entity):
    """Quiet now (ON) or not, as the status page's switch."""

    component, key, name, icon, commands = "switch", "quiet", "Quiet hours", \
        "mdi:sleep", True

    def config(self) -> dict:
        return {**super().config(), "payload_on": "ON", "payload_off": "OFF"}

    def states(self, snapshot: dict) -> dict[str, str | None]:
        return {self.state_topic: "ON" if snapshot.get("quiet") else "OFF"}

    def command(self, payload: bytes, snapshot: Callable[[], dict]) -> None:
        if payload not in (b"ON", b"OFF"):
            raise Rejection(f"the quiet switch takes ON or OFF, not {_short(payload)}")
        self.controls.set_quiet(payload == b"ON")


class SendHug(Entity):
    """The "Hug" button: a press, exactly as the pillow's own button (signed, with
    reply_to, last_sent and receipts), to every partner."""

    component, key, name, icon, commands = "button", "send", "Hug", "mdi:hand-heart", True
    stateful = False

    def config(self) -> dict:
        return {**super().config(), "payload_press": PRESS.decode()}

    def command(self, payload: bytes, snapshot: Callable[[], dict]) -> None:
        if payload != PRESS:
            raise Rejection(f"the hug button takes {PRESS.decode()}, not {_short(payload)}")
        _press(self.hugs, to=self.partner)


class SendHugTo(SendHug):
    """"Hug bob": a press that goes to one partner only (one button per partner)."""

    per_partner = True

    def __init__(self, topic: str, *, partner: str, **parts):
        super().__init__(topic, partner=partner, **parts)
        self.key = f"send_{_object_id(partner)}"
        self.name = f"Hug {partner}"


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
        _press(self.hugs, text=text or None)


class QueueOnline(Entity):
    """Whether the pillow's queue answers (a connectivity binary_sensor)."""

    component, key, name, icon = "binary_sensor", "queue_online", "Queue", \
        "mdi:cloud-check"
    diagnostic = True

    def config(self) -> dict:
        return {**super().config(), "device_class": "connectivity",
                "payload_on": "ON", "payload_off": "OFF"}

    def states(self, snapshot: dict) -> dict[str, str | None]:
        online = (snapshot.get("queue") or {}).get("online")
        return {self.state_topic: None if online is None else ("ON" if online else "OFF")}


class HugsWaiting(Entity):
    """Hug events and receipts waiting to leave for a partner's queue."""

    component, key, name, icon = "sensor", "hugs_waiting", "Hugs waiting to leave", \
        "mdi:tray-full"
    diagnostic = True

    def config(self) -> dict:
        return {**super().config(), "state_class": "measurement"}

    def states(self, snapshot: dict) -> dict[str, str | None]:
        pending = (snapshot.get("outbox") or {}).get("pending", 0)
        return {self.state_topic: str(int(pending or 0))}


class LedCurrent(Entity):
    """The LEDs' estimated current, in mA (what the power limit works with)."""

    component, key, name, icon = "sensor", "led_current", "LED current", "mdi:current-dc"
    diagnostic = True

    def config(self) -> dict:
        return {**super().config(), "device_class": "current",
                "unit_of_measurement": "mA", "state_class": "measurement"}

    def states(self, snapshot: dict) -> dict[str, str | None]:
        milliamps = (snapshot.get("leds") or {}).get("milliamps")
        if not isinstance(milliamps, (int, float)) or isinstance(milliamps, bool):
            return {self.state_topic: None}
        return {self.state_topic: str(round(milliamps))}


class LastDelivered(Entity):
    """When the last hug to one partner played there (its receipt), a timestamp."""

    component, icon = "sensor", "mdi:heart-circle"
    diagnostic = True
    per_partner = True

    def __init__(self, topic: str, *, partner: str, **parts):
        super().__init__(topic, partner=partner, **parts)
        self.key = f"delivered_{_object_id(partner)}"
        self.name = f"Last hug delivered to {partner}"
        self._last: str | None = None  # kept while a newer hug is not delivered yet

    def config(self) -> dict:
        return {**super().config(), "device_class": "timestamp"}

    def states(self, snapshot: dict) -> dict[str, str | None]:
        partners = (snapshot.get("last_sent") or {}).get("partners") or {}
        delivered = (partners.get(self.partner) or {}).get("delivered")
        if isinstance(delivered, str) and delivered:
            self._last = delivered
        return {self.state_topic: self._last}


class HugTrigger(Entity):
    """An MQTT device trigger ("hug received" in the automation editor, under the
    pillow) on the hug event's topic, for one event type."""

    component, icon = "device_automation", ""
    stateful = False
    kind = ""

    @property
    def key(self) -> str:
        return f"hug_{self.kind}"

    @property
    def entity(self) -> bool:
        return False

    def config(self) -> dict:
        return {"automation_type": "trigger", "topic": f"{self.topic}/hug",
                "type": self.kind, "subtype": "hug",
                "value_template": "{{ value_json.event_type }}", "payload": self.kind}


class HugReceived(HugTrigger):
    kind = "received"


class HugReturned(HugTrigger):
    kind = "returned"


class HugDelivered(HugTrigger):
    kind = "delivered"


# The device's entities, in the order Home Assistant lists them: a new entity is a
# class above and its name here. A class with per_partner is made once per partner.
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


def _press(hugs, *, to: str | None = None, text: str | None = None) -> None:
    """A press from Home Assistant (source "mqtt"), as the pillow's button makes."""
    if hugs is None:
        raise Rejection("this pillow cannot send hugs")
    try:
        hugs.pressed("mqtt", to=to, text=text)
    except PillowError as err:  # not kept (disk full), or no such partner
        raise Rejection(str(err)) from None


def _object_id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "partner"


def _dimmer(snapshot: dict) -> float:
    """The LEDs' dimmer as a share of the ceiling, 0..1, from the snapshot."""
    leds = snapshot.get("leds") or {}
    level = leds.get("level", leds.get("brightness")) or 0.0
    ceiling = leds.get("ceiling") or 1.0
    return min(max(float(level) / float(ceiling), 0.0), 1.0)


def _json_object(payload: bytes) -> dict:
    if len(payload) > MAX_COMMAND:
        raise Rejection(f"command is {len(payload)} bytes; at most {MAX_COMMAND}")
    try:
        value = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Rejection("command is not JSON") from None
    if not isinstance(value, dict):
        raise Rejection(f"command must be a JSON object, not {type(value).__name__}")
    return value


def _hex_color(color) -> str:
    if not isinstance(color, dict):
        raise Rejection(f"color must be an object with r, g and b, not {_short(color)}")
    channels = [color.get(k) for k in "rgb"]
    if not all(isinstance(c, (int, float)) and not isinstance(c, bool) and 0 <= c <= 255
               for c in channels):
        raise Rejection("color's r, g and b must each be 0..255")
    return "#" + "".join(f"{round(c):02x}" for c in channels)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
