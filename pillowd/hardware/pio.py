"""LED strip on a Raspberry Pi 5 through the kernel's ws2812-pio driver (/dev/leds0)."""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat

import numpy as np

from .base import HardwareError, LedStrip

__all__ = ["PioStrip", "KERNEL_GAMMA"]

# What drivers/misc/ws2812-pio-rp1.c (raspberrypi/linux, rpi-6.6.y and later)
# expects and does, which this module relies on:
# - a write at offset 0 of exactly 1 byte sets the brightness (default from
#   the overlay's `brightness`, 255 unless set); each channel sent becomes
#   ws2812_gamma[val * brightness / 255];
# - otherwise the bytes land in a buffer of num_leds * 4 bytes, read back as
#   little-endian u32s with red in bits 0-7, green 8-15, blue 16-23, white
#   24-31: "Write data to the /dev/* entry in a 4 bytes-per-pixel format in
#   RGBW order: RR GG BB WW" (the commit adding the driver);
# - a write that fills the buffer to its end is sent at once; a shorter one
#   waits HZ/20 and blanks the rest, hence num_leds in the overlay should
#   equal leds.count.
# - ws2812_gamma is GammaE = 255 * (i / 255) ** (1 / 0.45), truncated; this
#   formula reproduces the kernel's table entry for entry.
KERNEL_GAMMA = np.floor(
    255 * (np.arange(256) / 255) ** (1 / 0.45)).astype(np.uint8)


def _undo_kernel_gamma() -> np.ndarray:
    """For each duty wanted, the byte the kernel turns into the largest duty not above it.

    LightOutput has already applied gamma and estimated the current from the
    duties; sending them through the kernel's gamma again would darken every
    colour and break the estimate. Never rounding up keeps the estimate an
    upper bound.
    """
    inverse = np.zeros(256, dtype=np.uint8)
    for duty in range(256):
        below = np.flatnonzero(KERNEL_GAMMA <= duty)
        best = KERNEL_GAMMA[below].max()
        inverse[duty] = below[KERNEL_GAMMA[below] == best][0]
    return inverse


_INVERSE = _undo_kernel_gamma()


def _not_writable(device: str) -> str:
    """Why this process may not write *device*, and the fix, in one line."""
    def name(lookup, number):
        try:
            return lookup(number)[0]
        except KeyError:
            return str(number)
    try:
        st = os.stat(device)
        owner = (f"{name(pwd.getpwuid, st.st_uid)}:{name(grp.getgrgid, st.st_gid)} "
                 f"mode {stat.S_IMODE(st.st_mode):04o}")
    except OSError as exc:
        owner = exc.strerror
    user = name(pwd.getpwuid, os.geteuid())
    groups = sorted(name(grp.getgrgid, g) for g in {os.getegid(), *os.getgroups()})
    # The kernel creates the device root-only; install.sh's udev rule gives it to
    # gpio, and pillowd.service runs with SupplementaryGroups=gpio.
    return (f"cannot write {device} ({owner}) as {user} (groups: {', '.join(groups)}): "
            f"give it to group gpio with install.sh's udev rule "
            f"/etc/udev/rules.d/60-pillowd-leds.rules (then 'sudo udevadm trigger'), "
            f"with {user} in group gpio")


class PioStrip(LedStrip):
    """A WS2812 strip on the Pi 5's RP1 PIO, written as a character device.

    Needs ``dtoverlay=ws2812-pio,gpio=PIN,num_leds=COUNT`` in config.txt and
    write access to *device* (root, or a udev rule giving it to a group).
    *pin* only goes into the error that names the overlay line.
    """

    def __init__(self, count: int, *, device: str = "/dev/leds0", pin: int = 10):
        self.count = count
        self.device = device
        self._buffer = np.zeros((count, 4), dtype=np.uint8)
        # Pixels padded to 4 bytes, W always 0 (and _INVERSE[0] == 0), so one
        # contiguous lookup fills the whole buffer
        self._padded = np.zeros((count, 4), dtype=np.uint8)
        try:
            self._fd = os.open(device, os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise HardwareError(
                f"no {device}: the ws2812-pio overlay is not loaded; add "
                f"'dtoverlay=ws2812-pio,gpio={pin},num_leds={count}' to "
                f"/boot/firmware/config.txt and reboot") from None
        except PermissionError:
            raise HardwareError(_not_writable(device)) from None
        except OSError as exc:
            raise HardwareError(f"opening {device}: {exc.strerror}") from None
        # Brightness 255 makes the kernel pass each byte straight to its gamma
        # table, so the brightness and the current model stay ours
        self._write(b"\xff")

    def _write(self, data) -> None:
        try:
            # pwrite at 0: the driver has no llseek, and every frame starts at LED 0
            os.pwrite(self._fd, data, 0)
        except OSError as exc:
            if exc.errno in (errno.EFBIG, errno.ENOSPC):
                raise HardwareError(
                    f"{self.device} holds fewer LEDs than {self.count}: set "
                    f"num_leds={self.count} in the ws2812-pio overlay") from None
            raise HardwareError(f"writing {self.device}: {exc.strerror}") from None

    def show(self, pixels: np.ndarray) -> None:
        if self._fd is None:
            raise HardwareError(f"{self.device} is closed")
        self._padded[:, :3] = pixels
        # The method skips np.take's Python wrapper; mode="clip" skips the
        # bounds check a uint8 index into 256 entries cannot fail
        _INVERSE.take(self._padded, out=self._buffer, mode="clip")
        self._write(self._buffer)

    def close(self) -> None:
        if self._fd is None:
            return
        try:
            self.off()
        finally:
            os.close(self._fd)
            self._fd = None
