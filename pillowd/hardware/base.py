"""What the pillow's LED strip offers, whichever driver moves the bits."""

from __future__ import annotations

import numpy as np

from ..errors import PillowError


class HardwareError(PillowError, OSError):
    """The pillow's hardware cannot be opened or driven."""


class LedStrip:
    """A strip of RGB LEDs shown a whole frame at a time."""

    count: int

    def show(self, pixels: np.ndarray) -> None:
        """Show *pixels*: uint8 (count, 3) RGB in strip order."""
        raise NotImplementedError

    def off(self) -> None:
        self.show(np.zeros((self.count, 3), dtype=np.uint8))

    def close(self) -> None:
        """Turn the LEDs off and let go of the device; safe twice."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
