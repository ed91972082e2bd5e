"""The render loop: the playing scene to LED frames at a fixed rate."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import numpy as np

from .effects import Frame
from .hardware import LedStrip
from .light import LightOutput, Transition
from .scenes import Playing, Timeline

log = logging.getLogger(__name__)


def _unfinished(source, now: float):
    """*source* with the fades that are over by *now* cut out of it.

    Scenes arriving faster than they fade nest one Transition in the next; without
    this the chain, and the memory it holds, would grow for as long as they do.
    """
    if not isinstance(source, Transition):
        return source
    if source.done(now):
        return _unfinished(source.new, now)
    source.old = _unfinished(source.old, now)
    return source


IDLE_TICK = 0.5  # seconds: the longest a settled static frame sleeps between checks


class Renderer:
    """Draws the timeline's scene on the strip, dropping frames rather than queueing.

    Scenes cross-fade over their ``transition_seconds``; a frame that has not
    changed is neither recomputed (static effects) nor sent again.
    """

    def __init__(self, timeline: Timeline, strip: LedStrip, output: LightOutput, *,
                 fps: int = 50,
                 clock=time.monotonic):
        self.timeline = timeline
        self.strip = strip
        self.output = output
        self.fps = fps
        self._clock = clock
        self.heartbeat = clock()
        self.frames = 0
        self.dropped = 0
        self.frame_seconds = 0.0
        self.achieved_fps = 0.0
        self.last_frame = bytes(3 * strip.count)
        self._level = output.brightness  # the person's dimmer, within the ceiling
        self._cap = 1.0            # a further brightness limit (quiet hours)
        self._playing: Playing | None = None
        self._source: Callable[[float], Frame] | None = None
        self._settled = False      # a static frame is on the strip already
        self._last_pixels: np.ndarray | None = None
        # Set on anything that may change a settled static frame, so the loop can
        # sleep instead of ticking; the timeline's changes included.
        self._wake = threading.Event()
        timeline.on_change(lambda playing: self._wake.set())

    @property
    def brightness(self) -> float:
        """What everything shown is scaled by now, 0..1."""
        return self._level * self._cap

    def set_brightness(self, level: float) -> None:
        """Dim (or restore) the LEDs; never above the configured ceiling."""
        self._level = min(max(float(level), 0.0), self.output.brightness)
        self._settled = False
        self._wake.set()

    @property
    def milliamps(self) -> float:
        return round(self.output.milliamps, 1)

    def limit(self, cap: float) -> None:
        """Cap everything shown at *cap* (0..1) of the configured brightness."""
        self._cap = min(max(cap, 0.0), 1.0)
        self._settled = False
        self._wake.set()

    def _scene_source(self, playing: Playing) -> Callable[[float], Frame]:
        effect, count, params = playing.effect, self.strip.count, playing.params
        started, level = playing.started, playing.brightness

        def source(t: float) -> Frame:
            frame = effect(t - started, count, params)
            return frame if level == 1.0 else frame * np.float32(level)
        return source

    def _idle_wait(self) -> float:
        playing = self._playing
        if playing is not None and playing.ends is not None:
            return max(0.0, min(IDLE_TICK, playing.ends - self._clock()))
        return IDLE_TICK

    def render_once(self, now: float | None = None) -> None:
        """Compute, limit and show the frame for *now*, unless nothing changed."""
        now = self._clock() if now is None else now
        playing = self.timeline.current()
        if playing is not self._playing:
            new = self._scene_source(playing)
            seconds = playing.scene.transition_seconds
            # Fade from whatever shows now, even a fade still under way.
            self._source = (Transition(_unfinished(self._source, now), new, now, seconds)
                            if self._source is not None and seconds > 0 else new)
            self._playing = playing
            self._settled = False
        if isinstance(self._source, Transition) and self._source.done(now):
            self._source = self._source.new
        static = (not playing.effect.animated
                  and not isinstance(self._source, Transition))
        if static and self._settled:
            return
        ceiling = self.output.brightness
        factor = self._level / ceiling * self._cap if ceiling else 0.0
        pixels, _ = self.output.render(self._source(now), factor)
        self._settled = static
        if self._last_pixels is None or not np.array_equal(pixels, self._last_pixels):
            self.strip.show(pixels)
            self._last_pixels = pixels
            self.last_frame = pixels.tobytes()  # the page's frame pusher reads this

    def wake(self) -> None:
        """Stop sleeping on a settled static frame now (something changed, or stop)."""
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        """Render at a drift-free fixed rate until *stop* is set, then go dark.

        A settled static frame is not redrawn: the loop sleeps until woken by a
        change, or for at most IDLE_TICK (so the heartbeat and a scene's end are
        never missed). *stop* must be followed by wake() to end such a sleep.
        """
        period = 1 / self.fps
        next_tick = self._clock()
        window_start, window_frames = next_tick, 0
        try:
            while not stop.is_set():
                self._wake.clear()  # before drawing: a change from now on wakes us
                started = self._clock()
                self.render_once(started)
                self.heartbeat = self._clock()
                self.frame_seconds = self.heartbeat - started
                self.frames += 1
                window_frames += 1
                if self.heartbeat - window_start >= 1:
                    self.achieved_fps = window_frames / (self.heartbeat - window_start)
                    window_start, window_frames = self.heartbeat, 0
                if self._settled:
                    self._wake.wait(self._idle_wait())
                    next_tick = self._clock()
                    continue
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
