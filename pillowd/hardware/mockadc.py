"""A mock MCP3008 on gpiozero's mock SPI pins: the squeeze sensor off a Pi.

gpiozero's own backend for tests (`MockSPIDevice`) plays the chip's side of the
wire: it answers each conversion the ADC is asked for, bit by bit, on the mock
clock, select, MOSI and MISO pins, so `gpiozero.MCP3008` reads it through its
real software SPI, exactly as it reads the chip on a Pi.
"""

from __future__ import annotations

import threading

from gpiozero.pins.mock import (MockPWMPin, MockSPIClockPin, MockSPIDevice,
                                MockSPISelectPin)

__all__ = ["MockMCP3008"]

BITS = 10


class _Digital:
    # A PWM pin's state is a float; the device's side of SPI reads it as a bit.
    def _get_state(self):
        return int(super()._get_state() >= 0.5)


class _SpiClockPin(_Digital, MockSPIClockPin, MockPWMPin):
    pass


class _SpiSelectPin(_Digital, MockSPISelectPin, MockPWMPin):
    pass


class _PwmPins:
    """The mock factory as MockSPIDevice sees it. pillowd's mock factory makes PWM
    pins (the actuators need them) and refuses to hand a plain mock pin to a device
    asking for its default kind: the SPI pins are made PWM-capable too."""

    _KINDS = {MockSPIClockPin: _SpiClockPin, MockSPISelectPin: _SpiSelectPin}

    def __init__(self, factory):
        self._factory = factory

    def pin(self, name, pin_class=None):
        kind = self._KINDS.get(pin_class)
        return self._factory.pin(name, pin_class=kind) if kind else self._factory.pin(name)


class MockMCP3008(MockSPIDevice):
    """The chip's side of an MCP3008 conversion: a start bit, single/differential,
    three channel bits; then a sample clock, a null bit and ten bits of result, most
    significant first (the datasheet's figure 6-1). ``levels[channel]`` is the input
    as a share of the reference, 0..1: set it to squeeze the pillow."""

    def __init__(self, clock_pin, mosi_pin, miso_pin, select_pin, *, pin_factory):
        self.levels = [0.0] * 8
        self.conversions = 0
        self._lock = threading.Lock()
        self._answered = False
        super().__init__(clock_pin, mosi_pin, miso_pin, select_pin,
                         pin_factory=_PwmPins(pin_factory))

    def press(self, level: float, channel: int = 0) -> None:
        with self._lock:
            self.levels[channel] = min(max(float(level), 0.0), 1.0)

    def on_start(self):
        super().on_start()
        self._answered = False

    def on_bit(self):
        if self._answered:
            return
        bits = [1 if b else 0 for b in self.rx_buf]
        if 1 not in bits:
            return  # leading zeros before the start bit
        asked = bits[bits.index(1) + 1:]
        if len(asked) < 4:
            return
        single, channel = asked[0], asked[1] << 2 | asked[2] << 1 | asked[3]
        with self._lock:
            level = (self.levels[channel] if single
                     else self.levels[channel] - self.levels[channel ^ 1])
        code = round(min(max(level, 0.0), 1.0) * (2 ** BITS - 1))
        # The sample clock and the null bit come first, then the result.
        self.tx_word(code, BITS + 2)
        self._answered = True
        self.conversions += 1
