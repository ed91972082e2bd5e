"""The render loop: the playing scene to LED frames at a fixed rate."""

from __future__ import annotations

import logging
import math
import threading
import time
from datetime import datetime, timezone
from typing import Callable

import numpy as np

from ..hardware import LedStrip
from ..history import iso
from .frames import Frame
from .cue import CueLook, blink, lit, next_edge
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


# After a failed write the strip is tried again after the first of these, doubling
# up to the second: a glitch costs a tenth of a second, a dead strip one try in two
# seconds (and no log flood), and the LEDs come back within that once it works.
STRIP_RETRY_FIRST = 0.1
STRIP_RETRY_MAX = 2.0


# A cycle is kept only up to this many frames and bytes; longer ones render live.
CYCLE_MAX_FRAMES = 3000
CYCLE_MAX_BYTES = 4 << 20


class Cycle:
    """One cycle of a periodic scene's frames: each computed once, then replayed.

    Frame *k* is the scene at ``started + k / fps``; a scene whose period is not a
    whole number of frames repeats after the nearest whole number (within half a
    frame). Once every frame is known, ``next_change`` says when the strip must
    next change, so the loop sleeps through the frames that would show the same.
    """

    def __init__(self, started: float, seconds: float, fps: int, count: int):
        self.started = started
        self.fps = fps
        self.size = max(1, round(seconds * fps))
        self.frames = np.zeros((self.size, count, 3), np.uint8)
        self.milliamps = np.zeros(self.size)
        self._known = np.zeros(self.size, bool)
        self._missing = self.size
        self._steps: np.ndarray | None = None  # frames until the next different one

    @classmethod
    def fits(cls, seconds: float | None, fps: int, count: int) -> bool:
        if not seconds or seconds <= 0:
            return False
        frames = round(seconds * fps)
        return frames <= CYCLE_MAX_FRAMES and frames * count * 3 <= CYCLE_MAX_BYTES

    def _tick(self, now: float) -> int:
        # A hair past the boundary: a tick due exactly on frame k is frame k, not
        # k - 1 by float rounding (0.06 * 50 = 2.9999999999999996).
        return int((now - self.started) * self.fps + 1e-6)

    def index(self, now: float) -> int:
        return self._tick(now) % self.size

    def frame(self, k: int, render: Callable[[float], tuple[np.ndarray, float]]):
        """Frame *k* and its milliamps, rendered by *render(t)* the first time."""
        if not self._known[k]:
            self.frames[k], self.milliamps[k] = render(self.started + k / self.fps)
            self._known[k] = True
            self._missing -= 1
            if not self._missing:
                self._steps = self._count_steps()
        return self.frames[k], self.milliamps[k]

    def fill_one(self, render: Callable[[float], tuple[np.ndarray, float]]) -> bool:
        """Compute one frame not yet known; False when none is left. A loop that
        drops frames would otherwise never see some of them, and never finish."""
        if not self._missing:
            return False
        self.frame(int(np.argmin(self._known)), render)
        return True

    def _count_steps(self) -> np.ndarray:
        flat = self.frames.reshape(self.size, -1)
        # differs[k]: frame k is not the same as frame k - 1 (cyclically)
        differs = np.any(flat != np.roll(flat, 1, axis=0), axis=1)
        if not differs.any():
            return np.full(self.size, np.inf)
        changes = np.flatnonzero(differs)
        ks = np.arange(self.size)
        after = np.searchsorted(changes, ks, side="right")  # first change past k
        wrapped = after == changes.size                      # none: the next cycle's first
        following = np.where(wrapped, changes[0] + self.size,
                             changes[np.minimum(after, changes.size - 1)])
        return (following - ks).astype(float)

    def next_change(self, now: float) -> float | None:
        """When the frame shown at *now* next changes (inf: never); None until
        the whole cycle is known."""
        if self._steps is None:
            return None
        tick = self._tick(now)
        return self.started + (tick + self._steps[tick % self.size]) / self.fps


class Renderer:
    """Draws the timeline's scene on the strip, dropping frames rather than queueing.

    Scenes cross-fade over their ``transition_seconds``; a frame that has not
    changed is neither recomputed (static effects) nor sent again. While a static
    frame stands, the loop sleeps until something changes or the scene ends.
    """

    def __init__(self, timeline: Timeline, strip: LedStrip, output: LightOutput, *,
                 fps: int = 50,
                 clock=time.monotonic,
                 wall: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
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
        self.resting = False       # asleep on purpose: a settled frame, a replayed cycle
        self.last_frame = bytes(3 * strip.count)
        self._level = output.brightness  # the person's dimmer, within the ceiling
        self._cap = 1.0            # a further brightness limit (quiet hours)
        self._playing: Playing | None = None
        self._source: Callable[[float], Frame] | None = None
        self._settled = False      # a static frame is on the strip already
        self._last_pixels: np.ndarray | None = None
        self._cycle: Cycle | None = None
        self._cycle_key = None
        self._due: float | None = None  # when a replayed cycle next changes the strip
        self._fill = None               # renders a frame of the cycle being learnt
        self._milliamps = 0.0
        self._frame_listeners: list[Callable[[bytes], None]] = []
        # The strip's health: a driver that raises from show() is retried with
        # back-off, and its listeners hear when it fails and when it works again.
        self._wall = wall
        self.strip_error: str | None = None
        self.strip_since: str | None = None   # when the failing began (ISO, UTC)
        self.strip_failures = 0               # writes failed in a row
        self._retry_at: float | None = None
        self._strip_listeners: list[Callable[[dict], None]] = []
        # Counts changes that may alter a settled frame: a frame drawn while one
        # arrives is not settled, so the change is drawn next (never lost).
        self._changes = 0
        # Set on every such change and by stop(): ends a sleep at once.
        self._wake = threading.Event()
        self._stopping = False
        # The trouble cue blinked over whatever plays (pillowd.leds.cue); None while
        # nothing is wrong, and then it costs the loop nothing.
        self._cue: CueLook | None = None
        self._cue_since = 0.0
        self._cue_drawn = False          # its LED lit in the frame on the strip
        self._cue_bytes: tuple | None = None  # (look, factor, the LED's bytes)
        timeline.on_change(self._changed)

    def on_frame(self, listener: Callable[[bytes], None]) -> None:
        """Call *listener* (in the render thread) with each new frame's bytes."""
        self._frame_listeners.append(listener)

    def on_strip(self, listener: Callable[[dict], None]) -> None:
        """Call *listener* (in the render thread) with strip_status() when the strip
        starts failing, fails differently, or works again."""
        self._strip_listeners.append(listener)

    def strip_status(self) -> dict:
        """The LED strip as the snapshot shows it: {"ok", "error", "since"}."""
        return {"ok": self.strip_error is None, "error": self.strip_error,
                "since": self.strip_since}

    def strip_trouble(self) -> str | None:
        """Why the LEDs show nothing new, for /healthz; None while they work."""
        # Read once each: the render thread may clear them meanwhile.
        error, failures, since = self.strip_error, self.strip_failures, self.strip_since
        if error is None:
            return None
        return f"LEDs: {error} ({failures} writes failed since {since}; retrying)"

    def _show(self, pixels: np.ndarray) -> bool:
        """Send *pixels* to the strip; False, and the next try scheduled, if it failed."""
        try:
            self.strip.show(pixels)
        except Exception as err:  # whatever a driver raises, the loop must live on
            self._strip_failed(err)
            return False
        if self.strip_error is not None:
            log.warning("the LED strip works again after %d failed writes",
                        self.strip_failures)
            self.strip_error = self.strip_since = None
            self.strip_failures = 0
            self._retry_at = None
            self._tell_strip()
        return True

    def _strip_failed(self, err: Exception) -> None:
        why = str(err) or type(err).__name__
        self.strip_failures += 1
        delay = min(STRIP_RETRY_MAX, STRIP_RETRY_FIRST * 2 ** (self.strip_failures - 1))
        self._retry_at = self._clock() + delay
        # Whatever the strip shows now is unknown: the next good write sends it all.
        self._last_pixels = None
        self._settled = False
        if why == self.strip_error:
            log.debug("the LED strip failed again (%d in a row): %s",
                      self.strip_failures, why)
            return
        if self.strip_error is None:
            self.strip_since = iso(self._wall())
            log.error("the LED strip failed: %s; retrying with back-off (up to every "
                      "%.0f s), the pillow runs on", why, STRIP_RETRY_MAX)
        else:
            log.error("the LED strip fails differently now: %s", why)
        self.strip_error = why
        self._tell_strip()

    def _tell_strip(self) -> None:
        status = self.strip_status()
        for listener in self._strip_listeners:
            try:
                listener(status)
            except Exception:  # a listener's bug must not stop the LEDs
                log.exception("a strip listener failed")

    def _changed(self, *_) -> None:
        self._changes += 1
        self._settled = False
        self._wake.set()

    @property
    def brightness(self) -> float:
        """What everything shown is scaled by now, 0..1."""
        return self._level * self._cap

    @property
    def level(self) -> float:
        """The dimmer (0..ceiling) as set, before quiet hours' cap."""
        return self._level

    def set_brightness(self, level: float) -> None:
        """Dim (or restore) the LEDs; never above the configured ceiling."""
        self._level = min(max(float(level), 0.0), self.output.brightness)
        self._changed()

    @property
    def milliamps(self) -> float:
        return round(self._milliamps, 1)

    def limit(self, cap: float) -> None:
        """Cap everything shown at *cap* (0..1) of the configured brightness."""
        self._cap = min(max(cap, 0.0), 1.0)
        self._changed()

    def show_cue(self, look: CueLook | None) -> None:
        """Blink *look* over whatever plays, from now (None: stop blinking)."""
        self._cue_since = self._clock()
        self._cue = look
        self._changed()

    def _cue_edge(self, now: float) -> float:
        """When the cue's LED next turns on or off (inf: no cue)."""
        cue = self._cue
        if cue is None:
            return math.inf
        return self._cue_since + next_edge(cue, now - self._cue_since)

    def _with_cue(self, pixels: np.ndarray, t: float, cue: CueLook,
                  factor: float) -> np.ndarray:
        known = self._cue_bytes
        if known is None or known[:2] != (cue, factor):
            self._cue_bytes = known = (cue, factor, self.output.pixel(cue.color, factor))
        return blink(pixels, t, cue, known[2])

    def _scene_source(self, playing: Playing) -> Callable[[float], Frame]:
        effect, count, params = playing.effect, self.strip.count, playing.params
        started, level = playing.started, playing.brightness

        def source(t: float) -> Frame:
            frame = effect(t - started, count, params)
            return frame if level == 1.0 else frame * np.float32(level)
        return source

    def _rest_seconds(self) -> float | None:
        """How long a settled frame may stand: until its scene ends or the cue's LED
        turns on or off, else for good."""
        playing = self._playing
        now = self._clock()
        until = self._cue_edge(now)
        if playing is not None and playing.ends is not None:
            until = min(until, playing.ends)
        return None if until == math.inf else max(0.0, until - now)

    def render_once(self, now: float | None = None) -> None:
        """Compute, limit and show the frame for *now*, unless nothing changed."""
        now = self._clock() if now is None else now
        changes = self._changes
        # Read once: the cue's thread may change them meanwhile.
        cue, cue_since = self._cue, self._cue_since
        cue_lit = cue is not None and lit(cue, now - cue_since)
        if cue_lit != self._cue_drawn:
            self._settled = False   # a standing frame is drawn again, with or without it
        playing = self.timeline.current()
        if playing is not self._playing:
            new = self._scene_source(playing)
            seconds = playing.scene.transition_seconds
            # Fade from whatever shows now, even a fade still under way.
            self._source = (Transition(_unfinished(self._source, now), new, now, seconds)
                            if self._source is not None and seconds > 0 else new)
            self._playing = playing
            self._settled = False
            self._cycle = self._cycle_key = None
        if isinstance(self._source, Transition) and self._source.done(now):
            self._source = self._source.new
        fading = isinstance(self._source, Transition)
        static = not playing.effect.animated and not fading
        if static and self._settled:
            return
        ceiling = self.output.brightness
        factor = self._level / ceiling * self._cap if ceiling else 0.0
        cycle = None if fading or static else self._cycle_of(playing, factor)
        if cycle is not None:
            source = self._source
            self._fill = lambda t: self.output.render(source(t), factor)
            pixels, milliamps = cycle.frame(cycle.index(now), self._fill)
            self._due = cycle.next_change(now)
        else:
            pixels, milliamps = self.output.render(self._source(now), factor)
            self._due = None
        if cue_lit:
            pixels = self._with_cue(pixels, now - cue_since, cue, factor)
        self._cue_drawn = cue_lit
        self._milliamps = milliamps
        # Settled only if nothing changed while it was drawn (that change is next).
        self._settled = static and changes == self._changes
        if self._last_pixels is None or not np.array_equal(pixels, self._last_pixels):
            if not self._show(pixels):
                self._due = None  # no sleeping through a cycle: run() retries
                return
            self._last_pixels = pixels
            self.last_frame = frame = pixels.tobytes()
            for listener in self._frame_listeners:
                listener(frame)

    def _cycle_of(self, playing: Playing, factor: float) -> Cycle | None:
        """The replayable cycle of *playing* at *factor*; None if it has none."""
        key = (playing, factor)
        if key != self._cycle_key:
            cycle = playing.effect.cycle
            seconds = cycle(playing.params) if cycle is not None else None
            self._cycle_key = key
            self._cycle = (Cycle(playing.started, seconds, self.fps, self.strip.count)
                           if Cycle.fits(seconds, self.fps, self.strip.count) else None)
        return self._cycle

    def stop(self) -> None:
        """End run() now, even from a sleep on a settled frame."""
        self._stopping = True
        self._wake.set()

    def run(self) -> None:
        """Render at a drift-free fixed rate until stop(), then go dark.

        A settled static frame is not redrawn: the loop sleeps until a change
        (scene, brightness, limit, stop) wakes it, or the scene ends.
        """
        period = 1 / self.fps
        next_tick = self._clock()
        window_start, window_frames = next_tick, 0
        try:
            while not self._stopping:
                self._wake.clear()  # before drawing: a change from now on wakes us
                started = self._clock()
                self.render_once(started)
                self.heartbeat = now = self._clock()
                self.frame_seconds = now - started
                self.frames += 1
                window_frames += 1
                if now - window_start >= 1:
                    self.achieved_fps = window_frames / (now - window_start)
                    window_start, window_frames = now, 0
                if self.strip_error is not None:
                    # Waiting on purpose (health reports the strip, not a stall)
                    # until the next try, or stop.
                    self.resting = True
                    self._wait_until(self._retry_at)
                    self.resting = False
                    next_tick = window_start = self._clock()
                    window_frames = 0
                    continue
                if self._settled:
                    self.resting = True
                    self._wake.wait(self._rest_seconds())
                    self.resting = False
                    next_tick = window_start = self._clock()
                    window_frames = 0
                    continue
                if self._due is not None:  # a known cycle: sleep to its next change
                    # Asleep on purpose (health must not call it a stall), until
                    # the strip must change: never, if the whole cycle looks the same.
                    self.resting = True
                    due = min(self._due, self._cue_edge(now))
                    self._wake.wait(None if due == math.inf else max(0.0, due - now))
                    self.resting = False
                    next_tick = window_start = self._clock()
                    window_frames = 0
                    continue
                next_tick += period
                if self._cycle is not None and next_tick - now > 2 * self.frame_seconds:
                    self._cycle.fill_one(self._fill)  # spare time: learn the cycle
                    now = self._clock()
                late = now - next_tick
                if late > 0:
                    # Behind: skip the frames we missed instead of rushing to catch up.
                    skipped = int(late // period) + 1
                    self.dropped += skipped
                    next_tick += skipped * period
                self._wake.wait(next_tick - now)
        finally:
            try:
                self.strip.off()
            except Exception as err:  # a dead strip cannot be darkened: say so, end
                log.warning("could not turn the LEDs off: %s", err)
            self.last_frame = bytes(3 * self.strip.count)

    def _wait_until(self, deadline: float) -> None:
        """Sleep until *deadline* or stop(); a change meanwhile is drawn at the next
        try, not at once, so a busy page cannot hammer a failing strip."""
        while not self._stopping:
            left = deadline - self._clock()
            if left <= 0:
                return
            self._wake.clear()
            if self._stopping:  # stop() sets the flag before the event: not missed
                return
            self._wake.wait(left)
