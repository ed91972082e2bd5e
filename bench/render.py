"""Prints how long a frame takes to render, per effect and through the whole LED pipeline."""

import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from pillowd.effects import EFFECTS  # noqa: E402
from pillowd.hardware.pio import PioStrip  # noqa: E402
from pillowd.light import LightOutput, Transition  # noqa: E402

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


# The same effects as rpi_ws281x's examples write them: a Python loop calling
# strip.setPixelColor(i, Color(r, g, b)) per pixel. ExampleStrip has the same
# Python call chain as rpi_ws281x.PixelStrip (setPixelColor -> __setitem__ ->
# ws2811_led_set), with the C setter replaced by a list store.

def _gamma_table(gamma=2.2):
    return [round(255 * (i / 255) ** gamma) for i in range(256)]


_GAMMA = _gamma_table()


def Color(red, green, blue, white=0):  # noqa: N802 - as rpi_ws281x names it
    return (white << 24) | (red << 16) | (green << 8) | blue


def _led_set(leds, n, value):
    leds[n] = value


class ExampleStrip:
    def __init__(self, count):
        self.size = count
        self._leds = [0] * count

    def __setitem__(self, pos, value):
        return _led_set(self._leds, pos, value)

    def setPixelColor(self, n, color):  # noqa: N802
        self[n] = color

    def numPixels(self):  # noqa: N802
        return self.size


_STRIP = ExampleStrip(COUNT)


def per_pixel_breathe(t, strip=_STRIP, color=(255, 110, 199), period=4.0, brightness=0.6):
    level = (0.5 - 0.5 * math.cos(2 * math.pi * (t / period % 1))) * brightness
    for i in range(strip.numPixels()):
        r, g, b = (_GAMMA[int(c * level)] for c in color)
        strip.setPixelColor(i, Color(r, g, b))


def _wheel(pos):
    # rpi_ws281x strandtest.py's colour wheel
    if pos < 85:
        return pos * 3, 255 - pos * 3, 0
    if pos < 170:
        pos -= 85
        return 255 - pos * 3, 0, pos * 3
    pos -= 170
    return 0, pos * 3, 255 - pos * 3


def per_pixel_rainbow(t, strip=_STRIP, speed=0.2, brightness=0.6):
    shift = int(t * speed * 256)
    count = strip.numPixels()
    for i in range(count):
        r, g, b = _wheel((i * 256 // count + shift) & 255)
        strip.setPixelColor(i, Color(_GAMMA[int(r * brightness)], _GAMMA[int(g * brightness)],
                                     _GAMMA[int(b * brightness)]))


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
        config.write_text(f"""
[pillow]
state_dir = "{tmp}/state"
[hardware]
backend = "mock"
[leds]
count = {COUNT}
[web]
host = "127.0.0.1"
port = 0
[scenes.idle]
effect = "{effect}"
color = "#302060"
""")
        proc = subprocess.Popen([sys.executable, "-m", "pillowd", "run", "--config",
                                 str(config)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        try:
            for line in proc.stdout:
                if "status page at" in line:
                    break
            time.sleep(3)  # past start-up work
            stat = Path(f"/proc/{proc.pid}/stat")
            ticks = os.sysconf("SC_CLK_TCK")

            def cpu():
                fields = stat.read_text().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / ticks
            start_cpu, start = cpu(), time.monotonic()
            time.sleep(seconds)
            return 100 * (cpu() - start_cpu) / (time.monotonic() - start)
        finally:
            proc.terminate()
            proc.wait(10)


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

    print("\nvectorised pipeline vs per-pixel Python loop (rpi_ws281x example style,"
          " effect, gamma, setPixelColor per LED; no power limit):")
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
