"""The interface every LED strip backend implements, and the choice of backend for a Pi."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import PillowError

__all__ = ["LedStrip", "HardwareError", "read_pi_model", "led_driver_for"]


class HardwareError(PillowError, OSError):
    """The hardware is missing, unreachable, or refused what was sent."""


class LedStrip:
    """A chain of addressable RGB LEDs.

    Backends implement :meth:`show` and, when they hold a device, :meth:`close`
    (which must be safe to call twice).
    """

    count: int

    def show(self, pixels: np.ndarray) -> None:
        """Light the strip with *pixels*: uint8, shape (count, 3), RGB, strip order."""
        raise NotImplementedError

    def off(self) -> None:
        """Turn every LED off."""
        self.show(np.zeros((self.count, 3), dtype=np.uint8))

    def close(self) -> None:
        """Release the device; the LEDs are left off. Safe to call twice."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def read_pi_model(path: str | Path = "/proc/device-tree/model") -> str:
    """The board's model string ("Raspberry Pi 5 Model B Rev 1.0"), "" when not a Pi."""
    try:
        return Path(path).read_bytes().rstrip(b"\0").decode("ascii", "replace")
    except OSError:
        return ""


def led_driver_for(model: str) -> str:
    """The LED driver that works on the board *model*: "pio", "ws281x" or "mock".

    rpi_ws281x drives the SoC's PWM/PCM/SPI blocks directly, which moved behind
    RP1 on the Pi 5 (and the 500 / CM5), so those need the kernel's PIO driver.
    """
    if not model.startswith("Raspberry Pi"):
        return "mock"
    if any(tag in model for tag in ("Raspberry Pi 5", "Raspberry Pi 500", "Compute Module 5")):
        return "pio"
    return "ws281x"
