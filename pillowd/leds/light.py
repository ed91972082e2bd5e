"""Turns effect frames into the bytes the LEDs get: brightness, gamma, power limit, transitions."""

from __future__ import annotations

from typing import Callable

import numpy as np

from .frames import Frame

__all__ = ["LightOutput", "Transition", "crossfade"]

# Enough input steps that gamma 2.2 still has distinct dark levels: with 256
# input steps the bottom 20 or so would all map to 0
_LUT_SIZE = 4096


class LightOutput:
    """The output stage: linear frames in, gamma-corrected, power-limited bytes out.

    *brightness* is the ceiling for everything (``leds.brightness``); the
    current model is WLED's: each channel draws in proportion to its PWM duty,
    *milliamps_per_channel* at 255, and every LED draws *idle_milliamps_per_led*
    even when dark.
    """

    def __init__(self, count: int, *, brightness: float = 0.6,
                 max_milliamps: float = 2000, gamma: float = 2.2,
                 milliamps_per_channel: float = 55 / 3,
                 idle_milliamps_per_led: float = 1.0):
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        if not 0 <= brightness <= 1:
            raise ValueError(f"brightness must be within 0..1, not {brightness}")
        if gamma <= 0:
            raise ValueError(f"gamma must be above 0, not {gamma}")
        self.count = count
        self.brightness = float(brightness)
        self.max_milliamps = float(max_milliamps)
        self.gamma = float(gamma)
        self.milliamps_per_channel = float(milliamps_per_channel)
        self.idle_milliamps_per_led = float(idle_milliamps_per_led)
        # Indexed by truncating value * (size - 1), so each entry stands for the
        # middle of its bin
        middles = np.minimum((np.arange(_LUT_SIZE) + 0.5) / (_LUT_SIZE - 1), 1)
        self._lut = np.round(255 * middles ** self.gamma).astype(np.uint8)
        self._scaled = np.empty((count, 3), dtype=np.float32)
        self._index = np.empty((count, 3), dtype=np.intp)
        self._top = np.float32(_LUT_SIZE - 1)
        #: the estimate for the last frame rendered, for the state snapshot
        self.milliamps = self.idle_milliamps

    @property
    def idle_milliamps(self) -> float:
        """What the strip draws with every LED dark."""
        return self.idle_milliamps_per_led * self.count

    def milliamps_for(self, pixels: np.ndarray) -> float:
        """Estimated current of showing *pixels* (uint8 duties, shape (count, 3))."""
        return (self.idle_milliamps
                + self.milliamps_per_channel / 255 * int(pixels.sum(dtype=np.uint64)))

    def pixel(self, color, brightness: float = 1.0) -> np.ndarray:
        """One LED's bytes for *color* (r, g, b in 0..1, linear as frames are), as
        render() would give it, before any power limit."""
        scaled = np.asarray(color, np.float32) * np.float32(
            self.brightness * brightness * (_LUT_SIZE - 1))
        index = np.minimum(np.maximum(scaled, 0), self._top).astype(np.intp)
        return self._lut.take(index, mode="clip")

    def render(self, frame: Frame, brightness: float = 1.0) -> tuple[np.ndarray, float]:
        """Return (the bytes to show, their estimated milliamps) for *frame*.

        *brightness* (0..1, say a message's) is applied under the ceiling.
        """
        scaled = self._scaled
        np.multiply(frame, np.float32(self.brightness * brightness * (_LUT_SIZE - 1)),
                    out=scaled)
        # Only the top is clipped here: a negative value casts to a negative
        # index, which take's mode="clip" sends to entry 0 (so does NaN, cast
        # to 0 on ARM and to the most negative index on x86); the top stays a
        # ufunc so that +inf or a huge value still means full, not an
        # overflowed cast
        np.minimum(scaled, self._top, out=scaled)
        index = self._index
        # An intp index: take would otherwise convert a narrower one to intp
        # on every call
        np.copyto(index, scaled, casting="unsafe")
        # The method, not np.take: no Python wrapper. A fresh array each
        # frame because the render loop keeps the last one to compare with
        pixels = self._lut.take(index, mode="clip")
        # The estimate is taken after gamma: the LEDs draw current according
        # to the PWM duty actually sent, not the linear value asked for
        duty = int(np.add.reduce(pixels, axis=None, dtype=np.uint32))
        per_step = self.milliamps_per_channel / 255
        idle = self.idle_milliamps_per_led * self.count
        if idle + per_step * duty > self.max_milliamps:
            # One factor for every duty keeps each LED's hue (light is linear
            # in duty); flooring keeps the total under the budget
            factor = max(self.max_milliamps - idle, 0.0) / (per_step * duty)
            while True:
                limited = (pixels * factor).astype(np.uint8)
                duty = int(np.add.reduce(limited, axis=None, dtype=np.uint32))
                # Float rounding could leave the estimate a hair over: shave again
                if idle + per_step * duty <= self.max_milliamps or duty == 0:
                    break
                factor *= 0.999
            pixels = limited
        self.milliamps = idle + per_step * duty
        return pixels, self.milliamps


def crossfade(a: Frame, b: Frame, progress: float) -> Frame:
    """*a* at progress 0, *b* at 1, mixed in linear light between."""
    if progress <= 0:
        return a
    if progress >= 1:
        return b
    out = b - a
    out *= np.float32(progress)
    out += a
    return out


class Transition:
    """Cross-fades from one frame source to another from *start* over *seconds*.

    Sources are functions of t alone (bind count and parameters beforehand);
    a Transition is one too, so a scene arriving mid-transition fades from
    wherever the light is.
    """

    def __init__(self, old: Callable[[float], Frame], new: Callable[[float], Frame],
                 start: float, seconds: float):
        self.old = old
        self.new = new
        self.start = start
        self.seconds = max(float(seconds), 0.0)

    def progress(self, t: float) -> float:
        """0 at the start, 1 at the end, smoothstep-eased between."""
        if t <= self.start:
            return 0.0
        if self.seconds == 0 or t >= self.start + self.seconds:
            return 1.0
        x = (t - self.start) / self.seconds
        # Eased so the fade has no visible jolt at either end
        return x * x * (3 - 2 * x)

    def done(self, t: float) -> bool:
        """True once only the new source shows: the caller can drop the old."""
        return self.progress(t) >= 1.0

    def __call__(self, t: float) -> Frame:
        p = self.progress(t)
        if p <= 0:
            return self.old(t)
        if p >= 1:
            return self.new(t)
        return crossfade(self.old(t), self.new(t), p)
