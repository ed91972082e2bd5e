"""The render loop: fades, a static frame that costs nothing, and dark at the end."""

import threading

import numpy as np

from conftest import wait_for
from pillowd.config import parse
from pillowd.hardware import MockStrip
from pillowd.leds.light import LightOutput
from pillowd.leds.render import Renderer
from pillowd.leds.scenes import Timeline
from pillowd.messages import decode

SETTINGS = parse('''
[scenes.idle]
effect = "solid"
color = "#000040"
transition_seconds = 0
[scenes.hug]
effect = "solid"
color = "#ff0000"
transition_seconds = 0
[scenes.glow]
effect = "breathe"
color = "#00ff00"
period = 1
''')


def renderer():
    timeline = Timeline(SETTINGS.scenes["idle"])
    strip = MockStrip(10)
    output = LightOutput(10, brightness=1.0, max_milliamps=10_000, gamma=1.0)
    return timeline, strip, Renderer(timeline, strip, output, fps=50)


def test_a_static_scene_is_drawn_once_and_a_change_wakes_the_loop():
    timeline, strip, r = renderer()
    loop = threading.Thread(target=r.run)
    loop.start()
    try:
        wait_for(lambda: strip.frames >= 1, message="the idle frame")
        drawn = r.frames
        # Half a second of a static scene: asleep, not 25 frames (the one being
        # counted as this test read the count at most).
        threading.Event().wait(0.6)
        assert r.frames - drawn <= 1 and r.resting
        assert strip.frames == 1
        timeline.play(decode("hug", SETTINGS))
        wait_for(lambda: strip.pixels[0].tolist() == [255, 0, 0], timeout=0.3,
                 message="the hug drawn at once, not after the idle sleep")
        timeline.play(decode("glow", SETTINGS))  # animated: drawn every tick
        before = r.frames
        wait_for(lambda: r.frames - before >= 10, message="an animated scene ticking")
    finally:
        r.stop()
        loop.join(2)
    assert not loop.is_alive()
    assert not strip.pixels.any()  # dark at the end


def test_a_fade_starts_and_ends_exactly():
    fading = parse('''
[scenes.idle]
effect = "solid"
color = "#000040"
[scenes.hug]
effect = "solid"
color = "#ff0000"
transition_seconds = 1.0
''')
    now = [100.0]
    timeline = Timeline(fading.scenes["idle"], clock=lambda: now[0])
    strip = MockStrip(10)
    r = Renderer(timeline, strip, LightOutput(10, brightness=1.0, max_milliamps=10_000,
                                              gamma=1.0), clock=lambda: now[0])
    r.render_once()
    idle = strip.pixels.copy()
    timeline.play(decode("hug", fading))
    r.render_once()
    assert np.array_equal(strip.pixels, idle)  # t = start: the old frame exactly
    now[0] += 0.5
    r.render_once()
    assert 0 < strip.pixels[0][0] < 255  # on the way
    now[0] += 0.5
    r.render_once()
    assert strip.pixels[0].tolist() == [255, 0, 0]  # t = end: the new one exactly


def test_scenes_faster_than_their_fades_keep_a_bounded_chain():
    from pillowd.leds.light import Transition
    fading = parse('[scenes.idle]\neffect = "solid"\n'
                   '[scenes.hug]\neffect = "solid"\ncolor = "#ff0000"\n'
                   'transition_seconds = 0.5\n')
    now = [0.0]
    timeline = Timeline(fading.scenes["idle"], clock=lambda: now[0])
    r = Renderer(timeline, MockStrip(4), LightOutput(4), clock=lambda: now[0])
    for _ in range(1000):  # ten a second, each fade lasting half a second
        timeline.play(decode("hug", fading))
        r.render_once()
        now[0] += 0.1
    depth, source = 0, r._source
    while isinstance(source, Transition):
        depth, source = depth + 1, source.old
    assert 1 <= depth <= 6
