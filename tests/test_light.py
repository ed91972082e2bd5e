"""The output stage keeps to its gamma, its ceiling and its current budget; transitions end exactly."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from pillowd.leds.effects import EFFECTS
from pillowd.leds.light import LightOutput, Transition, crossfade


def solid(count, rgb):
    return np.tile(np.float32(rgb), (count, 1))


def test_gamma_maps_full_to_255_dark_to_0_and_half_to_its_power():
    out = LightOutput(3, brightness=1, gamma=2.2, max_milliamps=1e9)
    pixels, _ = out.render(np.float32([[1, 0, 0.5], [0.25, 0.75, 1], [0, 0, 0]]))
    expected = np.round(255 * np.float32([[1, 0, 0.5], [0.25, 0.75, 1], [0, 0, 0]]) ** 2.2)
    assert pixels.dtype == np.uint8 and pixels.shape == (3, 3)
    np.testing.assert_allclose(pixels, expected, atol=1)
    assert pixels[0, 0] == 255 and pixels[2].tolist() == [0, 0, 0]


def test_dark_levels_survive_gamma():
    # 8-bit input would crush these to 0; the LEDs can still show them
    out = LightOutput(1, brightness=1, gamma=2.2, max_milliamps=1e9)
    assert out.render(solid(1, (0.1, 0.1, 0.1)))[0][0, 0] == round(255 * 0.1 ** 2.2)


def test_brightness_ceiling_and_frame_brightness_multiply():
    out = LightOutput(2, brightness=0.5, gamma=1.0, max_milliamps=1e9)
    assert out.render(solid(2, (1, 1, 1)))[0][0].tolist() == [128, 128, 128]
    assert out.render(solid(2, (1, 1, 1)), brightness=0.5)[0][0].tolist() == [64, 64, 64]
    assert out.render(solid(2, (1, 1, 1)), brightness=0)[0].max() == 0


def test_estimate_follows_the_wled_model():
    out = LightOutput(10, brightness=1, max_milliamps=1e9)
    assert out.render(solid(10, (1, 1, 1)))[1] == pytest.approx(10 * 55 + 10 * 1)
    assert out.render(solid(10, (0, 0, 0)))[1] == pytest.approx(10 * 1)
    assert out.render(solid(10, (1, 0, 0)))[1] == pytest.approx(10 * 55 / 3 + 10)
    assert out.milliamps == pytest.approx(10 * 55 / 3 + 10)


def test_full_white_is_limited_to_the_budget_and_uses_most_of_it():
    out = LightOutput(300, brightness=1, max_milliamps=2000)
    pixels, milliamps = out.render(solid(300, (1, 1, 1)))
    assert milliamps <= 2000
    assert milliamps > 2000 - 300 * 3 * 55 / 3 / 255  # at most one step per channel lost
    assert milliamps == pytest.approx(out.milliamps_for(pixels))


def test_limiting_keeps_each_leds_hue():
    out = LightOutput(100, brightness=1, max_milliamps=500)
    f = np.zeros((100, 3), np.float32)
    f[:, 0] = 1.0
    pixels, _ = out.render(f)
    assert pixels[:, 0].min() > 0 and pixels[:, 1:].max() == 0


def test_a_budget_under_the_idle_draw_turns_everything_off():
    out = LightOutput(100, brightness=1, max_milliamps=50)
    pixels, milliamps = out.render(solid(100, (1, 1, 1)))
    assert pixels.max() == 0 and milliamps == pytest.approx(100)


@st.composite
def scenes(draw):
    count = draw(st.integers(1, 64))
    frame = draw(arrays(np.float32, (count, 3),
                        elements=st.floats(0, 1, width=32, allow_subnormal=False)))
    idle = draw(st.sampled_from([0.0, 0.3, 1.0]))
    per_channel = draw(st.floats(1, 30))
    ceiling = count * (idle + 3 * per_channel)
    budget = draw(st.floats(count * idle, ceiling * 1.1))
    out = LightOutput(count, brightness=draw(st.floats(0, 1)), max_milliamps=budget,
                      gamma=draw(st.sampled_from([1.0, 2.2, 2.8])),
                      milliamps_per_channel=per_channel, idle_milliamps_per_led=idle)
    return out, frame, draw(st.floats(0, 1))


@settings(max_examples=400, deadline=None)
@given(scenes())
def test_no_frame_ever_exceeds_the_budget(scene):
    out, frame, brightness = scene
    pixels, milliamps = out.render(frame, brightness)
    assert milliamps <= out.max_milliamps
    recomputed = (out.count * out.idle_milliamps_per_led
                  + out.milliamps_per_channel / 255 * int(pixels.astype(np.int64).sum()))
    assert milliamps == pytest.approx(recomputed, rel=1e-9, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(scenes())
def test_the_limiter_leaves_a_frame_within_budget_untouched(scene):
    out, frame, brightness = scene
    unlimited = LightOutput(out.count, brightness=out.brightness, max_milliamps=float("inf"),
                            gamma=out.gamma, milliamps_per_channel=out.milliamps_per_channel,
                            idle_milliamps_per_led=out.idle_milliamps_per_led)
    free, estimate = unlimited.render(frame, brightness)
    limited, _ = out.render(frame, brightness)
    if estimate <= out.max_milliamps:
        np.testing.assert_array_equal(limited, free)
    else:
        assert (limited <= free).all()


def test_render_returns_a_fresh_array_each_frame():
    out = LightOutput(4, brightness=1)
    first, _ = out.render(solid(4, (1, 0, 0)))
    out.render(solid(4, (0, 1, 0)))
    assert first[:, 0].tolist() == [255] * 4


# Beyond int64's range (and -inf) the cast to an index is undefined, which
# numpy warns of; take's clipping still makes it dark, as asserted
@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
def test_values_outside_0_to_1_show_as_dark_or_full():
    # render clips only the top itself and leaves the bottom to take's index
    # clipping: below 0 (and -inf) must still be dark, never wrap round to full
    values = [-1e30, -np.inf, -5, -1e-6, 0, 1, 1 + 1e-6, 7, 1e30, np.inf]
    frame = np.repeat(np.float32(values)[:, None], 3, axis=1)
    out = LightOutput(len(values), brightness=1, max_milliamps=float("inf"))
    pixels, _ = out.render(frame)
    assert pixels[:, 0].tolist() == [0, 0, 0, 0, 0, 255, 255, 255, 255, 255]
    assert (pixels == pixels[:, :1]).all()


# Cross-fades and transitions --------------------------------------------------

def test_crossfade_is_exact_at_the_ends_and_linear_between():
    a, b = solid(3, (1, 0, 0)), solid(3, (0, 0, 1))
    np.testing.assert_array_equal(crossfade(a, b, 0), a)
    np.testing.assert_array_equal(crossfade(a, b, -1), a)
    np.testing.assert_array_equal(crossfade(a, b, 1), b)
    np.testing.assert_array_equal(crossfade(a, b, 2), b)
    np.testing.assert_allclose(crossfade(a, b, 0.25), solid(3, (0.75, 0, 0.25)))


def bound(name, **raw):
    effect = EFFECTS[name]
    params = effect.resolve(raw)
    return lambda t: effect(t, 30, params)


def test_transition_starts_on_the_old_frame_and_ends_on_the_new_exactly():
    old = bound("rainbow")
    new = bound("breathe", color="#ff6ec7", period=3)
    fade = Transition(old, new, start=10.0, seconds=2.0)
    np.testing.assert_array_equal(fade(10.0), old(10.0))
    np.testing.assert_array_equal(fade(9.0), old(9.0))
    np.testing.assert_array_equal(fade(12.0), new(12.0))
    np.testing.assert_array_equal(fade(30.5), new(30.5))
    assert not fade.done(11.99) and fade.done(12.0)
    middle = fade(11.0)
    np.testing.assert_allclose(middle, (old(11.0) + new(11.0)) / 2, atol=1e-6)


def test_transition_progress_rises_smoothly():
    fade = Transition(bound("solid"), bound("solid"), start=0, seconds=1)
    steps = [fade.progress(t) for t in np.linspace(-0.5, 1.5, 201)]
    assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == 1
    assert max(np.diff(steps)) < 0.02


def test_zero_seconds_cuts_straight_to_the_new_frame():
    new = bound("solid", color="#00ff00")
    fade = Transition(bound("solid", color="#ff0000"), new, start=5, seconds=0)
    np.testing.assert_array_equal(fade(5.0001), new(5.0001))


def test_a_transition_can_fade_out_of_a_transition():
    red, green, blue = (bound("solid", color=c) for c in ("#ff0000", "#00ff00", "#0000ff"))
    first = Transition(red, green, start=0, seconds=2)
    second = Transition(first, blue, start=1, seconds=2)
    np.testing.assert_array_equal(second(1), first(1))
    np.testing.assert_array_equal(second(3), blue(3))
