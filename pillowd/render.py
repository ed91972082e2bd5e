"""The render loop: the playing scene to LED frames at a fixed rate."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import numpy as np

from .hardware import LedStrip
from .scenes import Timeline

log = logging.getLogger(__name__)

# WS2812: about 55 mA per LED at full white, i.e. a third of that per channel.
MILLIAMPS_PER_CHANNEL = 55 / 3
IDLE_MILLIAMPS_PER_LED = 1.0


class Renderer:
    """Draws the timeline's scene on the strip, dropping frames rather than queueing."""

    def __init__(self, timeline: Timeline, strip: LedStrip, *, fps: int = 50,
                 brightness: float = 0.6, max_milliamps: float = 2000,
                 on_frame: Callable[[bytes], None] | None = None,
                 clock=time.monotonic):
        self.timeline = timeline
        self.strip = strip
        self.fps = fps
        self.brightness = brightness
        self._cap = 1.0            # a further brightness limit (quiet hours)
        self.max_milliamps = max_milliamps
        self.on_frame = on_frame
        self._clock = clock
        self.heartbeat = clock()
        self.frames = 0
        self.dropped = 0
        self.milliamps = 0.0
        self.frame_seconds = 0.0
        self.achieved_fps = 0.0
        self.last_frame = bytes(3 * strip.count)
        self._last_pixels: np.ndarray | None = None

    def limit(self, cap: float) -> None:
        """Cap everything shown at *cap* (0..1) of the configured brightness."""
        self._cap = min(max(cap, 0.0), 1.0)

    def render_once(self, now: float | None = None) -> np.ndarray:
        """Compute, limit and show one frame; returns the bytes shown."""
        now = self._clock() if now is None else now
        playing = self.timeline.current()
        frame = playing.effect(now - playing.started, self.strip.count, playing.params)
        pixels, self.milliamps = self._output(frame, playing.brightness)
        if self._last_pixels is None or not np.array_equal(pixels, self._last_pixels):
            self.strip.show(pixels)
            self._last_pixels = pixels
            self.last_frame = pixels.tobytes()
            if self.on_frame:
                self.on_frame(self.last_frame)
        return pixels

    def _output(self, frame: np.ndarray, brightness: float):
        scaled = np.clip(frame * (self.brightness * self._cap * brightness), 0, 1)
        pixels = np.rint(scaled * 255).astype(np.uint8)
        idle = IDLE_MILLIAMPS_PER_LED * self.strip.count
        drawn = pixels.sum(dtype=np.int64) / 255 * MILLIAMPS_PER_CHANNEL
        if drawn + idle > self.max_milliamps and drawn > 0:
            factor = max(self.max_milliamps - idle, 0) / drawn
            pixels = np.floor(pixels * factor).astype(np.uint8)
            drawn = pixels.sum(dtype=np.int64) / 255 * MILLIAMPS_PER_CHANNEL
        return pixels, round(drawn + idle, 1)

    def run(self, stop: threading.Event) -> None:
        """Render at a drift-free fixed rate until *stop* is set, then go dark."""
        period = 1 / self.fps
        next_tick = self._clock()
        window_start, window_frames = next_tick, 0
        try:
            while not stop.is_set():
                started = self._clock()
                self.render_once(started)
                self.heartbeat = self._clock()
                self.frame_seconds = self.heartbeat - started
                self.frames += 1
                window_frames += 1
                if self.heartbeat - window_start >= 1:
                    self.achieved_fps = window_frames / (self.heartbeat - window_start)
                    window_start, window_frames = self.heartbeat, 0
                next_tick += period
                late = self._clock() - next_tick
                if late > 0:
                    # Behind: skip the frames we missed instead of rushing to catch up.
                    skipped = int(late // period) + 1
                    self.dropped += skipped
                    next_tick += skipped * period
                stop.wait(max(0.0, next_tick - self._clock()))
        finally:
            self.strip.off()
            self.last_frame = bytes(3 * self.strip.count)
            if self.on_frame:
                self.on_frame(self.last_frame)
