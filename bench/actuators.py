"""Measures how fast the actuator safety nets act in real time, on gpiozero mock pins."""

import logging
import statistics
import threading
import time

from gpiozero.pins.mock import MockFactory, MockPWMPin

from pillowd import config
from pillowd.body.actuators import Actuators
from pillowd.body.parts import build_parts
from pillowd.leds.scenes import Timeline
from pillowd.messages import decode
from pillowd.testing.config import toml

SETTINGS = config.parse(toml({
    "actuators.vibration": {"pin": 23, "max_level": 1.0, "max_on_seconds": 0.3,
                            "duty_cap": 1.0, "cooldown_seconds": 0.1},
    "scenes.idle": {"effect": "solid"},
    "scenes.buzz": {"effect": "solid", "vibration": "steady", "vibration_level": 1.0},
}))
PERIOD, STALL = 0.02, 0.5


class Hangable:
    def __init__(self, timeline):
        self.timeline, self.hang, self.release = timeline, threading.Event(), threading.Event()

    def on_change(self, listener):
        self.timeline.on_change(listener)

    def current(self):
        if self.hang.is_set():
            self.release.wait()
        return self.timeline.current()


# The same with no limit near, so only the watchdog's stall check can cut it.
LONG = config.parse(toml({
    "actuators.vibration": {"pin": 23, "max_level": 1.0, "max_on_seconds": 60},
    "scenes.idle": {"effect": "solid"},
    "scenes.buzz": {"effect": "solid", "vibration": "steady", "vibration_level": 1.0},
}))


def rig(settings=SETTINGS):
    factory = MockFactory(pin_class=MockPWMPin)
    timeline = Timeline(settings.scenes["idle"])
    loop_view = Hangable(timeline)
    actuators = Actuators(build_parts(settings.actuators, factory, PERIOD), loop_view,
                          period=PERIOD, stall_seconds=STALL)
    stop = actuators  # stop() ends both loops
    threads = [threading.Thread(target=f, name=f"bench-{f.__name__}", daemon=True)
               for f in (actuators.run, actuators.watch)]
    for t in threads:
        t.start()
    return factory, timeline, loop_view, actuators, stop, threads


def stall_latency():
    factory, timeline, view, actuators, stop, threads = rig(LONG)
    pin = factory.pin(23)
    timeline.play(decode("buzz", SETTINGS))
    while pin.state != 1.0:
        time.sleep(0.001)
    view.hang.set()
    while pin.state != 0:
        time.sleep(0.0005)
    off_at = time.monotonic()
    last_tick = actuators.heartbeat   # the tick that hung
    view.release.set()
    stop.stop()
    for t in threads:
        t.join()
    actuators.close()
    factory.close()
    return off_at - last_tick


def on_spans(seconds=3.0):
    factory, timeline, view, actuators, stop, threads = rig()
    pin = factory.pin(23)
    timeline.play(decode("buzz", SETTINGS))
    time.sleep(seconds)
    stop.stop()
    for t in threads:
        t.join()
    spans, on = [], None
    t = 0.0
    for delta, state in pin.states:
        t += delta
        if state and on is None:
            on = t
        elif not state and on is not None:
            spans.append(t - on)
            on = None
    actuators.close()
    factory.close()
    return spans[:-1]   # the last one was cut by the stop, not by the limit


def main():
    logging.disable(logging.WARNING)   # the all-off warnings are expected here
    stalls = [stall_latency() for _ in range(10)]
    print(f"watchdog: outputs off {statistics.median(stalls) * 1000:.0f} ms median, "
          f"{max(stalls) * 1000:.0f} ms worst after the last tick "
          f"(stall_seconds = {STALL * 1000:.0f} ms, 10 stalls)")
    spans = [s for _ in range(3) for s in on_spans()]
    print(f"max_on_seconds = 300 ms: continuous on-times {min(spans) * 1000:.0f}.."
          f"{max(spans) * 1000:.0f} ms over {len(spans)} cuts "
          f"(loop period {PERIOD * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
