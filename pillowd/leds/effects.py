"""The pillow's light effects: pure functions from time and parameters to a frame."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Mapping

import numpy as np

from ..errors import PillowError
from ..messages import parse_color

#: shape (count, 3), float32, 0..1, linear RGB, before brightness and gamma
Frame = np.ndarray
Color = tuple[float, float, float]

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

@lru_cache(maxsize=16)
def _positions(count: int) -> np.ndarray:
    # Cached because every moving effect needs it every frame; read-only so the
    # cache cannot be changed by a caller and effects stay pure
    pos = np.arange(count, dtype=np.float32) / max(count, 1)
    pos.flags.writeable = False
    return pos


def _fill(count: int, color: Color, level: float = 1.0) -> Frame:
    frame = np.empty((count, 3), dtype=np.float32)
    # Assigning a float32 row broadcasts in C; a tuple would be converted per call
    frame[:] = np.multiply(color, level, dtype=np.float32)
    return frame


def _mix(mask_or_level: np.ndarray, color: Color, background: Color) -> Frame:
    """Per-LED blend from *background* (0) to *color* (1)."""
    fg = _rgb(color)
    bg = _rgb(background)
    level = np.asarray(mask_or_level, dtype=np.float32)[:, None]
    return bg + level * (fg - bg)


def _hash(count: int, seed: float, step: np.ndarray | int) -> np.ndarray:
    """Per-LED pseudo-random numbers in [0, 1) for an integer time *step*.

    A counter-based hash rather than an RNG: the value for (seed, LED, step) is
    the same however the frames before it were rendered, so any t reproduces.
    """
    key = (int(seed) * 0xC2B2AE3D) & 0xFFFFFFFF
    if isinstance(step, np.ndarray):
        x = (step.astype(np.int64) & 0xFFFFFFFF).astype(np.uint32)
        x *= np.uint32(0x85EBCA77)
        x ^= _spread(count)
        x ^= np.uint32(key)
    else:
        # A scalar step folds into one constant: one array operation, not three
        x = _spread(count) ^ np.uint32((int(step) * 0x85EBCA77 ^ key) & 0xFFFFFFFF)
    # murmur3's finaliser: every input bit affects every output bit
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x85EBCA6B)
    x ^= x >> np.uint32(13)
    x *= np.uint32(0xC2B2AE35)
    x ^= x >> np.uint32(16)
    x >>= np.uint32(8)
    out = x.astype(np.float32)
    out *= np.float32(1 / (1 << 24))
    return out


@lru_cache(maxsize=16)
def _spread(count: int) -> np.ndarray:
    x = np.arange(count, dtype=np.uint32) * np.uint32(0x9E3779B1)
    x.flags.writeable = False
    return x


@lru_cache(maxsize=64)
def _noise(count: int, seed: float, step: int) -> np.ndarray:
    """_hash for one integer step, cached (read-only).

    Twinkle and candle need the same step's values for every frame until the
    next step, and _hash is a dozen array operations. A cache cannot make
    them impure: the values are a function of the key alone.
    """
    values = _hash(count, seed, step)
    values.flags.writeable = False
    return values


@lru_cache(maxsize=32)
def _rgb_cached(color: tuple) -> np.ndarray:
    rgb = np.asarray(color, dtype=np.float32)
    rgb.flags.writeable = False
    return rgb


def _rgb(color) -> np.ndarray:
    """*color* as a float32 array, converted once per colour rather than per frame."""
    try:
        return _rgb_cached(color)
    except TypeError:       # a list from a caller that did not resolve
        return np.asarray(color, dtype=np.float32)


def _phase(t: float, period: float) -> float:
    return (t / period) % 1.0


# Effects ---------------------------------------------------------------------

def solid(t: float, count: int, p: Mapping) -> Frame:
    return _fill(count, p["color"])


def breathe(t: float, count: int, p: Mapping) -> Frame:
    # Raised cosine: starts at `low` for t=0, full at half a period; eases at
    # both ends as breathing does
    wave = 0.5 - 0.5 * math.cos(2 * math.pi * _phase(t, p["period"]))
    return _fill(count, p["color"], p["low"] + (1 - p["low"]) * wave)


def pulse(t: float, count: int, p: Mapping) -> Frame:
    # Instant attack, exponential decay: reads as a "ping", unlike breathe
    return _fill(count, p["color"], math.exp(-p["decay"] * _phase(t, p["period"])))


def heartbeat(t: float, count: int, p: Mapping) -> Frame:
    # "lub-dub": a strong beat at the start of each period and a weaker one
    # a quarter-period later, each decaying fast
    phase = _phase(t, p["period"])
    level = math.exp(-12 * phase)
    if phase >= 0.25:
        level = max(level, 0.6 * math.exp(-12 * (phase - 0.25)))
    return _fill(count, p["color"], level)


_WHEEL_SIZE = 4096


@lru_cache(maxsize=8)
def _wheel(saturation: float) -> np.ndarray:
    """Fully bright colours (HSV, V=1) for _WHEEL_SIZE hues round the circle.

    A table because a lookup is one array operation where the formula is six;
    4096 steps put every channel within half an 8-bit step of the exact value.
    """
    h6 = np.arange(_WHEEL_SIZE, dtype=np.float64)[:, None] * (6 / _WHEEL_SIZE)
    rgb = np.clip(np.abs(h6 - [3, 2, 4]) * [1, -1, -1] + [-1, 2, 2], 0, 1)
    wheel = (1 - saturation * (1 - rgb)).astype(np.float32)
    wheel.flags.writeable = False
    return wheel


@lru_cache(maxsize=16)
def _hues(count: int, spread: float) -> np.ndarray:
    # Each LED's hue at t=0, in wheel steps: the same every frame
    hue = _positions(count) * np.float32(spread * _WHEEL_SIZE)
    hue.flags.writeable = False
    return hue


def rainbow(t: float, count: int, p: Mapping) -> Frame:
    hue = _hues(count, p["spread"]) + np.float32((t * p["speed"]) % 1.0 * _WHEEL_SIZE)
    # intp, as take indexes with: a narrower index would be converted per call
    # (hue is never negative: Python's % keeps the shift in [0, 1))
    index = hue.astype(np.intp)
    # The wheel's size is a power of two: masking wraps the hue round
    index &= _WHEEL_SIZE - 1
    # The method skips np.take's wrapper; after the mask, no index can be out
    # of range, so mode="clip" only skips a bounds check
    return _wheel(p["saturation"]).take(index, axis=0, mode="clip")


def wipe(t: float, count: int, p: Mapping) -> Frame:
    # The strip fills one LED at a time over a period, then starts again dark
    lit = int(_phase(t, p["period"]) * (count + 1))
    frame = np.empty((count, 3), dtype=np.float32)
    frame[:lit] = p["color"]
    frame[lit:] = p["background"]
    return frame


def chase(t: float, count: int, p: Mapping) -> Frame:
    # Theatre-marquee chase: every `spacing`-th LED lit, stepping `speed` LEDs/s
    spacing = int(p["spacing"])
    shift = math.floor(t * p["speed"]) % spacing
    frame = np.empty((count, 3), dtype=np.float32)
    frame[:] = p["background"]
    frame[shift::spacing] = p["color"]
    return frame


@lru_cache(maxsize=16)
def _twinkle_offsets(count: int, seed: float) -> np.ndarray:
    # float64: t grows for days and float32 would lose the fraction
    offsets = _hash(count, seed, -1).astype(np.float64)
    offsets.flags.writeable = False
    return offsets


@lru_cache(maxsize=32)
def _twinkle_lit(count: int, seed: float, step: int, density: float) -> np.ndarray:
    lit = _hash(count, seed, step) < np.float32(density)
    lit.flags.writeable = False
    return lit


# Below this many periods, offset + t/period (offset in [0, 1)) cannot round
# up to a second step boundary, so each LED is in step floor(t/period) or the
# next; beyond it (years of uptime) twinkle takes the general path
_TWINKLE_FAST = 2.0 ** 26


def twinkle(t: float, count: int, p: Mapping) -> Frame:
    # Each LED lives in its own time steps of one `period`, offset by a random
    # phase so they don't all change together; in each step it lights (and
    # fades up and down) with probability `density`
    x = t / p["period"]
    local = _twinkle_offsets(count, p["seed"]) + x
    step = np.floor(local)
    if abs(x) < _TWINKLE_FAST:
        # Every LED's step is one of two, so whether it is lit comes from two
        # cached masks instead of hashing every LED's step every frame
        base = math.floor(x)
        lit = np.where(step > base, _twinkle_lit(count, p["seed"], base + 1, p["density"]),
                       _twinkle_lit(count, p["seed"], base, p["density"]))
    else:
        lit = _hash(count, p["seed"], step.astype(np.int64)) < np.float32(p["density"])
    level = np.sin(np.float32(math.pi) * (local - step).astype(np.float32))
    level *= lit
    return _mix(level, p["color"], p["background"])


@lru_cache(maxsize=16)
def _candle_step(count: int, seed: float, step: int) -> tuple[np.ndarray, np.ndarray]:
    # The noise at a step and the rise to the next: the same all step long
    a = _noise(count, seed, step)
    rise = _noise(count, seed, step + 1) - a
    rise.flags.writeable = False
    return a, rise


def candle(t: float, count: int, p: Mapping) -> Frame:
    # Value noise: random levels at integer steps of `speed` per second, eased
    # between, so the flame wavers rather than strobes
    x = t * p["speed"]
    step = math.floor(x)
    a, rise = _candle_step(count, p["seed"], step)
    f = x - step
    f = f * f * (3 - 2 * f)
    # In place, in the order a + f * (b - a), then 1 - flicker * noise
    level = np.multiply(rise, np.float32(f))
    level += a
    level *= np.float32(p["flicker"])
    np.subtract(np.float32(1), level, out=level)
    # Green and blue fall faster than red as the flame dims: it reddens, as a
    # real flame does
    frame = np.empty((count, 3), dtype=np.float32)
    frame[:, 0] = level
    np.multiply(level, level, out=frame[:, 1])
    np.multiply(frame[:, 1], level, out=frame[:, 2])
    frame *= _rgb(p["color"])
    return frame


@lru_cache(maxsize=16)
def _gradient_stops(colors: tuple, moving: bool) -> tuple[np.ndarray, np.ndarray]:
    rgb = np.asarray(colors, dtype=np.float32)
    if moving:
        # Moving: the stops wrap round (last back to first) so the scroll is seamless
        rgb = np.concatenate([rgb, rgb[:1]])
    stops = np.linspace(0, 1, len(rgb), dtype=np.float32)
    # Per channel and contiguous, as np.interp wants them
    channels = tuple(np.ascontiguousarray(rgb[:, c]) for c in range(3))
    return stops, channels


def _gradient_frame(x: np.ndarray, stops: np.ndarray, channels: tuple) -> Frame:
    frame = np.empty((len(x), 3), dtype=np.float32)
    for c in range(3):
        frame[:, c] = np.interp(x, stops, channels[c])
    return frame


@lru_cache(maxsize=16)
def _still_gradient(count: int, colors: tuple) -> Frame:
    # Still: first colour at the first LED, last colour at the last
    stops, channels = _gradient_stops(colors, False)
    frame = _gradient_frame(np.linspace(0, 1, count, dtype=np.float32), stops, channels)
    frame.flags.writeable = False
    return frame


def gradient(t: float, count: int, p: Mapping) -> Frame:
    colors = tuple(tuple(c) for c in p["colors"])
    speed = p["speed"]
    if speed == 0:
        # The frame never changes: computed once; a copy so that a caller
        # writing to its frame cannot change the next one
        return _still_gradient(count, colors).copy()
    stops, channels = _gradient_stops(colors, True)
    x = (_positions(count) + np.float32((t * speed) % 1.0)) % np.float32(1)
    return _gradient_frame(x, stops, channels)


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
