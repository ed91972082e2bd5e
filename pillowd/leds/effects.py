"""The pillow's light effects: each with its parameters, checked, and its frame function."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

from ..errors import PillowError
from ..messages import parse_color
from .frames import (Color, Frame, breathe, candle, chase, gradient, heartbeat, pulse,
                     rainbow, solid, twinkle, wipe)


__all__ = [
    "Frame", "Param", "Effect", "EFFECTS", "EffectParamError", "parse_color",
]


class EffectParamError(PillowError, ValueError):
    """An effect parameter is unknown, of the wrong type, or out of range."""

    def __init__(self, key: str, why: str):
        super().__init__(f"{key}: {why}")
        self.key = key
        self.why = why


@dataclass(frozen=True)
class Param:
    """One tunable of an effect, as a scene or a message may set it."""

    kind: str                   # "color" | "colors" | "number"
    default: object
    min: float | None = None
    max: float | None = None
    doc: str = ""

    def resolve(self, key: str, value: object) -> object:
        if self.kind == "color":
            return _resolve_color(key, value)
        if self.kind == "colors":
            if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
                raise EffectParamError(key, "expected a non-empty list of colours")
            return [_resolve_color(f"{key}[{i}]", v) for i, v in enumerate(value)]
        # bool is an int to Python, but `period = true` is a typo, not a number
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EffectParamError(key, f"expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise EffectParamError(key, f"expected a finite number, got {value!r}")
        if self.min is not None and value < self.min:
            raise EffectParamError(key, f"{value:g} is below the minimum {self.min:g}")
        if self.max is not None and value > self.max:
            raise EffectParamError(key, f"{value:g} is above the maximum {self.max:g}")
        return value


def _resolve_color(key: str, value: object) -> Color:
    # An already resolved (r, g, b) is accepted so that resolving twice is harmless
    if (isinstance(value, (tuple, list)) and len(value) == 3 and all(
            isinstance(c, (int, float)) and not isinstance(c, bool) and 0 <= c <= 1
            for c in value)):
        return tuple(float(c) for c in value)
    try:
        return parse_color(value)
    except ValueError as exc:
        raise EffectParamError(key, str(exc)) from None


@dataclass(frozen=True)
class Effect:
    """A named effect: its frame function and the parameters it understands."""

    name: str
    fn: Callable[[float, int, Mapping[str, object]], Frame]
    params: Mapping[str, Param]
    # False when the frame never changes with t, so the render loop may skip
    # re-rendering (and re-sending) an unchanged frame
    animated: bool = True
    doc: str = field(default="", compare=False)
    # Seconds after which the frames repeat exactly, from the parameters; None
    # when they never do. The render loop then computes one cycle and replays it.
    cycle: Callable[[Mapping[str, object]], float] | None = field(default=None,
                                                                    compare=False)

    def resolve(self, raw: Mapping[str, object]) -> dict:
        """Return *raw* validated, converted and completed with defaults."""
        for key in raw:
            if key not in self.params:
                known = ", ".join(sorted(self.params)) or "none"
                raise EffectParamError(
                    key, f"not a parameter of {self.name} (it has: {known})")
        return {
            key: param.resolve(key, raw.get(key, param.default))
            for key, param in self.params.items()
        }

    def __call__(self, t: float, count: int, params: Mapping) -> Frame:
        return self.fn(t, count, params)


# Helpers ---------------------------------------------------------------------


# Effects ---------------------------------------------------------------------


# Registry --------------------------------------------------------------------

def _color(default="#ffffff", doc="the colour"):
    return Param("color", default, doc=doc)


def _period(default, doc="seconds per cycle"):
    return Param("number", default, min=0.05, max=3600, doc=doc)


_BACKGROUND = Param("color", "#000000", doc="colour of unlit LEDs")
_SEED = Param("number", 0, min=0, max=2**31 - 1, doc="chooses the random pattern")


def _by_period(p: Mapping) -> float:
    return p["period"]


def _by_speed(p: Mapping) -> float:
    # One cycle per 1/speed seconds; standing still, every frame is the same.
    return 1 / abs(p["speed"]) if p["speed"] else 1.0


def _effects(*effects: Effect) -> dict[str, Effect]:
    return {e.name: e for e in effects}


EFFECTS: dict[str, Effect] = _effects(
    Effect("solid", solid, {"color": _color()}, animated=False,
           doc="every LED one colour"),
    Effect("breathe", breathe, {
        "color": _color(),
        "period": _period(4.0),
        "low": Param("number", 0.0, min=0, max=1, doc="level at the bottom of a breath"),
    }, doc="fades smoothly up and down", cycle=_by_period),
    Effect("pulse", pulse, {
        "color": _color(),
        "period": _period(1.0),
        "decay": Param("number", 5.0, min=0.1, max=100, doc="how fast each pulse fades"),
    }, doc="flashes on and fades, once a period", cycle=_by_period),
    Effect("heartbeat", heartbeat, {
        "color": _color(),
        "period": _period(1.0, doc="seconds per heartbeat (60/bpm)"),
    }, doc="a double beat, lub-dub", cycle=_by_period),
    Effect("rainbow", rainbow, {
        "speed": Param("number", 0.2, min=-10, max=10, doc="hue cycles per second"),
        "spread": Param("number", 1.0, min=0, max=20, doc="rainbows along the strip"),
        "saturation": Param("number", 1.0, min=0, max=1, doc="0 white .. 1 vivid"),
    }, doc="moving rainbow along the strip", cycle=_by_speed),
    Effect("wipe", wipe, {
        "color": _color(),
        "background": _BACKGROUND,
        "period": _period(2.0, doc="seconds to fill the strip"),
    }, doc="fills the strip LED by LED", cycle=_by_period),
    Effect("chase", chase, {
        "color": _color(),
        "background": _BACKGROUND,
        "speed": Param("number", 10.0, min=-1000, max=1000, doc="LEDs per second"),
        "spacing": Param("number", 3, min=2, max=100, doc="one LED lit in this many"),
    }, doc="theatre-marquee chase",
       cycle=lambda p: p["spacing"] / abs(p["speed"]) if p["speed"] else 1.0),
    Effect("twinkle", twinkle, {
        "color": _color(),
        "background": _BACKGROUND,
        "density": Param("number", 0.3, min=0, max=1, doc="share of LEDs twinkling"),
        "period": _period(1.5, doc="seconds per twinkle"),
        "seed": _SEED,
    }, doc="LEDs sparkle at random, reproducibly"),
    # A white default would be a cold candle; warm is what anyone expects
    Effect("candle", candle, {
        "color": _color("#ff9329", doc="the flame's colour at full"),
        "flicker": Param("number", 0.5, min=0, max=1, doc="depth of the flicker"),
        "speed": Param("number", 8.0, min=0.1, max=100, doc="flame changes per second"),
        "seed": _SEED,
    }, doc="flickering flame"),
    Effect("gradient", gradient, {
        "colors": Param("colors", ["#ff6ec7", "#6ec7ff"], doc="colours along the strip"),
        "speed": Param("number", 0.0, min=-10, max=10, doc="scrolls per second, 0 still"),
    }, doc="colours blended along the strip", cycle=_by_speed),
)
EFFECTS["fire"] = Effect("fire", candle, EFFECTS["candle"].params, doc="alias of candle",
                         cycle=EFFECTS["candle"].cycle)
