"""LED strip on a Raspberry Pi 1-4 or Zero through rpi_ws281x (PWM, PCM or SPI)."""

from __future__ import annotations

import ctypes

import numpy as np

from .base import HardwareError, LedStrip
from .pins import STRIP_TYPES, WS281X_PINS

__all__ = ["Ws281xStrip"]


def _binding():
    # Imported here, not at module level: it exists only where it was built for a Pi
    try:
        import _rpi_ws281x
    except ImportError:
        import shlex
        import sys
        # Into the environment pillowd runs in (the checkout's .venv, or install.sh's),
        # which a bare `pip` would miss; install.sh installs it on a Pi by itself.
        raise HardwareError("rpi_ws281x is not installed: "
                            f"{shlex.quote(sys.executable)} -m pip install rpi-ws281x "
                            "(with sudo for an installed pillowd)") from None
    return _rpi_ws281x


class Ws281xStrip(LedStrip):
    """A WS2811/WS2812/SK6812 strip driven by rpi_ws281x's DMA engine.

    GPIO 18 or 12 (PWM, root, no analogue audio), 21 (PCM, root) or 10 (SPI:
    no root, member of the spi group, ``dtparam=spi=on``).
    """

    def __init__(self, count: int, *, pin: int = 18, dma: int = 10,
                 freq: int = 800_000, channel: int | None = None,
                 invert: bool = False, strip_type: str = "GRB"):
        if pin not in WS281X_PINS:
            raise HardwareError(
                f"GPIO {pin} cannot drive LEDs with rpi_ws281x: "
                f"use one of {sorted(WS281X_PINS)}")
        if strip_type.upper() not in STRIP_TYPES:
            raise HardwareError(
                f"unknown strip_type {strip_type!r}: use one of "
                f"{', '.join(STRIP_TYPES)}")
        ws = self._ws = _binding()
        self.count = count
        self.pin = pin
        strip_type = strip_type.upper()
        family = "SK6812_STRIP_" if len(strip_type) == 4 else "WS2811_STRIP_"
        self._leds = ws.new_ws2811_t()
        # The struct holds two channels; the unused one must be zeroed or the
        # library would drive whatever GPIO it finds there
        for number in range(2):
            unused = ws.ws2811_channel_get(self._leds, number)
            ws.ws2811_channel_t_count_set(unused, 0)
            ws.ws2811_channel_t_gpionum_set(unused, 0)
            ws.ws2811_channel_t_invert_set(unused, 0)
            ws.ws2811_channel_t_brightness_set(unused, 0)
        self._channel = ws.ws2811_channel_get(
            self._leds, WS281X_PINS[pin] if channel is None else channel)
        ws.ws2811_channel_t_count_set(self._channel, count)
        ws.ws2811_channel_t_gpionum_set(self._channel, pin)
        ws.ws2811_channel_t_invert_set(self._channel, int(invert))
        # 255 makes the library's scaling (value * (255 + 1)) >> 8 the identity:
        # brightness and gamma are LightOutput's, and the current model with them.
        # No gamma table is set, so the library installs the identity one.
        ws.ws2811_channel_t_brightness_set(self._channel, 255)
        ws.ws2811_channel_t_strip_type_set(self._channel, getattr(ws, family + strip_type))
        ws.ws2811_t_freq_set(self._leds, freq)
        ws.ws2811_t_dmanum_set(self._leds, dma)
        result = ws.ws2811_init(self._leds)
        if result != 0:
            reason = ws.ws2811_get_return_t_str(result)
            ws.delete_ws2811_t(self._leds)
            self._leds = None
            hint = ("SPI needs dtparam=spi=on and the spi group" if pin == 10
                    else "PWM and PCM need root")
            raise HardwareError(
                f"rpi_ws281x could not start on GPIO {pin}: {reason} ({hint})")
        # Whatever the strip type, the library's buffer holds one uint32 per LED
        # as 0xWWRRGGBB and reorders for the wire itself; little-endian (every
        # Pi), that is bytes B, G, R, W. White stays 0: colours are mixed from RGB.
        self._packed = np.zeros((count, 4), dtype=np.uint8)
        self._buffer = self._led_buffer()

    def _led_buffer(self):
        """The library's LED array as a ctypes array, or None to set LEDs one by one.

        SWIG pointers convert to their address with int(); copying the frame
        there in one memmove saves 300 Python calls to ws2811_led_set a frame.
        """
        try:
            address = int(self._ws.ws2811_channel_t_leds_get(self._channel))
        except (TypeError, ValueError):
            return None
        return (ctypes.c_uint8 * (self.count * 4)).from_address(address)

    def show(self, pixels: np.ndarray) -> None:
        if self._leds is None:
            raise HardwareError("the LED strip is closed")
        packed = self._packed
        packed[:, 2::-1] = pixels
        if self._buffer is not None:
            ctypes.memmove(self._buffer, packed.ctypes.data, packed.nbytes)
        else:
            led_set = self._ws.ws2811_led_set
            for n, value in enumerate(packed.view("<u4").ravel().tolist()):
                led_set(self._channel, n, value)
        result = self._ws.ws2811_render(self._leds)
        if result != 0:
            reason = self._ws.ws2811_get_return_t_str(result)
            raise HardwareError(f"rpi_ws281x could not show a frame: {reason}")

    def close(self) -> None:
        if self._leds is None:
            return
        try:
            self.off()
        finally:
            ws, leds = self._ws, self._leds
            self._leds = self._channel = self._buffer = None
            ws.ws2811_fini(leds)
            ws.delete_ws2811_t(leds)
