"""Prints how long a frame takes to render, per effect and through the whole LED pipeline."""

import math
import operator
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pillowd.hardware.pio import PioStrip
from pillowd.leds.effects import EFFECTS
from pillowd.leds.light import LightOutput, Transition
from pillowd.testing import PillowProcess
from pillowd.testing.config import pillow_config

COUNT = 300
FPS = 50


def median_us(fn, frames=2000, repeats=5):
    """Median over *repeats* runs of the mean µs per call of *fn(t)*, t stepping at FPS."""
    runs = []
    for r in range(repeats):
        t = 1000.0 + r
        start = time.perf_counter()
        for _ in range(frames):
            fn(t)
            t += 1 / FPS
        runs.append((time.perf_counter() - start) / frames * 1e6)
    return statistics.median(runs)


# The same effects as rpi_ws281x's examples write them, against the library's
# Python layer as released (rpi_ws281x 5.0.0, rpi_ws281x/rpi_ws281x.py):
# Color() builds an RGBW int subclass; PixelStrip.setPixelColor(n, c) does
# self[n] = c, whose __setitem__ checks for a slice and calls the SWIG C
# function ws.ws2811_led_set(channel, n, c); numPixels() is len(self), which
# calls ws.ws2811_channel_t_count_get(channel). Only the C functions are
# stood in for, by C builtins doing the same store or read on a list (a SWIG
# wrapper also converts its three arguments, so it is no cheaper). Brightness
# and gamma cost the example no Python: PixelStrip(brightness=..., gamma=table)
# hands them to the C library, which applies them in ws2811_render(), here a
# C call returning 0 as the library's does on success. The pipeline pays the
# same per-byte C work in the real driver, so neither side counts it.

class RGBW(int):  # as in rpi_ws281x 5.0.0
    def __new__(self, r, g=None, b=None, w=None):
        if (g, b, w) == (None, None, None):
            return int.__new__(self, r)
        else:
            if w is None:
                w = 0
            return int.__new__(self, (w << 24) | (r << 16) | (g << 8) | b)


def Color(red, green, blue, white=0):  # noqa: N802 - as rpi_ws281x names it
    return RGBW(red, green, blue, white)


class _SwigStandIn:
    """The C functions of _rpi_ws281x that the example's loop reaches, as C builtins."""

    ws2811_led_set = staticmethod(operator.setitem)     # channel->leds[n] = color
    ws2811_channel_t_count_get = staticmethod(len)      # channel->count
    ws2811_render = staticmethod(abs)                   # abs(0) == WS2811_SUCCESS


ws = _SwigStandIn


class PixelStrip:
    """rpi_ws281x 5.0.0's PixelStrip, the methods the examples call, verbatim."""

    def __init__(self, num, brightness=255):
        self._channel = [0] * num
        self._leds = 0
        self.size = num

    def __setitem__(self, pos, value):
        if isinstance(pos, slice):
            for n in range(*pos.indices(self.size)):
                ws.ws2811_led_set(self._channel, n, value)
        else:
            return ws.ws2811_led_set(self._channel, pos, value)

    def __len__(self):
        return ws.ws2811_channel_t_count_get(self._channel)

    def show(self):
        resp = ws.ws2811_render(self._leds)
        if resp != 0:
            raise RuntimeError(f"ws2811_render failed with code {resp}")

    def setPixelColor(self, n, color):  # noqa: N802
        self[n] = color

    def numPixels(self):  # noqa: N802
        return len(self)


_STRIP = PixelStrip(COUNT, brightness=round(0.6 * 255))


def wheel(pos):
    """strandtest.py's colour wheel, verbatim."""
    if pos < 85:
        return Color(pos * 3, 255 - pos * 3, 0)
    elif pos < 170:
        pos -= 85
        return Color(255 - pos * 3, 0, pos * 3)
    else:
        pos -= 170
        return Color(0, pos * 3, 255 - pos * 3)


def per_pixel_rainbow(t, strip=_STRIP, speed=0.2):
    # strandtest.py's rainbowCycle() for one frame: its loop over j is our t
    j = int(t * speed * 256)
    for i in range(strip.numPixels()):
        strip.setPixelColor(i, wheel((int(i * 256 / strip.numPixels()) + j) & 255))
    strip.show()


def per_pixel_breathe(t, strip=_STRIP, color=(255, 110, 199), period=4.0):
    # No breathe in strandtest.py; written as its colorWipe() sets a colour:
    # the colour worked out once a frame, then set LED by LED
    level = 0.5 - 0.5 * math.cos(2 * math.pi * (t / period % 1))
    c = Color(*(int(v * level) for v in color))
    for i in range(strip.numPixels()):
        strip.setPixelColor(i, c)
    strip.show()


def pipeline(effect_name, count=COUNT, transition=False):
    """effect -> (transition) -> LightOutput -> PIO driver bytes, as the render loop runs it."""
    effect = EFFECTS[effect_name]
    params = effect.resolve({})
    source = lambda t: effect(t, count, params)  # noqa: E731
    if transition:
        other = EFFECTS["solid"]
        other_params = other.resolve({"color": "#202040"})
        old = lambda t: other(t, count, other_params)  # noqa: E731
        # start far in the past enough that every benchmarked frame is mid-fade
        source = Transition(old, source, start=0.0, seconds=1e9)
    light = LightOutput(count, brightness=0.6, max_milliamps=2000)
    # /dev/null: the real packing and the real pwrite syscall, minus the kernel driver
    strip = PioStrip(count, device="/dev/null")

    def frame(t):
        pixels, _ = light.render(source(t))
        strip.show(pixels)
    return frame


def daemon_cpu(effect: str, seconds: float) -> float:
    """Percent of one core `pillowd run` uses over *seconds* showing *effect* at idle."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text(pillow_config(f"{tmp}/state", leds={"count": COUNT},
                                         scenes={"idle": {"effect": effect,
                                                          "color": "#302060"}}))
        with PillowProcess(config) as daemon:
            daemon.start()
            time.sleep(3)  # past start-up work
            stat = Path(f"/proc/{daemon.pid}/stat")
            ticks = os.sysconf("SC_CLK_TCK")

            def cpu():
                fields = stat.read_text().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / ticks
            start_cpu, start = cpu(), time.monotonic()
            time.sleep(seconds)
            return 100 * (cpu() - start_cpu) / (time.monotonic() - start)


def static_scene_cpu(seconds=60):
    """The daemon's CPU over *seconds* with a static scene (target ≤ 1 % of a core)."""
    return daemon_cpu("solid", seconds)


def main():
    print(f"pillowd LED render benchmark: {COUNT} LEDs, numpy {np.__version__}, "
          f"Python {sys.version.split()[0]}, median of 5 runs of 2000 frames\n")
    print(f"{'effect':<12}{'effect µs':>11}{'pipeline µs':>13}")
    for name in EFFECTS:
        effect = EFFECTS[name]
        params = effect.resolve({})
        alone = median_us(lambda t: effect(t, COUNT, params))
        whole = median_us(pipeline(name))
        print(f"{name:<12}{alone:>11.1f}{whole:>13.1f}")

    print("\nwhole pipeline, mid-transition (solid -> effect):")
    for name in ("breathe", "rainbow"):
        print(f"  {name:<10}{median_us(pipeline(name, transition=True)):>8.1f} µs")

    print("\nvectorised pipeline vs per-pixel Python loop (strandtest.py's wheel() and"
          " rainbowCycle(),\nrpi_ws281x 5.0.0's Color/setPixelColor per LED, gamma and"
          " brightness left to the C library):")
    for name, loop in (("breathe", per_pixel_breathe), ("rainbow", per_pixel_rainbow)):
        ours = median_us(pipeline(name))
        theirs = median_us(loop, frames=300)
        print(f"  {name:<10} pipeline {ours:7.1f} µs   per-pixel {theirs:8.1f} µs"
              f"   {theirs / ours:5.1f}× faster")

    seconds = float(os.environ.get("BENCH_CPU_SECONDS", 60))
    print(f"\ndaemon CPU over {seconds:.0f} s, {COUNT} LEDs, mock strip, no page open:")
    static = static_scene_cpu(seconds)
    print(f"  static scene (solid)     {static:5.2f} % of one core")
    animated = daemon_cpu("breathe", seconds)
    print(f"  animated scene (breathe) {animated:5.2f} % of one core")


if __name__ == "__main__":
    main()
