"""The trouble cue: one LED blinks while the queue is offline or a partner refuses hugs; never in quiet hours."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from conftest import wait_for
from pillowd import config
from pillowd.leds.cue import (BLINK_SECONDS, Cue, CueLook, Facts, blink, lit, next_edge,
                         trouble_at)
from pillowd.daemon import Daemon
from pillowd.leds.effects import parse_color
from pillowd.hardware import MockStrip
from pillowd.leds.light import LightOutput
from pillowd.leds.render import Renderer
from pillowd.leds.scenes import Timeline
from pillowd.testing.azurite import Azurite, free_port

AMBER = parse_color("#ff8800")
LOOK = CueLook(AMBER, every=10.0)


# -- the overlay, at exact times -----------------------------------------------------


@pytest.mark.parametrize("t, on", [(-0.1, False), (0.0, True), (0.49, True), (0.5, False),
                                   (9.99, False), (10.0, True), (10.25, True),
                                   (10.5, False), (3600.0, True)])
def test_the_led_is_lit_half_a_second_at_the_start_of_every_period(t, on):
    assert lit(LOOK, t) is on


@pytest.mark.parametrize("t, edge", [(-1.0, 0.0), (0.0, 0.5), (0.2, 0.5), (0.5, 10.0),
                                     (7.0, 10.0), (10.0, 10.5), (10.5, 20.0)])
def test_the_next_edge_is_when_it_turns_on_or_off(t, edge):
    assert next_edge(LOOK, t) == pytest.approx(edge)


def test_blink_sets_only_its_led_and_never_writes_into_the_frame():
    pixels = np.full((6, 3), 7, np.uint8)
    shown = np.array([255, 100, 0], np.uint8)
    at = blink(pixels, 10.1, LOOK, shown)
    assert at[0].tolist() == [255, 100, 0] and (at[1:] == 7).all()
    assert (pixels == 7).all()                      # a replayed cycle's frame stays
    assert blink(pixels, 11.0, LOOK, shown) is pixels


# -- the scheduling piece ---------------------------------------------------------------


def test_trouble_shows_once_it_has_lasted_the_patience():
    assert trouble_at(100.0, None, None, 120) == (None, None)
    assert trouble_at(100.0, 50.0, None, 120) == (None, 170.0)
    assert trouble_at(170.0, 50.0, None, 120) == ("offline", None)
    assert trouble_at(100.0, None, 90.0, 120) == (None, 210.0)
    assert trouble_at(300.0, None, 90.0, 120) == ("partner_away", None)
    # Both: the pillow's own queue first, and a pending offline takes over when due.
    assert trouble_at(300.0, 250.0, 90.0, 120) == ("partner_away", 370.0)
    assert trouble_at(370.0, 250.0, 90.0, 120) == ("offline", None)


class Snapshot:
    def __init__(self):
        self.facts = Facts(offline=False, partner_away=False, quiet=False)
        self.cue = "unset"
        self.looks = []


def make_cue(snap: Snapshot, now):
    return Cue(facts=lambda: snap.facts, show=snap.looks.append,
               on_cue=lambda trouble: setattr(snap, "cue", trouble), look=LOOK,
               offline_seconds=120, clock=lambda: now[0])


def test_the_cue_waits_its_patience_holds_back_in_quiet_hours_and_clears():
    snap, now = Snapshot(), [0.0]
    cue = make_cue(snap, now)
    assert cue.update() is None and snap.looks == []   # nothing wrong: no deadline
    snap.facts = Facts(offline=True, partner_away=False, quiet=True)
    now[0] = 10.0
    assert cue.update() == 130.0 and cue.trouble is None
    now[0] = 130.0
    assert cue.update() is None
    assert snap.cue == "offline" and snap.looks == []   # named, not shown: quiet
    snap.facts = snap.facts._replace(quiet=False)       # the morning
    cue.update()
    assert snap.looks == [LOOK]
    snap.facts = Facts(offline=False, partner_away=False, quiet=False)
    cue.update()
    assert snap.cue is None and snap.looks == [LOOK, None]
    # A blip shorter than the patience shows nothing, and starts its count afresh.
    snap.facts = snap.facts._replace(partner_away=True)
    now[0] = 200.0
    assert cue.update() == 320.0
    snap.facts = snap.facts._replace(partner_away=False)
    assert cue.update() is None and snap.cue is None


def test_the_cue_thread_wakes_only_when_its_facts_change():
    snap, now = Snapshot(), [0.0]
    cue = make_cue(snap, now)
    now[0] = 1.0   # the heartbeat after the first look
    thread = threading.Thread(target=cue.run, name="pillowd-cue", daemon=True)
    thread.start()
    try:
        wait_for(lambda: cue.heartbeat == 1.0, message="the first look")
        assert cue.wakeups == 1
        for _ in range(100):        # snapshot changes that are not the cue's
            cue.changed()
        assert cue.wakeups == 1
        snap.facts = snap.facts._replace(offline=True)
        cue.changed()
        wait_for(lambda: cue.wakeups == 2, message="woken by the change")
    finally:
        cue.stop()
        thread.join(5)
    assert not thread.is_alive()


# -- in the renderer ----------------------------------------------------------------------


def test_the_renderer_blinks_the_cue_over_a_standing_frame_and_sleeps_between():
    settings = config.parse('[scenes.idle]\neffect = "solid"\ncolor = "#000040"\n'
                            'transition_seconds = 0\n')
    now = [100.0]
    timeline = Timeline(settings.scenes["idle"], clock=lambda: now[0])
    strip = MockStrip(4)
    output = LightOutput(4, brightness=1.0, max_milliamps=10_000, gamma=1.0)
    r = Renderer(timeline, strip, output, fps=50, clock=lambda: now[0])
    r.render_once()
    idle = strip.pixels.tolist()
    assert r._rest_seconds() is None               # no cue: asleep for good
    r.show_cue(CueLook(AMBER, every=10.0))
    r.render_once()
    assert strip.pixels[0].tolist() == [255, 136, 0] and strip.pixels[1:].tolist() == idle[1:]
    assert r._rest_seconds() == pytest.approx(BLINK_SECONDS)
    frames = strip.frames
    now[0] = 100.3
    r.render_once()
    assert strip.frames == frames                   # nothing changed: not drawn again
    now[0] = 100.5
    r.render_once()
    assert strip.pixels.tolist() == idle           # off, the frame under it back
    assert r._rest_seconds() == pytest.approx(9.5)
    now[0] = 110.0
    r.render_once()
    assert strip.pixels[0].tolist() == [255, 136, 0]
    r.show_cue(None)
    r.render_once()
    assert strip.pixels.tolist() == idle and r._rest_seconds() is None


# -- in a daemon whose Azurite stops -----------------------------------------------------


@pytest.fixture
def own_azurite(tmp_path):
    server = Azurite(tmp_path / "azurite", free_port())
    yield server
    server.stop()


CUE = """
[cue]
offline_seconds = 2
every_seconds = 1
"""


def amber(frame: bytes) -> bool:
    return frame[0] == 255 and frame[2] == 0 and frame[1] > 0


@pytest.mark.parametrize("backend", ["azure"], indirect=True)
def test_a_daemon_whose_azurite_stops_shows_the_cue_and_clears_it_when_back(
        pillow, own_azurite, watch):
    own_azurite.start()
    p = pillow(CUE, env={"AZURE_STORAGE_CONNECTION_STRING":
                         own_azurite.connection_string()})
    watcher = watch(p.url)
    watcher.wait_state(lambda s: s["queue"]["online"], message="online")
    assert p.state()["cue"] is None
    own_azurite.stop()
    watcher.wait_state(lambda s: s["cue"] == "offline", timeout=30, message="the cue")
    # Not at once: offline for offline_seconds first (the state pushed on the change
    # to offline, two seconds before the cue's).
    offline = [s for s in watcher.states if s["queue"]["online"] is False]
    assert offline[0]["cue"] is None
    wait_for(lambda: any(amber(f) for f in watcher.frames), message="the LED blinking")
    blinked = [f for f in watcher.frames if amber(f)]
    assert all(f[3:] == blinked[0][3:] for f in blinked)  # one LED, the rest as it was
    own_azurite.start()
    watcher.wait_state(lambda s: s["queue"]["online"] and s["cue"] is None, timeout=30,
                       message="the cue cleared")
    wait_for(lambda: not amber(watcher.frames[-1]), message="the LED back to the scene")


@pytest.mark.parametrize("backend", ["azure"], indirect=True)
def test_quiet_hours_hold_the_cue_back_until_the_morning(make_config, own_azurite):
    own_azurite.start()
    d = Daemon(config.load(make_config(CUE)),
               environ={"AZURE_STORAGE_CONNECTION_STRING": own_azurite.connection_string()})
    try:
        d.start()
        wait_for(lambda: d.pillow.queue["online"], message="online")
        d.controls.set_quiet(True)
        own_azurite.stop()
        wait_for(lambda: d.pillow.snapshot()["cue"] == "offline", timeout=30,
                 message="the cue named")
        # Named in the snapshot (the page says it), but no LED blinks in the night.
        assert d.cue.showing is None and d.renderer._cue is None
        assert not amber(d.renderer.last_frame)
        d.controls.set_quiet(False)
        wait_for(lambda: amber(d.renderer.last_frame), message="blinking in the morning")
    finally:
        d.close()
