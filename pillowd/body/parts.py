"""The body's parts (vibration, servo, warmer), each within its limits, built from the settings."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque

from ..errors import PillowError
from ..settings import Limits

log = logging.getLogger(__name__)


class ActuatorError(PillowError, RuntimeError):
    """An actuator cannot be opened or driven."""


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
