"""The squeeze sensor: an FSR through an MCP3008 on gpiozero's mock pins, as presses with a hold and a strength."""

from __future__ import annotations

import json
import threading

import pytest
from gpiozero import DigitalOutputDevice
from gpiozero.pins.mock import MockFactory, MockPWMPin

from conftest import BASE_CONFIG, wait_for
from pillowd import config
from pillowd.config import ConfigError
from pillowd.daemon import Daemon
from pillowd.messages import decode
from pillowd.settings import SqueezeSettings
from pillowd.body.squeeze import (FAST_PERIOD, MAX_HOLD, REST_PERIOD, SqueezeSensor,
                             open_adc, strength_of)


@pytest.fixture
def factory():
    pins = MockFactory(pin_class=MockPWMPin)   # as pillowd's mock hardware makes them
    yield pins
    pins.close()


@pytest.fixture
def sensor(factory):
    """A sensor on a mock MCP3008 wired to SPI1's pins, and what it sent."""
    adc, chip = open_adc(SqueezeSettings(), factory, mock=True)
    sent: list[tuple[float, float, float]] = []   # (when, hold, strength)
    clock = {"now": 0.0}
    s = SqueezeSensor(lambda: adc.value, threshold=0.3,
                      on_squeeze=lambda hold, strength: sent.append(
                          (clock["now"], hold, strength)),
                      clock=lambda: clock["now"], close=adc.close)
    yield s, chip, sent, clock
    s.close()
    chip.close()


def drive(sensor, clock, until: float, levels) -> list[float]:
    """Run the sensor on a driven clock up to *until*, each reading at the time the
    sensor asked for; *levels(t)* is the pressure then. Returns the waits it asked."""
    s, chip = sensor
    waits = []
    while clock["now"] < until:
        chip.press(levels(clock["now"]))
        wait = s.poll()
        waits.append(wait)
        clock["now"] = round(clock["now"] + wait, 6)
    return waits


def test_the_mock_chip_answers_gpiozero_over_software_spi(factory):
    adc, chip = open_adc(SqueezeSettings(channel=3), factory, mock=True)
    try:
        chip.press(0.5, channel=3)
        assert adc.raw_value == 512
        chip.press(0.0, channel=3)
        assert adc.raw_value == 0
        chip.press(1.0, channel=3)
        assert adc.raw_value == 1023
        assert chip.conversions == 3
    finally:
        adc.close()
        chip.close()


def test_a_squeeze_that_never_passes_the_threshold_sends_nothing(sensor):
    s, chip, sent, clock = sensor
    # A minute of leaning on the pillow just under the threshold, wavering.
    waits = drive((s, chip), clock, 60.0, lambda t: 0.29 if int(t * 4) % 2 else 0.2)
    assert sent == []
    assert s.readings == len(waits) > 200
    # Untouched, it never sped up: every reading a quarter of a second apart.
    assert set(waits) == {REST_PERIOD}


def test_a_squeeze_sends_its_hold_and_strength_once_on_release(sensor):
    s, chip, sent, clock = sensor

    def squeeze(t):  # from 2 s to 3.5 s, up to 0.8 and down again
        if 2.0 <= t < 3.5:
            return 0.8 if t < 3.0 else 0.6
        return 0.05
    waits = drive((s, chip), clock, 10.0, squeeze)
    ((when, hold, strength),) = sent
    assert 3.5 <= when < 3.5 + FAST_PERIOD          # on release
    assert hold == pytest.approx(1.5, abs=FAST_PERIOD)
    assert strength == strength_of(0.8, 0.3) == 0.74   # the peak, not the last
    assert FAST_PERIOD in waits and waits[-1] == REST_PERIOD


def test_a_squeeze_held_five_minutes_sends_at_30_s_once_then_rests(sensor):
    s, chip, sent, clock = sensor
    waits = drive((s, chip), clock, 302.0, lambda t: 1.0 if 1.0 <= t < 301.0 else 0.0)
    ((when, hold, strength),) = sent
    assert 31.0 <= when < 31.0 + FAST_PERIOD
    assert hold == MAX_HOLD and strength == 1.0
    # After it was sent, nothing more to measure: back to the resting pace.
    readings_after = [w for t, w in zip(_times(waits), waits) if t > when]
    assert readings_after and set(readings_after) == {REST_PERIOD}
    assert s.presses == 1


def _times(waits):
    t, times = 0.0, []
    for w in waits:
        times.append(t)
        t = round(t + w, 6)
    return times


def test_strength_is_the_peak_scaled_from_the_threshold_to_full():
    assert strength_of(0.3, 0.3) == 0.1
    assert strength_of(1.0, 0.3) == 1.0
    assert strength_of(0.65, 0.3) == 0.55
    assert strength_of(2.0, 0.3) == 1.0


def test_the_thread_reads_the_chip_and_stops_at_once(factory):
    adc, chip = open_adc(SqueezeSettings(), factory, mock=True)
    heard = []
    got = threading.Event()

    def on_squeeze(hold, strength):
        heard.append((hold, strength))
        got.set()
    s = SqueezeSensor(lambda: adc.value, threshold=0.3, on_squeeze=on_squeeze,
                      close=adc.close)
    thread = threading.Thread(target=s.run, name="pillowd-squeeze", daemon=True)
    thread.start()
    try:
        chip.press(0.9)
        wait_for(lambda: s.squeeze.squeezed, message="the squeeze noticed")
        seen = chip.conversions
        wait_for(lambda: chip.conversions >= seen + 5, message="fast readings")
        chip.press(0.0)
        assert got.wait(10), "no press sent on release"
        ((hold, strength),) = heard
        assert 0.1 <= hold <= MAX_HOLD and strength == strength_of(0.9, 0.3)
    finally:
        s.close()
        thread.join(5)
    assert not thread.is_alive()
    s.close()   # safe twice
    chip.close()


def test_a_reading_that_fails_is_reported_and_the_loop_goes_on():
    readings = iter([OSError("lgpio: bad handle"), 0.0, 0.9, 0.0])

    def read():
        value = next(readings)
        if isinstance(value, Exception):
            raise value
        return value
    sent = []
    s = SqueezeSensor(read, threshold=0.3, on_squeeze=lambda h, st: sent.append(st))
    assert s.poll(0.0) == REST_PERIOD and s.trouble == "lgpio: bad handle"
    s.poll(0.25)
    assert s.trouble is None
    s.poll(0.5)
    s.poll(0.6)
    assert sent == [strength_of(0.9, 0.3)]


# -- check-config ----------------------------------------------------------------------


@pytest.mark.parametrize("key,pin,part", [("clock_pin", 11, "SPI0 SCLK"),
                                          ("mosi_pin", 10, "SPI0 MOSI"),
                                          ("miso_pin", 9, "SPI0 MISO"),
                                          ("select_pin", 8, "SPI0 CE0"),
                                          ("select_pin", 7, "SPI0 CE1")])
def test_check_config_refuses_spi0_whose_mosi_drives_the_leds(key, pin, part):
    with pytest.raises(ConfigError) as refused:
        config.parse(f"[squeeze]\n{key} = {pin}\n")
    why = str(refused.value)
    assert f"squeeze.{key}" in why and part in why and "drives the LEDs" in why
    assert "SPI1" in why


def test_check_config_refuses_a_squeeze_pin_another_part_uses():
    with pytest.raises(ConfigError) as refused:
        config.parse('[leds]\npin = 21\n[squeeze]\n')   # PCM on GPIO 21: SPI1's SCLK
    assert "squeeze.clock_pin" in str(refused.value)
    assert "GPIO21 is already used by leds" in str(refused.value)
    settings = config.parse("[squeeze]\nclock_pin = 5\nmosi_pin = 6\nmiso_pin = 13\n"
                            "select_pin = 26\nthreshold = 0.4\n")
    assert settings.squeeze.pins == {"clock_pin": 5, "mosi_pin": 6, "miso_pin": 13,
                                     "select_pin": 26}


# -- in the daemon ---------------------------------------------------------------------

FITTED = """
[button]
pin = 17

[squeeze]
threshold = 0.3

[scenes.hugged]
effect = "solid"
color = "#ffb347"
duration = 5
"""


@pytest.fixture
def daemon_with(make_config, monkeypatch):
    """An in-process daemon on mock hardware; *busy* GPIOs are taken by something
    else before it starts, as another program would hold them."""
    import pillowd.daemon as daemon_module
    from pillowd.hardware import open_mock
    made = []

    def make(busy=(), base=BASE_CONFIG):
        def mock_with_busy_pins(backend, leds, record_to=None):
            hardware = open_mock(leds.count)
            for pin in busy:
                made.append(DigitalOutputDevice(pin, pin_factory=hardware.pin_factory))
            return hardware
        monkeypatch.setattr(daemon_module, "open_hardware", mock_with_busy_pins)
        d = Daemon(config.load(make_config(FITTED, base=base)), environ={})
        made.insert(0, d)
        d.start()
        return d
    yield make
    for part in made:
        part.close()


def test_a_sensor_that_fails_to_open_leaves_the_button_working_and_says_why(daemon_with):
    d = daemon_with(busy=[16])   # the sensor's chip select, held by another device
    assert d.squeeze is None
    hardware = d.pillow.snapshot()["hardware"]
    assert hardware["ok"] is False
    assert "cannot use the squeeze sensor" in hardware["error"]
    assert "GPIO 21/20/19/16" in hardware["error"]
    assert "squeeze" in d.pillow.status_line()
    button = d.hardware.pin_factory.pin(17)
    button.drive_low()
    button.drive_high()               # the hug goes on the release, held that long
    wait_for(lambda: d.timeline.current().scene.name == "hugged",
             message="the button's press playing")
    assert d.hugs.presses == 1


def test_a_squeeze_in_the_daemon_presses_with_its_hold_and_strength(daemon_with):
    d = daemon_with()
    assert d.squeeze is not None and d.pillow.snapshot()["hardware"]["ok"] is True
    pressed = []
    d.hugs.pressed = lambda source, **kw: pressed.append((source, kw))
    d.squeeze_chip.press(1.0)
    wait_for(lambda: d.squeeze.squeeze.squeezed, message="the squeeze noticed")
    d.squeeze_chip.press(0.0)
    ((source, kw),) = wait_for(lambda: pressed, message="the press")
    assert source == "squeeze" and kw["strength"] == 1.0 and 0.1 <= kw["hold"] <= 30


def test_a_squeeze_sends_the_partners_a_hug_with_its_hold_and_strength(daemon_with):
    # The real press, not a stand-in: the squeeze plays the hug here, and the
    # partner's queue gets the event carrying how long and how hard it was.
    d = daemon_with(base=BASE_CONFIG.replace(
        'name = "pillow"\n', 'name = "pillow"\noutbound_name = ["pillow-hugs"]\n', 1))
    partner = d.queues.outbound[0]
    d.squeeze_chip.press(0.8)
    wait_for(lambda: d.squeeze.squeeze.squeezed, message="the squeeze noticed")
    # Held for at least 50 fast readings (each at least FAST_PERIOD after the last).
    held_from = d.squeeze.readings
    wait_for(lambda: d.squeeze.readings >= held_from + 50, message="50 readings squeezed")
    assert [m.body for m in partner.peek(32)] == []      # nothing before the release
    d.squeeze_chip.press(0.0)
    (body,) = wait_for(lambda: [m.body for m in partner.peek(32)],
                       message="the hug in the partner's queue")
    event = json.loads(body)
    assert event["event"] == "hug" and event["scene"] == "hug"
    assert event["strength"] == strength_of(0.8, 0.3) == 0.74      # the peak
    assert 50 * FAST_PERIOD - 0.05 <= event["hold"] <= MAX_HOLD
    wait_for(lambda: d.timeline.current().scene.name == "hugged",
             message="the squeeze's hug playing here")
    assert d.hugs.presses == d.squeeze.presses == 1
    # What the partner plays: the same hold and strength, decoded as any message.
    command = decode(body, d.settings)
    assert (command.hold, command.strength) == (event["hold"], 0.74)
