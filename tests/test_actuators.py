"""Actuators on gpiozero's mock pins: patterns, limits under a flood, and off on failure."""

import threading
import time

import pytest
from gpiozero.pins import mock as gpiozero_mock
from gpiozero.pins.mock import MockFactory, MockPWMPin

from conftest import wait_for
from pillowd import config
from pillowd.body.actuators import Actuators
from pillowd.body.parts import Limit, Vibration, Warmer, build_parts
from pillowd.leds.scenes import Timeline
from pillowd.messages import decode, encode
from pillowd.settings import Limits

TICK = 0.02

SETTINGS = config.parse("""
[actuators.vibration]
pin = 23
max_level = 1.0
max_on_seconds = 1.0
duty_cap = 0.3
window_seconds = 5
cooldown_seconds = 0.5

[actuators.servo]
pin = 24
min_angle = -30
max_angle = 30

[actuators.warmer]
pin = 25
max_on_seconds = 2

[scenes.idle]
effect = "solid"

[scenes.beat]
effect = "solid"
vibration = "heartbeat"
vibration_level = 1.0

[scenes.pulse]
effect = "solid"
vibration = "pulse"
vibration_level = 0.6

[scenes.buzz]
effect = "solid"
vibration = "steady"
vibration_level = 1.0
servo_angle = 80
warmer = true
duration = 30
""")


class FakeClock:
    """Monotonic seconds that move only when told; gpiozero's mock pins read it too."""

    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    # The mock pins stamp their state histories with this, so the histories are
    # exact in the fake time the actuators were driven at.
    monkeypatch.setattr(gpiozero_mock, "monotonic", fake)
    return fake


OPENED = []


@pytest.fixture
def factory():
    f = MockFactory(pin_class=MockPWMPin)
    yield f
    while OPENED:
        OPENED.pop().close()
    f.close()


def rig(clock, factory, settings=SETTINGS, stall_seconds=0.5):
    timeline = Timeline(settings.scenes["idle"], clock=clock)
    parts = build_parts(settings.actuators, factory, horizon=TICK)
    actuators = Actuators(parts, timeline, period=TICK, stall_seconds=stall_seconds,
                          clock=clock)
    OPENED.append(actuators)
    return timeline, actuators


def run_for(clock, actuators, seconds, each_tick=None):
    """Tick the actuators every TICK for *seconds* of fake time."""
    start = clock.now
    for i in range(round(seconds / TICK)):
        clock.now = start + i * TICK
        if each_tick:
            each_tick(i)
        actuators.tick()
    clock.now = start + round(seconds / TICK) * TICK


def history(pin, created):
    """[(absolute time, state)] from a mock pin's (delta, state) history."""
    t, out = created, []
    for delta, state in pin.states:
        t += delta
        out.append((t, float(state)))
    return out


def on_spans(pin, created, end):
    """[(start, stop)] of every stretch the pin was not 0, up to *end*."""
    spans, since = [], None
    for t, state in history(pin, created):
        if state and since is None:
            since = t
        elif not state and since is not None:
            spans.append((since, t))
            since = None
    if since is not None:
        spans.append((since, end))
    return spans


def worst_window(spans, window):
    """The most on-time inside any window of *window* seconds (it peaks at a span edge)."""
    def used(a, b):
        return sum(max(0.0, min(e, b) - max(s, a)) for s, e in spans)
    edges = [s for s, _ in spans] + [e - window for _, e in spans]
    return max((used(a, a + window) for a in edges), default=0.0)


def command(settings, **fields):
    return decode(encode(fields), settings)


# -- patterns are what they claim ----------------------------------------------------


def test_heartbeat_is_a_strong_and_a_soft_beat_each_second(clock, factory):
    timeline, actuators = rig(clock, factory)
    pin = factory.pin(23)
    created = clock.now
    timeline.play(command(SETTINGS, scene="beat"))
    run_for(clock, actuators, 2.0)
    pin.assert_states_and_times([(0, 0), (0, 1.0), (0.1, 0), (0.1, 0.7), (0.1, 0),
                                 (0.7, 1.0), (0.1, 0), (0.1, 0.7), (0.1, 0)])
    assert len(pin.states) == 9
    # Exactly, not within gpiozero's usual 50 ms: the clock is fake.
    assert [round(t - created, 6) for t, _ in history(pin, created)] == [
        0, 0, 0.1, 0.2, 0.3, 1.0, 1.1, 1.2, 1.3]


def test_pulse_is_half_a_second_on_at_the_scene_level(clock, factory):
    timeline, actuators = rig(clock, factory)
    pin = factory.pin(23)
    timeline.play(command(SETTINGS, scene="pulse"))
    run_for(clock, actuators, 2.0)
    pin.assert_states_and_times([(0, 0), (0, 0.6), (0.5, 0), (0.5, 0.6), (0.5, 0)])
    assert len(pin.states) == 5


def test_a_message_may_lower_the_vibration_never_raise_it(clock, factory):
    timeline, actuators = rig(clock, factory)
    pin = factory.pin(23)
    timeline.play(command(SETTINGS, scene="pulse", vibration=0.5))
    run_for(clock, actuators, 0.2)
    assert pin.state == pytest.approx(0.3)
    timeline.play(command(SETTINGS, scene="buzz", vibration=0.0, warmer=False))
    run_for(clock, actuators, 0.2)
    assert pin.state == 0 and factory.pin(25).state == 0
    with pytest.raises(ValueError, match="vibration must be between 0 and 1"):
        command(SETTINGS, scene="pulse", vibration=1.5)


def test_servo_angles_are_clamped_to_the_allowed_travel(clock, factory):
    timeline, actuators = rig(clock, factory)
    servo = actuators.parts["servo"]
    assert factory.pin(24).state == 0          # no pulses until a scene asks
    timeline.play(command(SETTINGS, scene="buzz"))   # asks for 80 degrees
    run_for(clock, actuators, 0.1)
    assert servo.value == 30 and servo.device.angle == pytest.approx(30)
    # 30 degrees on a 1..2 ms servo at 50 Hz: a 1.667 ms pulse, duty 0.0833.
    assert factory.pin(24).state == pytest.approx(1.5 / 20 + (30 / 180) / 20)
    timeline.idle()
    run_for(clock, actuators, 0.1)
    assert servo.value is None and factory.pin(24).state == 0


# -- limits: below everything, numerically checked on the pin history ---------------


def test_limit_cuts_a_steady_motor_and_rests_it(clock, factory):
    limit = Limit(Limits(max_on_seconds=0.3, duty_cap=1.0, window_seconds=10,
                         cooldown_seconds=0.2), horizon=TICK)
    motor = Vibration(23, max_level=0.8, limit=limit, pin_factory=factory)
    pin = factory.pin(23)
    start = clock.now
    for i in range(60):   # asks for full power, all the time, for 1.2 s
        clock.now = start + i * TICK
        motor.set(1.0, clock.now)
    # 0.8 (max_level) for 0.28 s (the last tick before 0.3 s), 0.2 s of rest, again.
    pin.assert_states_and_times([(0, 0), (0, 0.8), (0.28, 0), (0.2, 0.8), (0.28, 0),
                                 (0.2, 0.8)])
    spans = on_spans(pin, start, clock.now)
    assert max(e - s for s, e in spans) <= 0.3


def test_a_flood_of_1000_messages_never_keeps_the_motor_on_past_its_limits(
        clock, factory):
    timeline, actuators = rig(clock, factory)
    pin, warmer_pin = factory.pin(23), factory.pin(25)
    created = clock.now
    scenes = ["buzz", "beat", "pulse"]
    bodies = [encode({"scene": scenes[i % 3] if i % 10 else "buzz",
                      "from": f"sender {i}", "vibration": 1.0}) for i in range(1000)]

    def deliver(i):  # one message per tick, through the real decode and timeline
        if i < len(bodies):
            timeline.play(decode(bodies[i], SETTINGS), f"m{i}")
    run_for(clock, actuators, 40.0, deliver)   # 20 s of flood, then 20 s of the last

    v = SETTINGS.actuators.vibration
    limits = v.limits
    spans = on_spans(pin, created, clock.now)
    assert spans, "the motor never ran: this test would prove nothing"
    longest = max(e - s for s, e in spans)
    assert longest <= limits.max_on_seconds + 1e-9
    assert worst_window(spans, limits.window_seconds) <= (
        limits.duty_cap * limits.window_seconds + 1e-9)
    assert max(state for _, state in history(pin, created)) <= v.max_level
    # After each cut the motor rested at least cooldown_seconds.
    cut_by_limit = [(a, b) for a, b in zip(spans, spans[1:])
                    if a[1] - a[0] >= limits.max_on_seconds - TICK - 1e-9]
    assert cut_by_limit
    for (_, stop), (again, _) in cut_by_limit:
        assert again - stop >= limits.cooldown_seconds - 1e-9
    w = SETTINGS.actuators.warmer
    warm = on_spans(warmer_pin, created, clock.now)
    assert warm and max(e - s for s, e in warm) <= w.limits.max_on_seconds


def test_the_watchdog_cuts_a_motor_at_its_limit_even_between_ticks(clock, factory):
    timeline, actuators = rig(clock, factory, stall_seconds=100)
    pin = factory.pin(23)
    timeline.play(command(SETTINGS, scene="buzz"))
    actuators.tick()
    assert pin.state == 1.0
    clock.now += 1.0     # no tick for a whole max_on_seconds: the watchdog's pass
    actuators.parts["vibration"].enforce(clock.now)
    assert pin.state == 0
    assert actuators.parts["vibration"].limit.tripped == "max_on"


# -- off whenever something goes wrong -----------------------------------------------


class Stuck:
    """A timeline that plays *scene* until told to hang or to raise."""

    def __init__(self, timeline):
        self.timeline = timeline
        self.hang = threading.Event()
        self.release = threading.Event()
        self.fail = False

    def on_change(self, listener):
        self.timeline.on_change(listener)

    def current(self):
        if self.fail:
            raise RuntimeError("injected fault")
        if self.hang.is_set():
            self.release.wait(10)
        return self.timeline.current()


def start_loops(actuators):
    threads = [threading.Thread(target=actuators.run, daemon=True),
               threading.Thread(target=actuators.watch, daemon=True)]
    for t in threads:
        t.start()
    return actuators, threads


def test_a_stalled_loop_is_turned_off_by_the_watchdog_within_half_a_second(factory):
    timeline = Timeline(SETTINGS.scenes["idle"])
    stuck = Stuck(timeline)
    parts = build_parts(SETTINGS.actuators, factory, horizon=TICK)
    actuators = Actuators(parts, stuck, period=TICK, stall_seconds=0.5)
    OPENED.append(actuators)
    pin, warmer = factory.pin(23), factory.pin(25)
    stop, threads = start_loops(actuators)
    try:
        timeline.play(command(SETTINGS, scene="buzz"))
        wait_for(lambda: pin.state == 1.0 and warmer.state == 1, message="motor on")
        stuck.hang.set()
        hung_at = time.monotonic()
        wait_for(lambda: pin.state == 0 and warmer.state == 0, timeout=3,
                 message="the watchdog's all-off")
        off_after = time.monotonic() - hung_at
        assert off_after < 0.5 + 0.25   # stall_seconds plus scheduling slack
        assert actuators.stalled
        time.sleep(0.2)                 # still hung: nothing turned itself back on
        assert pin.state == 0 and warmer.state == 0
    finally:
        stuck.release.set()
        stop.stop()
        for t in threads:
            t.join(2)
    assert pin.state == 0


def test_a_crash_in_the_loop_turns_everything_off_and_keeps_it_off(factory):
    timeline = Timeline(SETTINGS.scenes["idle"])
    stuck = Stuck(timeline)
    parts = build_parts(SETTINGS.actuators, factory, horizon=TICK)
    actuators = Actuators(parts, stuck, period=TICK)
    OPENED.append(actuators)
    pin, warmer = factory.pin(23), factory.pin(25)
    stop, threads = start_loops(actuators)
    try:
        timeline.play(command(SETTINGS, scene="buzz"))
        wait_for(lambda: pin.state == 1.0 and warmer.state == 1, message="motor on")
        stuck.fail = True
        wait_for(lambda: pin.state == 0 and warmer.state == 0, timeout=2,
                 message="everything off after the fault")
        assert actuators.fault and "injected fault" in actuators.fault
        stuck.fail = False       # even when the cause goes away, the fault latches
        marks = len(pin.states)
        time.sleep(0.2)
        assert pin.state == 0 and len(pin.states) == marks
    finally:
        stop.stop()
        for t in threads:
            t.join(2)


def test_parts_are_off_after_close_and_close_is_safe_twice(clock, factory):
    timeline, actuators = rig(clock, factory)
    timeline.play(command(SETTINGS, scene="buzz"))
    actuators.tick()
    assert factory.pin(23).state == 1.0 and factory.pin(25).state == 1
    actuators.close()
    actuators.close()
    actuators.all_off()
    assert all(factory.pin(n).state == 0 for n in (23, 24, 25))


def test_a_relay_switching_on_low_is_off_high(clock, factory):
    limit = Limit(Limits(10, 1.0, 60, 0), horizon=TICK)
    warmer = Warmer(25, active_high=False, limit=limit, pin_factory=factory)
    assert factory.pin(25).state == 1     # off, for an active-low relay
    warmer.set(True, clock.now)
    assert factory.pin(25).state == 0
    warmer.close()
    assert factory.pin(25).state == 1 or factory.pin(25).function == "input"


def test_no_actuators_configured_means_no_pins_touched(clock, factory):
    settings = config.parse('[scenes.idle]\neffect = "solid"\nvibration = "steady"\n')
    timeline, actuators = rig(clock, factory, settings)
    run_for(clock, actuators, 0.2)
    assert actuators.values == {} and factory.pins == {}


def test_check_config_names_bad_actuator_keys_and_lines():
    with pytest.raises(config.ConfigError) as caught:
        config.parse('[scenes.idle]\neffect = "solid"\nvibration = "wobble"\n\n'
                     '[actuators.vibration]\npin = 23\nduty_cap = 3\n\n'
                     '[actuators.servo]\npin = 23\n\n[actuators.warmer]\nmax_on_seconds = 5\n')
    problems = {p.key: (p.line, p.why) for p in caught.value.problems}
    assert problems["scenes.idle.vibration"][0] == 3
    assert "unknown pattern 'wobble'" in problems["scenes.idle.vibration"][1]
    assert problems["actuators.vibration.duty_cap"] == (7, "must be at most 1, not 3")
    assert problems["actuators.servo.pin"] == (10, "GPIO23 is already used by "
                                               "actuators.vibration")
    assert problems["actuators.warmer.pin"][0] == 12
    assert "missing" in problems["actuators.warmer.pin"][1]
