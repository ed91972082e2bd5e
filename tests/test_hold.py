"""The hug you feel: how long a hug was held (``hold``) and how hard (``strength``),
from the button (gpiozero's mock pins, on a clock the test drives), the page's API
and the queue, to how long and how bright it plays, in its partner's colour.

Two real pillows on Azurite: tests/test_hugs_between_pillows.py; the pages in
Chromium: tests/test_page_hugs.py and tests/test_invite_page.py."""

from __future__ import annotations

import json
import threading

import pytest
import requests
from gpiozero.pins.mock import MockFactory

from conftest import wait_for
from pillowd.body.actuators import wants_of
from pillowd.hugs.press import HugButton
from pillowd.leds.scenes import Timeline
from pillowd.messages import Rejection, decode
from test_conversation import KEY, TOKEN, at_bob, bobs_hug, from_bob, pillow  # noqa: F401


class DrivenClock:
    """A monotonic clock the test moves: ``advance(s)``; a wait on it ends when its
    event is set or the clock has passed the wait's end (never after real seconds)."""

    def __init__(self):
        self.now = 1000.0
        self._moved = threading.Condition()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        with self._moved:
            self.now += seconds
            self._moved.notify_all()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        end = self.now + seconds
        with self._moved:
            while not event.is_set() and self.now < end:
                # Woken by advance(); the event is looked at between (a release).
                self._moved.wait(0.02)
        return event.is_set()


@pytest.fixture
def button():
    """A HugButton on gpiozero's mock pin 17, on a driven clock; (pin, clock, holds)."""
    factory = MockFactory()
    clock = DrivenClock()
    holds: list[float] = []
    pressed = threading.Event()

    def on_press(hold):
        holds.append(hold)
        pressed.set()
    device = HugButton(17, pull_up=True, bounce_seconds=0, on_press=on_press,
                       pin_factory=factory, clock=clock, wait=clock.wait)
    yield factory.pin(17), clock, holds
    device.close()
    factory.close()


def hold_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "pillowd-hold"]


# -- the button: press, hold, release ----------------------------------------------

def test_the_button_sends_on_release_held_from_press_to_release(button):
    pin, clock, holds = button
    assert not hold_threads()                 # nothing waits at rest
    pin.drive_low()
    clock.advance(2.5)
    assert holds == []                        # nothing goes while it is held
    pin.drive_high()
    wait_for(lambda: holds, message="the hug on release")
    assert holds == [2.5]
    wait_for(lambda: not hold_threads(), message="the press's thread ended")


def test_a_tap_is_the_shortest_hold(button):
    pin, clock, holds = button
    pin.drive_low()
    clock.advance(0.02)
    pin.drive_high()
    wait_for(lambda: holds, message="the tap")
    assert holds == [0.1]


def test_a_button_held_five_minutes_sends_at_30_seconds_once(button):
    pin, clock, holds = button
    pin.drive_low()
    clock.advance(29.5)                        # (halves: exact in binary)
    assert holds == []
    clock.advance(0.5)
    wait_for(lambda: holds, message="the hug at 30 s, still held")
    assert holds == [30.0]
    wait_for(lambda: not hold_threads(), message="the press's thread ended")
    clock.advance(270)                         # held five minutes in all
    pin.drive_high()
    # The next press is a hug of its own; the five minutes sent nothing more.
    pin.drive_low()
    clock.advance(1.5)
    pin.drive_high()
    wait_for(lambda: len(holds) == 2, message="the next press")
    assert holds == [30.0, 1.5]


# -- the message: checked, then played longer and at its strength ----------------

@pytest.mark.parametrize("fields, reason", [
    ({"hold": 31}, "hold must be between 0.1 and 30.0, not 31"),
    ({"hold": 0.05}, "hold must be between 0.1 and 30.0"),
    ({"hold": "long"}, "hold must be a number, not str"),
    ({"hold": True}, "hold must be a number, not bool"),
    ({"strength": 1.5}, "strength must be between 0.1 and 1.0, not 1.5"),
    ({"strength": 0}, "strength must be between 0.1 and 1.0"),
    ({"strength": [1]}, "strength must be a number, not list"),
])
def test_a_hold_or_strength_out_of_range_or_not_a_number_is_rejected(
        make_config, fields, reason):
    from pillowd import config
    settings = config.load(make_config())
    with pytest.raises(Rejection, match=reason.replace(".", r"\.")):
        decode(json.dumps({"scene": "hug", **fields}), settings)


def scene_settings(make_config, extra=""):
    from pillowd import config
    return config.load(make_config(extra))


def test_a_held_hug_plays_hold_times_scale_within_max_duration(make_config):
    settings = scene_settings(make_config)
    clock = [0.0]
    timeline = Timeline(settings.scenes["idle"], clock=lambda: clock[0], hold_scale=2.0)

    def plays(fields) -> float:
        playing = timeline.play(decode(json.dumps({"scene": "hug", **fields}), settings))
        return playing.ends - playing.started
    assert plays({}) == 1.5                   # the scene's duration
    assert plays({"hold": 0.5}) == 1.5        # 0.5 × 2 is shorter than the scene's
    assert plays({"hold": 4}) == 8.0          # 4 × 2
    assert plays({"hold": 30}) == 60.0        # within the scene's max_duration (600)
    assert plays({"hold": 4, "duration": 10}) == 10.0
    held = Timeline(settings.scenes["idle"], clock=lambda: clock[0], hold_scale=0.5)
    playing = held.play(decode('{"scene": "hug", "hold": 30}', settings))
    assert playing.ends - playing.started == 15.0


def test_a_held_hug_never_plays_past_max_duration(make_config):
    settings = scene_settings(make_config)
    from dataclasses import replace
    hug = replace(settings.scenes["hug"], max_duration=20.0)
    timeline = Timeline(settings.scenes["idle"], clock=lambda: 0.0, hold_scale=2.0)
    command = decode('{"scene": "hug", "hold": 30}', settings)
    playing = timeline.play(replace(command, scene=hug))
    assert playing.ends == 20.0


def test_strength_scales_brightness_and_vibration_never_below_a_fifth(make_config):
    settings = scene_settings(make_config, """
[scenes.purr]
effect = "solid"
color = "#ff0000"
brightness = 0.8
vibration = "steady"
vibration_level = 0.5
""")
    timeline = Timeline(settings.scenes["idle"], clock=lambda: 0.0)

    def felt(fields):
        playing = timeline.play(decode(json.dumps({"scene": "purr", **fields}), settings))
        return round(playing.brightness, 6), round(wants_of(playing, 1.0).vibration, 6)
    assert felt({}) == (0.8, 0.5)
    assert felt({"strength": 1}) == (0.8, 0.5)
    assert felt({"strength": 0.5}) == (0.4, 0.25)
    assert felt({"strength": 0.1}) == (0.16, 0.1)   # a fifth of the scene's, no less
    assert felt({"strength": 0.5, "brightness": 0.5}) == (0.2, 0.25)


# -- a pillow: POST /api/hug, and a partner's held hug in its colour ---------------

def api(d, body):
    return requests.post(d.url + "api/hug", json=body, timeout=5,
                         headers={"Authorization": f"Bearer {TOKEN}"})


def test_api_hug_sends_hold_and_strength_signed_and_refuses_them_out_of_range(pillow):
    d = pillow(roster=True)
    answer = api(d, {"hold": 4.2, "strength": 0.6})
    assert answer.status_code == 202, answer.text
    (event,) = at_bob(d)
    assert event["id"] == answer.json()["id"]
    assert (event["hold"], event["strength"]) == (4.2, 0.6)
    assert KEY.verify(event)                                 # signed with the rest
    assert not KEY.verify({**event, "hold": 30})             # so none can change it
    presses = d.hugs.presses
    for body, reason in (({"hold": 45}, "hold must be between 0.1 and 30.0, not 45"),
                         ({"strength": "hard"}, "strength must be a number, not str"),
                         ({"hold": 2, "to": "bob"}, "unknown field 'to'")):
        refused = api(d, body)
        assert refused.status_code == 400 and reason in refused.json()["error"]
    assert d.hugs.presses == presses                         # nothing played
    assert at_bob(d) == [event]                              # nothing sent
    assert api(d, {}).status_code == 202                     # a tap, as before
    assert "hold" not in at_bob(d)[-1]


def test_a_partners_held_hug_plays_longer_softer_in_its_colour(pillow):
    d = pillow(roster="#3366ff")
    from_bob(d, {**bobs_hug("bob-held"), "hold": 3, "strength": 0.5})
    playing = wait_for(lambda: (d.timeline.current().message or {}).get("id") == "bob-held"
                       and d.timeline.current(), message="bob's held hug playing")
    assert playing.ends - playing.started == 6.0             # 3 s × hold_scale 2
    assert playing.params["color"] == (0x33 / 255, 0x66 / 255, 1.0)
    assert playing.brightness == playing.scene.brightness * 0.5
    state = d.pillow.snapshot()
    felt = {"hold": 3.0, "strength": 0.5, "color": "#3366ff"}
    assert state["message"] == {"id": "bob-held", "from": "bob", "text": None,
                                "reply": False, **felt}
    assert state["last_hug"] == {"from": "bob", "at": state["last_hug"]["at"],
                                 "reply": False, **felt}


def test_a_hug_without_hold_or_strength_plays_as_before(pillow):
    d = pillow()
    from_bob(d, bobs_hug("bob-plain"))
    playing = wait_for(lambda: (d.timeline.current().message or {}).get("id")
                       == "bob-plain" and d.timeline.current(), message="bob's hug")
    assert playing.ends - playing.started == 1.5
    assert playing.brightness == playing.scene.brightness
    state = d.pillow.snapshot()
    assert state["message"] == {"id": "bob-plain", "from": "bob", "text": None,
                                "reply": False}
    assert state["last_hug"]["from"] == "bob"
    assert "hold" not in state["last_hug"] and "color" not in state["last_hug"]


def test_a_hold_changed_on_the_way_is_no_partners_hug(pillow):
    d = pillow(roster="#3366ff")
    signed = KEY.signed({**bobs_hug("bob-tampered"), "hold": 1})
    d.queues.main.put(json.dumps({**signed, "hold": 30}))
    wait_for(lambda: (d.timeline.current().message or {}).get("id") == "bob-tampered",
             message="the tampered hug playing")
    state = d.pillow.snapshot()
    assert state["last_hug"] is None                          # not bob's hug
    assert "color" not in state["message"]                    # nor in bob's colour


def test_a_queue_message_with_a_hold_out_of_range_is_rejected_and_plays_nothing(pillow):
    d = pillow()
    from_bob(d, {**bobs_hug("bob-too-long"), "hold": 300})
    row = wait_for(lambda: next((o for o in d.history.page(100)
                                 if o.id == "bob-too-long"), None),
                   message="the rejection")
    assert row.outcome == "rejected"
    assert "hold must be between 0.1 and 30.0, not 300" in row.reason


def test_a_partners_hug_from_a_newer_pillow_plays_without_the_keys_it_does_not_know(
        pillow):
    """As a pillow before hold and strength would have played them, had it been
    lenient: a signed event's unknown keys are dropped, an unsigned one's refused."""
    d = pillow()
    from_bob(d, {**bobs_hug("bob-newer"), "hold": 2, "squeeze_curve": [0.2, 0.9]})
    wait_for(lambda: (d.timeline.current().message or {}).get("id") == "bob-newer",
             message="the newer pillow's hug playing")
    assert d.pillow.snapshot()["last_hug"]["from"] == "bob"
    assert d.pillow.snapshot()["message"]["hold"] == 2.0
    d.queues.main.put(json.dumps({"scene": "hug", "id": "script-typo", "hodl": 2}))
    row = wait_for(lambda: next((o for o in d.history.page(100)
                                 if o.id == "script-typo"), None), message="the typo")
    assert row.outcome == "rejected" and "unknown field 'hodl'" in row.reason
