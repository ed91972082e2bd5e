"""The light: the pillow's LEDs, on, off, brightness and colour, both ways."""

from __future__ import annotations

import json
import re
from typing import Callable

from ..messages import Rejection
from .entity import Entity, json_object, short


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
        command = json_object(payload)
        state = command.get("state")
        if state not in ("ON", "OFF"):
            raise Rejection(f"state must be \"ON\" or \"OFF\", not {short(state)}")
        if state == "OFF":
            self.controls.off()  # what plays ends; the next message plays as usual
            return
        dimmer = None
        if "brightness" in command:
            b = command["brightness"]
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 <= b <= 255:
                raise Rejection(f"brightness must be 0..255, not {short(b)}")
            dimmer = b / 255
        play = {}
        if "effect" in command:
            if not isinstance(command["effect"], str):
                raise Rejection(
                    f"effect must be a scene name, not {short(command['effect'])}")
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


def _dimmer(snapshot: dict) -> float:
    """The LEDs' dimmer as a share of the ceiling, 0..1, from the snapshot."""
    leds = snapshot.get("leds") or {}
    level = leds.get("level", leds.get("brightness")) or 0.0
    ceiling = leds.get("ceiling") or 1.0
    return min(max(float(level) / float(ceiling), 0.0), 1.0)


def _hex_color(color) -> str:
    if not isinstance(color, dict):
        raise Rejection(f"color must be an object with r, g and b, not {short(color)}")
    channels = [color.get(k) for k in "rgb"]
    if not all(isinstance(c, (int, float)) and not isinstance(c, bool) and 0 <= c <= 255
               for c in channels):
        raise Rejection("color's r, g and b must each be 0..255")
    return "#" + "".join(f"{round(c):02x}" for c in channels)
