"""What the Pi's header offers an LED strip, as plain data: no native library is imported."""

from __future__ import annotations

__all__ = ["WS281X_PINS", "STRIP_TYPES"]

#: GPIO -> PWM channel that rpi_ws281x drives it with; 21 uses PCM and 10 SPI, both
#: on channel 0
WS281X_PINS = {12: 0, 18: 0, 13: 1, 19: 1, 21: 0, 10: 0}

#: colour orders the strip's chips expect; four letters for RGBW (SK6812) chips
STRIP_TYPES = (
    "RGB", "RBG", "GRB", "GBR", "BRG", "BGR",
    "RGBW", "RBGW", "GRBW", "GBRW", "BRGW", "BGRW",
)
