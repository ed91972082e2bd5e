"""The pillow as one Home Assistant device: its entities' discovery, states and commands."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from typing import Callable

from ..messages import Rejection
from .entity import Entity

log = logging.getLogger(__name__)

MODEL = "Huggable Cloud Pillow"
MANUFACTURER = "pillowd"    # the project's name
# [mqtt] discovery: one device config with its components (Home Assistant
# 2024.12 and later), or one config per entity (before 2024.12).
FORMS = ("device", "entities")
# A malformed command is logged at most this often, with how many were hushed.
LOG_EVERY_SECONDS = 10.0


def slug(text: str) -> str:
    """*text* as one MQTT topic level and Home Assistant object id."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "pillow"


class Device:
    """What Home Assistant sees of the pillow, and what it may ask of it.

    Knows nothing of the connection: the transport calls connected() and
    message() as they come, and publish_pending(publish) when woken, all on its
    one thread. Home Assistant's own ``<prefix>/status`` saying ``online`` (it
    restarted) has every config and state published again.
    """

    def __init__(self, *, pillow_name: str, version: str, page_url: str,
                 discovery_prefix: str, topic: str, entities: list[Entity],
                 snapshot: Callable[[], dict], published=None,
                 discovery: str = "device", hw_version: str = "mock"):
        if discovery not in FORMS:
            raise ValueError(f"discovery must be one of {', '.join(FORMS)}, "
                             f"not {discovery!r}")
        self.pillow_name, self.version, self.page_url = pillow_name, version, page_url
        self.form, self.hw_version = discovery, hw_version
        self.node = slug(pillow_name)
        self.prefix = discovery_prefix.strip("/")
        self.topic = topic
        self.entities = list(entities)
        self.snapshot = snapshot
        self.published = published      # what earlier runs published (published.py)
        self.availability_topic = f"{topic}/availability"
        self.status_topic = f"{self.prefix}/status"
        self.commands = 0
        self.ignored = 0
        self._by_command = {e.command_topic: e for e in self.entities if e.command_topic}
        self._announce = False          # (re)publish discovery, availability, states
        self._sent: dict[str, str] = {}  # retained state topic -> payload
        self._hush = _Hush()

    @property
    def subscriptions(self) -> list[str]:
        return [*self._by_command, self.status_topic]

    @property
    def retained(self) -> list[str]:
        """Every retained topic it publishes: emptied, Home Assistant removes the device."""
        return [*self.discovery(), self.availability_topic,
                *(topic for entity in self.entities for topic in entity.retained)]

    @property
    def components(self) -> dict[str, str]:
        """Each entity's (and device trigger's) object id and platform."""
        return {e.key: e.component for e in self.entities}

    def discovery(self, gone: dict[str, str] | None = None) -> dict[str, dict]:
        """Home Assistant's discovery configs, by their (retained) topic: one
        device config with every component (``discovery = "device"``), or one
        per entity. *gone*: components an earlier run announced and this one
        has not (a partner taken out), which the device config removes."""
        device = {"identifiers": [self.pillow_name], "name": self.pillow_name,
                  "manufacturer": MANUFACTURER, "model": MODEL,
                  "sw_version": self.version, "hw_version": self.hw_version}
        origin = {"name": "pillowd", "sw_version": self.version}
        if self.page_url:
            device["configuration_url"] = self.page_url
            # The pillow's own page, where its owner starts (no public project site).
            origin["support_url"] = self.page_url
        available = {"availability_topic": self.availability_topic,
                     "payload_available": "online", "payload_not_available": "offline"}
        if self.form == "device":
            components = {key: {"p": platform} for key, platform in (gone or {}).items()}
            for e in self.entities:
                component = {"p": e.component, **e.config()}
                if e.entity:
                    component["unique_id"] = f"{self.node}_{e.key}"
                components[e.key] = component
            return {self.device_topic: {"dev": device, "o": origin, **available,
                                        "cmps": components}}
        configs = {}
        for e in self.entities:
            config = {"device": device, "origin": origin, **e.legacy_config()}
            if e.entity:
                config.update(available, unique_id=f"{self.node}_{e.key}")
            configs[f"{self.prefix}/{e.component}/{self.node}/{e.key}/config"] = config
        return configs

    @property
    def device_topic(self) -> str:
        return f"{self.prefix}/device/{self.node}/config"

    # -- the transport's calls (its thread) ---------------------------------------

    def connected(self) -> None:
        self._announce = True
        for entity in self.entities:
            entity.forget()

    def message(self, topic: str, payload: bytes) -> None:
        if topic == self.status_topic:
            if payload == b"online":  # Home Assistant (re)started
                self._announce = True
            return
        entity = self._by_command.get(topic)
        if entity is None:
            return
        try:
            entity.command(payload, self.snapshot)
            self.commands += 1
        except Rejection as why:
            self.ignored += 1
            self._hush.warn("mqtt: ignored a command on %s: %s", topic, why)
        except Exception:  # a bug must not end the MQTT loop, nor flood the log
            self.ignored += 1
            self._hush.warn("mqtt: a command on %s failed", topic, exc_info=True)

    def publish_pending(self, publish) -> None:
        """Publish what changed: everything after a (re)announce, else the states
        that differ from the last ones sent, then the events waiting."""
        if self._announce:
            self._announce = False
            retained = self.retained
            gone = {}
            if self.published is not None:
                # The other form's configs (discovery switched), an old name's:
                # emptied before the new ones, so Home Assistant never shows the
                # pillow twice nor refuses a unique_id the old config still holds.
                for topic in self.published.stale(retained):
                    publish(topic, "", retain=True)
                gone = self.published.gone(self.components)
            for topic, config in self.discovery(gone).items():
                publish(topic, json.dumps(config), retain=True)
            publish(self.availability_topic, "online", retain=True)
            self._sent.clear()  # Home Assistant gets every state again
            if self.published is not None:
                self.published.remember(retained, self.components)
        snapshot = self.snapshot()
        for entity in self.entities:
            for topic, payload in entity.states(snapshot).items():
                if payload is not None and self._sent.get(topic) != payload:
                    publish(topic, payload, retain=True)
                    self._sent[topic] = payload
            for payload in entity.events():
                publish(entity.state_topic, payload, retain=False)


class _Hush:
    """Logs a repeated complaint at most every LOG_EVERY_SECONDS, counting the rest."""

    def __init__(self, every: float = LOG_EVERY_SECONDS, clock=time.monotonic):
        self.every, self.clock = every, clock
        self.last = -every
        self.hushed = 0
        self._lock = threading.Lock()

    def warn(self, message: str, *args, exc_info: bool = False) -> None:
        with self._lock:
            now = self.clock()
            if now - self.last < self.every:
                self.hushed += 1
                return
            hushed, self.hushed, self.last = self.hushed, 0, now
        more = f" ({hushed} more since the last one)" if hushed else ""
        log.warning(message + more, *args, exc_info=exc_info)
