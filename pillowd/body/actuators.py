"""Drives the body's parts from the playing scene: one loop, its watchdog, mute and quiet."""

from __future__ import annotations

import atexit
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable

from ..feel import felt
from .parts import Part
from .patterns import PATTERNS

log = logging.getLogger(__name__)


# -- what the playing scene asks of them -------------------------------------------


@dataclass(frozen=True)
class Wants:
    """What a scene (lowered by its message) asks of each actuator at one moment."""

    vibration: float = 0.0
    servo: float | None = None
    warmer: bool = False


def wants_of(playing, now: float) -> Wants:
    """The actuators' wishes for *playing* at monotonic *now*; pure."""
    scene = playing.scene
    command = getattr(playing, "command", None)
    level = scene.vibration_level * (command.vibration * felt(command.strength)
                                     if command else 1.0)
    pattern = PATTERNS.get(scene.vibration)
    # Whole microseconds, so a tick that lands on a pattern's edge is not decided by
    # float noise (0.3 coming out as 0.29999999999995).
    t = round(now - playing.started, 6)
    vibration = pattern(t) * level if pattern and level > 0 else 0.0
    warmer = scene.warmer and (command.warmer if command else True)
    return Wants(vibration=vibration, servo=scene.servo_angle, warmer=warmer)


def _still(playing) -> bool:
    """Whether *playing* asks nothing of any actuator at any moment."""
    scene = playing.scene
    moves = scene.vibration in PATTERNS and scene.vibration_level > 0
    return not moves and scene.servo_angle is None and not scene.warmer


class Actuators:
    """Drives the parts from the playing scene, and keeps them safe when anything fails.

    While the scene moves a part, the driving loop ticks every *period* and a
    watchdog thread turns every part off if the loop has not ticked for
    *stall_seconds*, and cuts each part at its limit's deadline between ticks.
    While every part is off and the scene asks for none, both sleep until the
    scene changes. ``muted`` (quiet hours) and ``fault`` keep parts off.
    """

    def __init__(self, parts: list[Part], timeline, *, period: float = 0.02,
                 stall_seconds: float = 0.5, clock=time.monotonic,
                 on_values: Callable[[dict], None] | None = None,
                 publish_seconds: float = 0.5):
        self.parts = {part.name: part for part in parts}
        self.timeline = timeline
        self.period = period
        self.stall_seconds = stall_seconds
        self._clock = clock
        self.on_values = on_values
        self.publish_seconds = publish_seconds
        self._muted = False
        self._fault: str | None = None
        self.stalled = False
        self.resting = False
        self.heartbeat = clock()
        self.values: dict = {name: part.value for name, part in self.parts.items()}
        self._published = dict(self.values)
        self._last_publish = -math.inf
        self._closed = False
        self._stopping = False
        self._wake = threading.Event()        # the driving loop: a change, or stop
        self._watch_wake = threading.Event()  # the watchdog: the loop left its rest
        timeline.on_change(lambda playing: self._wake.set())
        if on_values is not None:  # the parts fitted, all off, from the start
            on_values(dict(self.values))
        # Whatever else happens, the interpreter does not exit with a motor running.
        atexit.register(self.all_off)

    @property
    def muted(self) -> bool:
        return self._muted

    @muted.setter
    def muted(self, muted: bool) -> None:
        self._muted = bool(muted)
        self._wake.set()

    @property
    def fault(self) -> str | None:
        return self._fault

    @fault.setter
    def fault(self, why: str | None) -> None:
        self._fault = why
        self._wake.set()

    def tick(self, now: float | None = None) -> None:
        """Apply what the playing scene asks now, through the limits."""
        now = self._clock() if now is None else now
        self.heartbeat = now
        self.stalled = False
        if self._muted or self._fault or self._closed:
            wants = Wants()
        else:
            wants = wants_of(self.timeline.current(), now)
        for name, part in self.parts.items():
            part.set(getattr(wants, name), now)
            self.values[name] = part.value
        self._publish(now)

    def _rest_seconds(self) -> float | None | bool:
        """False while anything moves; else how long all stays still (None: until
        the scene changes)."""
        if any(part._is_on(part.value) for part in self.parts.values()):
            return False
        if self._muted or self._fault or self._closed:
            return None
        playing = self.timeline.current()
        if not _still(playing):
            return False
        return None if playing.ends is None else max(0.0, playing.ends - self._clock())

    def trouble(self) -> str | None:
        """Why the actuators are held off against the scene's wishes, or None."""
        if self._fault:
            return f"actuators off: {self._fault}"
        if self.stalled:
            return "actuators off: the actuator loop has stalled"
        return None

    def _publish(self, now: float, force: bool = False) -> None:
        if self.on_values is None or self.values == self._published:
            return
        # A part starting or stopping is told at once; a level moving within a
        # pattern at most every publish_seconds, so the page is not flooded.
        switched = any(part._is_on(self.values[name]) != part._is_on(self._published[name])
                       for name, part in self.parts.items())
        if force or switched or now - self._last_publish >= self.publish_seconds:
            self._published = dict(self.values)
            self._last_publish = now
            self.on_values(self._published)

    def all_off(self, reason: str | None = None) -> None:
        """Every part off at once; safe at any time, from any thread, after close."""
        if reason:
            log.warning("all actuators off: %s", reason)
        for name, part in self.parts.items():
            try:
                part.off(self._clock())
            except Exception:  # keep turning the rest off
                log.exception("could not turn %s off", name)
            self.values[name] = part.value
        self._publish(self._clock(), force=True)

    def stop(self) -> None:
        """End run() and watch() now, whatever they wait for."""
        self._stopping = True
        self._wake.set()
        self._watch_wake.set()

    def run(self) -> None:
        """Tick at a fixed rate while anything moves, else sleep until the scene
        changes; until stop(). Any error turns everything off first."""
        next_tick = self._clock()
        try:
            while not self._stopping:
                self._wake.clear()
                try:
                    self.tick()
                    rest = self._rest_seconds()
                except Exception as err:
                    # A bug must never leave a motor running: off, and stay off.
                    log.exception("actuator loop failed")
                    self.fault = f"actuator loop failed: {err}"
                    self.all_off()
                    rest = None
                if rest is not False:
                    self.resting = True
                    self._wake.wait(rest)
                    self.heartbeat = next_tick = self._clock()
                    self.resting = False
                    self._watch_wake.set()  # the watchdog watches again
                    continue
                next_tick += self.period
                if next_tick < self._clock():
                    next_tick = self._clock()
                self._wake.wait(max(0.0, next_tick - self._clock()))
        finally:
            self.all_off()

    def watch(self, margin: float = 0.01) -> None:
        """The watchdog: off when the loop stalls, and at each limit's deadline.

        It wakes *margin* early for a limit, so a thread woken a few ms late still
        cuts the output in time. While the loop rests (everything off), so does it.
        """
        try:
            while not self._stopping:
                if self.resting:
                    self._watch_wake.clear()
                    if self.resting and not self._stopping:  # not missed in between
                        self._watch_wake.wait()
                    continue
                self._watch_wake.clear()  # stop() after this still ends the wait below
                now = self._clock()
                if now - self.heartbeat >= self.stall_seconds and not self.stalled:
                    self.stalled = True
                    self.all_off(f"the actuator loop has not ticked for "
                                 f"{now - self.heartbeat:.2f} s")
                # At least every period: a part the loop just turned on has a
                # deadline this pass did not know of.
                wake = min(now + self.period, now + self.stall_seconds if self.stalled
                           else self.heartbeat + self.stall_seconds)
                for part in self.parts.values():
                    part.enforce(now, margin)
                    wake = min(wake, part.deadline(now) - margin)
                self._watch_wake.wait(max(0.001, wake - self._clock()))
        finally:
            self.all_off()

    def close(self) -> None:
        """Everything off and the pins let go; safe twice."""
        self._closed = True
        self.all_off()
        for part in self.parts.values():
            part.close()
        atexit.unregister(self.all_off)


