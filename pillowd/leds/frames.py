"""The effects' frames: pure functions from time and parameters to the LEDs' colours."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Mapping

import numpy as np


#: shape (count, 3), float32, 0..1, linear RGB, before brightness and gamma
Frame = np.ndarray


Color = tuple[float, float, float]


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
