"""The pillow's motors and warmer through gpiozero, behind limits nothing above can pass."""

from __future__ import annotations

import atexit
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from .errors import PillowError
from .feel import felt
from .patterns import PATTERNS
from .settings import Limits

log = logging.getLogger(__name__)


class ActuatorError(PillowError, RuntimeError):
    """An actuator cannot be opened or driven."""


# -- limits -------------------------------------------------------------------------


class Limit:
    """Decides, for one actuator, whether it may be on now; knows only time.

    "On" is any non-zero output. Every decision looks *horizon* seconds ahead (the
    driving loop's period), so the output is switched off at the last tick before a
    limit, never after it; the watchdog cuts it at ``deadline()`` if ticks stop.
    """

    def __init__(self, limits: Limits, horizon: float = 0.0):
        self.limits = limits
        self.horizon = horizon
        self.on_since: float | None = None
        self.rest_until = -math.inf
        self.tripped: str | None = None     # why the last cut happened
        self._spans: deque[list[float]] = deque()  # [start, end] of recent on-times

    def _used(self, now: float) -> float:
        """Seconds on within the window ending *now*."""
        start = now - self.limits.window_seconds
        while self._spans and self._spans[0][1] < start:
            self._spans.popleft()
        used = sum(min(end, now) - max(begin, start) for begin, end in self._spans
                   if min(end, now) > max(begin, start))
        if self.on_since is not None:
            used += now - max(self.on_since, start)
        return used

    def deadline(self, now: float) -> float:
        """When the output must be off at the latest, if it is on; inf if off."""
        if self.on_since is None:
            return math.inf
        s = self.limits
        budget = s.duty_cap * s.window_seconds - self._used(now)
        return min(self.on_since + s.max_on_seconds, now + budget)

    def allow(self, wanted_on: bool, now: float) -> bool:
        """Whether the output may be on from *now* until the next decision."""
        if not wanted_on or now < self.rest_until:
            self._stop(now)
            return False
        if self.on_since is None:
            self.on_since = now
        if now + self.horizon >= self.deadline(now):
            self.cut(now, self.horizon)
            return False
        return True

    def cut(self, now: float, ahead: float = 0.0) -> None:
        """Off because a limit is reached within *ahead* seconds; rest from now."""
        if self.on_since is None:
            return
        s = self.limits
        self.tripped = ("max_on" if now + ahead >= self.on_since + s.max_on_seconds
                        else "duty_cap")
        self._stop(now)
        self.rest_until = now + s.cooldown_seconds
        log.info("actuator limit %s: resting %.1f s", self.tripped, s.cooldown_seconds)

    def _stop(self, now: float) -> None:
        if self.on_since is not None:
            self._spans.append([self.on_since, now])
            self.on_since = None


# -- the parts ----------------------------------------------------------------------


class Part:
    """One actuator: a gpiozero device whose output only its Limit lets through."""

    name = "part"

    def __init__(self, device, limit: Limit):
        self.device = device
        self.limit = limit
        self.value = self._off_value()
        self._lock = threading.Lock()

    def _off_value(self):
        return 0.0

    def _write(self, value) -> None:
        raise NotImplementedError

    def _is_on(self, value) -> bool:
        return bool(value)

    def set(self, value, now: float) -> None:
        """Ask for *value*; what reaches the pin is what the limits allow."""
        with self._lock:
            if self.device is None:
                return
            wanted = self._bounded(value)
            if not self.limit.allow(self._is_on(wanted), now):
                wanted = self._off_value()
            if wanted != self.value:
                self._write(wanted)
                self.value = wanted

    def _bounded(self, value):
        return value

    def deadline(self, now: float) -> float:
        """When the output must be off at the latest (inf while off); under the lock
        the driving loop holds while it changes the limit's spans."""
        with self._lock:
            return self.limit.deadline(now)

    def enforce(self, now: float, margin: float = 0.0) -> None:
        """Cut the output if a limit's deadline is within *margin* (the watchdog's)."""
        with self._lock:
            if self.device is not None and now + margin >= self.limit.deadline(now):
                self.limit.cut(now, margin)
                self._force_off(now)

    def off(self, now: float | None = None) -> None:
        """Off now, whatever was asked; safe on a closed part."""
        with self._lock:
            self._force_off(time.monotonic() if now is None else now)

    def _force_off(self, now: float) -> None:
        if self.limit.on_since is not None:
            self.limit.allow(False, now)
        if self.device is not None and not self.device.closed:
            self._write(self._off_value())
        self.value = self._off_value()

    def close(self) -> None:
        """Off and let go of the pin; safe twice."""
        self.off()
        with self._lock:
            if self.device is not None:
                self.device.close()
                self.device = None


class Vibration(Part):
    """The vibration motor on a PWM pin; its level never exceeds *max_level*."""

    name = "vibration"

    def __init__(self, pin, *, max_level: float, limit: Limit, pin_factory):
        from gpiozero import PWMOutputDevice
        self.max_level = max_level
        super().__init__(PWMOutputDevice(pin, initial_value=0, pin_factory=pin_factory),
                         limit)

    def _bounded(self, value):
        return round(min(max(float(value), 0.0), self.max_level), 4)

    def _write(self, value) -> None:
        self.device.value = value


class Servo(Part):
    """A hobby servo; angles are clamped to its allowed travel, None lets it go limp."""

    name = "servo"

    def __init__(self, pin, *, min_angle: float, max_angle: float, limit: Limit,
                 min_pulse_width: float, max_pulse_width: float, pin_factory):
        from gpiozero import AngularServo
        self.min_angle, self.max_angle = min_angle, max_angle
        # The pulse mapping is the servo's own (-90..90); min/max_angle only narrow
        # where we let it go. initial_angle=None: no pulses, so no jump at start.
        super().__init__(AngularServo(pin, initial_angle=None, min_angle=-90,
                                      max_angle=90, min_pulse_width=min_pulse_width,
                                      max_pulse_width=max_pulse_width,
                                      pin_factory=pin_factory), limit)

    def _off_value(self):
        return None

    def _is_on(self, value) -> bool:
        return value is not None

    def _bounded(self, value):
        if value is None:
            return None
        return round(min(max(float(value), self.min_angle), self.max_angle), 2)

    def _write(self, value) -> None:
        self.device.angle = value


class Warmer(Part):
    """A heating pad's relay: on or off, never on for longer than its limits."""

    name = "warmer"

    def __init__(self, pin, *, active_high: bool, limit: Limit, pin_factory):
        from gpiozero import OutputDevice
        super().__init__(OutputDevice(pin, active_high=active_high, initial_value=False,
                                      pin_factory=pin_factory), limit)

    def _off_value(self):
        return False

    def _bounded(self, value):
        return bool(value)

    def _write(self, value) -> None:
        self.device.value = value


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


def build_parts(settings, pin_factory, horizon: float) -> list[Part]:
    """The parts *settings* (an ActuatorSettings) declares; none when none are."""
    parts: list[Part] = []
    try:
        if (v := settings.vibration) is not None:
            parts.append(Vibration(v.pin, max_level=v.max_level,
                                   limit=Limit(v.limits, horizon), pin_factory=pin_factory))
        if (s := settings.servo) is not None:
            parts.append(Servo(s.pin, min_angle=s.min_angle, max_angle=s.max_angle,
                               min_pulse_width=s.min_pulse_ms / 1000,
                               max_pulse_width=s.max_pulse_ms / 1000,
                               limit=Limit(s.limits, horizon), pin_factory=pin_factory))
        if (w := settings.warmer) is not None:
            parts.append(Warmer(w.pin, active_high=w.active_high,
                                limit=Limit(w.limits, horizon), pin_factory=pin_factory))
    except Exception as err:
        for part in parts:
            part.close()
        raise ActuatorError(f"cannot open the actuators: {err}") from err
    return parts
