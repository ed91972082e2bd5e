"""An in-memory LED strip for running and testing the pillow off a Pi."""

from __future__ import annotations

import threading

import numpy as np

from .base import HardwareError, LedStrip


class MockStrip(LedStrip):
    """Keeps what a real strip would show, and how many frames it was sent."""

    def __init__(self, count: int):
        self.count = count
        self.pixels = np.zeros((count, 3), dtype=np.uint8)
        self.frames = 0
        self.lit_frames = 0
        self.closed = False
        self.failed_writes = 0
        self._failing = 0
        self._fault = ""
        self._lock = threading.Lock()

    def fail(self, writes: int, error: str = "writing the strip: Input/output error"
             ) -> None:
        """Make the next *writes* writes raise HardwareError(*error*), as a flaky or
        unplugged strip does (0: work again), like gpiozero's mock pins' drive_low()."""
        with self._lock:
            self._failing, self._fault = writes, error

    def show(self, pixels: np.ndarray) -> None:
        if self.closed:
            raise HardwareError("the LED strip is closed")
        with self._lock:
            if self._failing > 0:
                self._failing -= 1
                self.failed_writes += 1
                raise HardwareError(self._fault)
            self.pixels = np.array(pixels, dtype=np.uint8).reshape(self.count, 3)
            self.frames += 1
            self.lit_frames += bool(self.pixels.any())

    def close(self) -> None:
        if not self.closed:
            try:
                self.off()
            finally:
                self.closed = True


def record(factory, strip: MockStrip, path) -> None:
    """Write the mock hardware's final state to *path* (JSON).

    Called as the hardware closes, after every device is off, so a test can see what
    a `pillowd run` subprocess left its LEDs and pins doing: ``leds`` holds the last
    frame and how many frames (lit ones too) the strip was shown; ``pins`` each GPIO
    pin's state and history, times being gpiozero's (seconds since the pin's
    previous change).
    """
    import json
    import logging
    from pathlib import Path

    pins = {info.name: {"state": pin.state, "function": pin.function,
                        "states": [[s.timestamp, s.state] for s in pin.states]}
            for info, pin in list(factory.pins.items())} if factory is not None else {}
    leds = {"pixels": strip.pixels.tolist(), "frames": strip.frames,
            "lit_frames": strip.lit_frames}
    try:
        Path(path).write_text(json.dumps({"leds": leds, "pins": pins}, indent=1))
    except OSError as err:
        logging.getLogger(__name__).warning("could not record the mock hardware to %s: %s",
                                            path, err)
