"""The squeeze sensor: a force-sensitive resistor in the pillow, read through an ADC, as presses with a hold and a strength."""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Callable

log = logging.getLogger(__name__)

__all__ = ["Squeeze", "SqueezeSensor", "open_adc", "strength_of",
           "MAX_HOLD", "MIN_HOLD", "REST_PERIOD", "FAST_PERIOD"]

# At rest the sensor is read four times a second (a squeeze is noticed within a
# quarter of a second, and the pillow wakes no more than that for it); while it
# is squeezed, fifty times a second, for its length and its peak.
REST_PERIOD = 0.25
FAST_PERIOD = 0.02
# A hug's hold, as the contract has it: 0.1-30 s; one still held at 30 s is sent then.
MIN_HOLD = 0.1
MAX_HOLD = 30.0
# A squeeze ends below threshold - HYSTERESIS: a reading that wavers around the
# threshold is one squeeze, not many.
HYSTERESIS = 0.05
# The strength a squeeze just over the threshold gives; the hardest gives 1.
MIN_STRENGTH = 0.1


def strength_of(peak: float, threshold: float) -> float:
    """A squeeze's peak reading (threshold..1) as the hug's strength, 0.1..1."""
    share = (peak - threshold) / (1.0 - threshold) if threshold < 1 else 1.0
    share = min(max(share, 0.0), 1.0)
    return round(MIN_STRENGTH + (1 - MIN_STRENGTH) * share, 2)


class Squeeze:
    """What the readings mean, with no clock or thread of its own: each reading at a
    time goes in (``reading``); a finished squeeze comes out as (hold, strength),
    and the time until the next reading is wanted."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.release = max(threshold - HYSTERESIS, 0.0)
        self.started: float | None = None  # when the squeeze being measured began
        self.peak = 0.0
        self.sent = False                 # sent at MAX_HOLD: only the release is awaited

    @property
    def squeezed(self) -> bool:
        return self.started is not None

    def reading(self, level: float, now: float) -> tuple[tuple[float, float] | None, float]:
        """(the press to send or None, seconds until the next reading)."""
        if self.started is None:
            if level <= self.threshold:
                return None, REST_PERIOD
            self.started, self.peak, self.sent = now, level, False
            return None, FAST_PERIOD
        if level < self.release:
            press = None if self.sent else self._press(now)
            self.started = None
            return press, REST_PERIOD
        if self.sent:
            # Still held after it was sent (or a sensor stuck high): nothing more to
            # measure, so back to the resting pace until it lets go.
            return None, REST_PERIOD
        self.peak = max(self.peak, level)
        if now - self.started >= MAX_HOLD:
            self.sent = True
            return self._press(now), REST_PERIOD
        return None, FAST_PERIOD

    def _press(self, now: float) -> tuple[float, float]:
        hold = min(max(now - self.started, MIN_HOLD), MAX_HOLD)
        return round(hold, 2), strength_of(self.peak, self.threshold)


class SqueezeSensor:
    """Reads *read()* (0..1) at the resting pace, fast only while squeezed, and calls
    *on_squeeze(hold, strength)* once per squeeze over *threshold*: on release, or at
    30 s if it is still held.

    One named thread (run() until stop()) waits on a stop Event between readings:
    at rest it wakes four times a second, and stop() ends the wait at once.
    """

    def __init__(self, read: Callable[[], float], *, threshold: float,
                 on_squeeze: Callable[[float, float], object],
                 clock: Callable[[], float] = time.monotonic,
                 close: Callable[[], None] = lambda: None):
        self._read = read
        self._on_squeeze = on_squeeze
        self._clock = clock
        self._close = close
        self.squeeze = Squeeze(threshold)
        self.presses = 0
        self.readings = 0
        self.trouble: str | None = None   # why the last reading failed, while it does
        self._stopped = threading.Event()
        self._closed = False

    def poll(self, now: float | None = None) -> float:
        """Take one reading at *now*; send a finished squeeze; return the seconds
        until the next reading is wanted."""
        now = self._clock() if now is None else now
        try:
            level = float(self._read())
        except Exception as err:  # a loose wire must not end the loop
            why = str(err) or type(err).__name__
            if why != self.trouble:
                log.error("the squeeze sensor cannot be read: %s; trying again", why)
                self.trouble = why
            return REST_PERIOD
        if self.trouble is not None:
            log.warning("the squeeze sensor reads again")
            self.trouble = None
        self.readings += 1
        press, wait = self.squeeze.reading(level, now)
        if press is not None:
            self.presses += 1
            hold, strength = press
            log.info("squeezed for %.1f s, strength %.2f", hold, strength)
            try:
                self._on_squeeze(hold, strength)
            except Exception as err:  # the hug's trouble, not the sensor's
                log.error("a squeeze could not be sent: %s", err)
        return wait

    def run(self) -> None:
        wait = 0.0
        while not self._stopped.wait(wait):
            wait = self.poll()

    def stop(self) -> None:
        self._stopped.set()

    def close(self) -> None:
        """Let the ADC and its pins go; safe twice."""
        self.stop()
        if not self._closed:
            self._closed = True
            self._close()


def open_adc(squeeze, pin_factory, *, mock: bool = False):
    """gpiozero's ADC for the [squeeze] settings on *pin_factory*; with *mock*, a
    mock chip is wired to the pins first (gpiozero's MockFactory). Returns
    (adc, mock chip or None). Raises whatever gpiozero raises: pins in use, ..."""
    from gpiozero import MCP3008

    chip = None
    if mock:
        from ..hardware.mockadc import MockMCP3008
        chip = MockMCP3008(squeeze.clock_pin, squeeze.mosi_pin, squeeze.miso_pin,
                           squeeze.select_pin, pin_factory=pin_factory)
    try:
        with _bus_factory(pin_factory):
            adc = MCP3008(channel=squeeze.channel, pin_factory=pin_factory,
                          **squeeze.pins)
    except BaseException:
        if chip is not None:
            chip.close()
        raise
    return adc, chip


@contextmanager
def _bus_factory(pin_factory):
    """gpiozero 2.0's software SPI bus (SPISoftwareBus) drops the pin factory it is
    handed and takes gpiozero's global default instead: elsewhere than a Pi none can
    be made, on a Pi a second one would be. For as long as the bus is built, the
    default is the pillow's own factory; then it is put back."""
    from gpiozero import Device

    before = Device.pin_factory
    Device.pin_factory = pin_factory
    try:
        yield
    finally:
        Device.pin_factory = before
