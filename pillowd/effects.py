"""The light effects: pure functions from time and parameters to a frame."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from .errors import PillowError

Frame = np.ndarray  # (count, 3) float32 in 0..1, linear RGB before brightness/gamma


class EffectParamError(PillowError, ValueError):
    """An effect parameter is unknown, of the wrong type or out of range."""

    def __init__(self, key: str, why: str):
        self.key = key
        self.why = why
        super().__init__(f"{key}: {why}")


_HEX = re.compile(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})")


def parse_color(text: str) -> tuple[float, float, float]:
    """(r, g, b) in 0..1 from "#rrggbb", "rrggbb" or "#rgb"."""
    m = _HEX.fullmatch(text.strip()) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"colour must be hex like '#ff6ec7', not {text!r}")
    digits = m.group(1)
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return tuple(int(digits[i:i + 2], 16) / 255 for i in (0, 2, 4))


@dataclass(frozen=True)
class Param:
    kind: str  # "color" | "colors" | "number"
    default: object
    min: float | None = None
    max: float | None = None
    doc: str = ""


@dataclass(frozen=True)
class Effect:
    name: str
    fn: Callable[[float, int, Mapping[str, object]], Frame]
    params: Mapping[str, Param] = field(default_factory=dict)
    animated: bool = True

    def resolve(self, raw: Mapping[str, object]) -> dict:
        """Validated parameters with defaults filled in."""
        out = {}
        for key, value in raw.items():
            if key not in self.params:
                raise EffectParamError(key, f"unknown parameter of effect {self.name!r}")
        for key, param in self.params.items():
            value = raw.get(key, param.default)
            try:
                out[key] = _convert(param, value)
            except ValueError as err:
                raise EffectParamError(key, str(err)) from None
        return out

    def __call__(self, t: float, count: int, params: Mapping) -> Frame:
        return self.fn(t, count, params)


def _convert(param: Param, value):
    if param.kind == "color":
        return parse_color(value)
    if param.kind == "colors":
        if not isinstance(value, (list, tuple)) or not value:
            raise ValueError("must be a non-empty list of colours")
        return tuple(parse_color(v) for v in value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be a number, not {value!r}")
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    if param.min is not None and value < param.min:
        raise ValueError(f"must be at least {param.min}, not {value}")
    if param.max is not None and value > param.max:
        raise ValueError(f"must be at most {param.max}, not {value}")
    return float(value)


def _fill(count: int, rgb) -> Frame:
    return np.broadcast_to(np.asarray(rgb, dtype=np.float32), (count, 3)).copy()


def solid(t, count, p):
    return _fill(count, p["color"])


def breathe(t, count, p):
    # A raised cosine: starts at the floor, full at half a period, smooth both ways.
    phase = (1 - math.cos(2 * math.pi * t / p["period"])) / 2
    level = p["floor"] + (1 - p["floor"]) * phase
    return _fill(count, np.asarray(p["color"], dtype=np.float32) * level)


_COLOR = Param("color", "#ffffff")

EFFECTS: dict[str, Effect] = {
    "solid": Effect("solid", solid, {"color": _COLOR}, animated=False),
    "breathe": Effect("breathe", breathe, {
        "color": _COLOR,
        "period": Param("number", 4.0, 0.1, 60, "seconds per breath"),
        "floor": Param("number", 0.1, 0, 1, "dimmest level, 0..1"),
    }),
}
