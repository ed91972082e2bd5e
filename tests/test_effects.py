"""Effects give the numbers they promise at chosen times, and validate their parameters."""

import math

import numpy as np
import pytest

from pillowd.errors import PillowError
from pillowd.leds.effects import EFFECTS, Effect, EffectParamError
from pillowd.messages import parse_color

RED = (1.0, 0.0, 0.0)
GREEN = (0.0, 1.0, 0.0)
BLUE = (0.0, 0.0, 1.0)


def frame(name, t, count=10, **raw):
    effect = EFFECTS[name]
    return effect(t, count, effect.resolve(raw))


def assert_all(f, rgb):
    np.testing.assert_allclose(f, np.tile(np.float32(rgb), (len(f), 1)), atol=1e-6)


# Colours and parameters ------------------------------------------------------

@pytest.mark.parametrize("text, rgb", [
    ("#ff0000", RED), ("00ff00", GREEN), ("#00F", BLUE),
    ("#202040", (32 / 255, 32 / 255, 64 / 255)), (" #FFFFFF ", (1.0, 1.0, 1.0)),
])
def test_parse_color_reads_hex_forms(text, rgb):
    assert parse_color(text) == pytest.approx(rgb)


@pytest.mark.parametrize("text", ["red", "#ff00", "#gg0000", "", "#ff00000", 0xFF0000])
def test_parse_color_rejects_the_rest_clearly(text):
    with pytest.raises(ValueError, match="not a colour"):
        parse_color(text)


def test_resolve_fills_defaults_and_converts_colours():
    params = EFFECTS["breathe"].resolve({"color": "#ff0000", "period": 2})
    assert params == {"color": RED, "period": 2.0, "low": 0.0}
    assert EFFECTS["breathe"].resolve({})["color"] == (1.0, 1.0, 1.0)


def test_resolve_twice_is_harmless():
    effect = EFFECTS["gradient"]
    once = effect.resolve({"colors": ["#f00", "#00f"]})
    assert effect.resolve(once) == once == {"colors": [RED, BLUE], "speed": 0.0}


@pytest.mark.parametrize("name, raw, key, why", [
    ("breathe", {"colour": "#fff"}, "colour", "not a parameter of breathe"),
    ("breathe", {"period": "fast"}, "period", "expected a number"),
    ("breathe", {"period": True}, "period", "expected a number"),
    ("breathe", {"period": 0}, "period", "below the minimum"),
    ("breathe", {"low": 1.5}, "low", "above the maximum"),
    ("breathe", {"color": "blue"}, "color", "not a colour"),
    ("gradient", {"colors": "#fff"}, "colors", "list of colours"),
    ("gradient", {"colors": ["#fff", "nope"]}, "colors[1]", "not a colour"),
    ("rainbow", {"color": "#fff"}, "color", "not a parameter of rainbow"),
])
def test_resolve_names_the_bad_key_and_why(name, raw, key, why):
    with pytest.raises(EffectParamError) as info:
        EFFECTS[name].resolve(raw)
    assert info.value.key == key
    assert why in info.value.why
    assert isinstance(info.value, PillowError) and isinstance(info.value, ValueError)


def test_every_effect_but_rainbow_and_gradient_has_a_colour():
    for name, effect in EFFECTS.items():
        assert isinstance(effect, Effect) and effect.name == name
        assert ("color" in effect.params) == (name not in ("rainbow", "gradient"))


@pytest.mark.parametrize("name", sorted(EFFECTS))
@pytest.mark.parametrize("count", [1, 7, 300])
def test_every_effect_gives_a_reproducible_frame_in_range(name, count):
    times = [0.0, 0.37, 1.25, 12.5, 86400.3]
    first = [frame(name, t, count) for t in times]
    again = [frame(name, t, count) for t in reversed(times)][::-1]
    for f, g in zip(first, again):
        assert f.shape == (count, 3) and f.dtype == np.float32
        assert 0 <= f.min() and f.max() <= 1
        np.testing.assert_array_equal(f, g)


def test_only_solid_is_still():
    assert [n for n, e in EFFECTS.items() if not e.animated] == ["solid"]


# Each effect, numerically ----------------------------------------------------

def test_solid_is_one_colour_whatever_the_time():
    assert_all(frame("solid", 0, color="#ff0000"), RED)
    assert_all(frame("solid", 99.9, color="#ff0000"), RED)


def test_breathe_rises_from_low_to_full_over_half_a_period():
    assert_all(frame("breathe", 0, color="#ff0000", period=4), (0, 0, 0))
    assert_all(frame("breathe", 1, color="#ff0000", period=4), (0.5, 0, 0))
    assert_all(frame("breathe", 2, color="#ff0000", period=4), RED)
    assert_all(frame("breathe", 3, color="#ff0000", period=4), (0.5, 0, 0))
    assert_all(frame("breathe", 4, color="#ff0000", period=4), (0, 0, 0))
    assert_all(frame("breathe", 0, color="#ff0000", period=4, low=0.2), (0.2, 0, 0))


def test_pulse_flashes_then_decays_exponentially():
    assert_all(frame("pulse", 0, color="#0000ff", period=2, decay=5), BLUE)
    assert_all(frame("pulse", 0.5, color="#0000ff", period=2, decay=5),
               (0, 0, math.exp(-1.25)))
    assert_all(frame("pulse", 2, color="#0000ff", period=2, decay=5), BLUE)


def test_heartbeat_beats_twice_a_period():
    assert_all(frame("heartbeat", 0, color="#ff0000", period=1), RED)
    assert_all(frame("heartbeat", 0.2, color="#ff0000", period=1), (math.exp(-2.4), 0, 0))
    assert_all(frame("heartbeat", 0.25, color="#ff0000", period=1), (0.6, 0, 0))
    assert_all(frame("heartbeat", 1.0, color="#ff0000", period=1), RED)


def test_rainbow_spreads_hues_and_moves_with_speed():
    f = frame("rainbow", 0, count=3, speed=0.5, spread=1)
    # hues come from a table: within half an 8-bit step
    np.testing.assert_allclose(f, [RED, GREEN, BLUE], atol=1 / 512)
    # a third of a hue cycle later, LED 0 shows what LED 1 showed
    g = frame("rainbow", 2 / 3, count=3, speed=0.5, spread=1)
    np.testing.assert_allclose(g, [GREEN, BLUE, RED], atol=1 / 512)
    np.testing.assert_allclose(frame("rainbow", 0, count=12, speed=0.5)[1], (1, 0.5, 0),
                               atol=1 / 512)
    pastel = frame("rainbow", 0, count=3, speed=0.5, spread=1, saturation=0.5)
    np.testing.assert_allclose(pastel[0], (1, 0.5, 0.5), atol=1 / 512)


def test_wipe_fills_one_led_at_a_time():
    for t, lit in [(0, 0), (0.5, 5), (0.99, 10), (1.0, 0)]:
        f = frame("wipe", t, count=10, color="#ff0000", background="#0000ff", period=1)
        assert_all(f[:lit], RED)
        assert_all(f[lit:], BLUE)


def test_chase_lights_every_nth_led_and_steps_along():
    f = frame("chase", 0, count=9, color="#00ff00", speed=2, spacing=3)
    assert np.flatnonzero(f[:, 1]).tolist() == [0, 3, 6]
    f = frame("chase", 0.5, count=9, color="#00ff00", speed=2, spacing=3)
    assert np.flatnonzero(f[:, 1]).tolist() == [1, 4, 7]
    assert_all(f[[0, 2, 3]], (0, 0, 0))


def test_twinkle_lights_the_share_of_leds_asked_for():
    lit = np.mean([(frame("twinkle", t, count=2000, density=0.3)[:, 0] > 0).mean()
                   for t in np.arange(0, 30, 0.7)])
    assert lit == pytest.approx(0.3, abs=0.03)
    assert_all(frame("twinkle", 3.3, count=50, density=0, background="#0000ff"), BLUE)


def test_twinkle_fades_each_led_up_and_down_smoothly():
    a = frame("twinkle", 5.000, count=500, density=1)
    b = frame("twinkle", 5.001, count=500, density=1)
    # sin(pi x) over a 1.5 s period moves by at most pi / 1500 per millisecond
    assert np.abs(a - b).max() <= math.pi / 1500 + 1e-5
    assert a.mean() == pytest.approx(2 / math.pi, abs=0.05)


def test_twinkle_and_candle_patterns_change_with_the_seed():
    for name in ("twinkle", "candle"):
        assert not np.array_equal(frame(name, 2.0, count=50, seed=1),
                                  frame(name, 2.0, count=50, seed=2))


def test_candle_flickers_below_its_colour_and_reddens_as_it_dims():
    still = frame("candle", 3.21, count=20, color="#ffffff", flicker=0)
    assert_all(still, (1, 1, 1))
    f = frame("candle", 3.21, count=200, color="#ffffff", flicker=1)
    level = f[:, 0]
    assert level.min() < 0.5 < level.max() <= 1
    np.testing.assert_allclose(f[:, 1], level ** 2, rtol=1e-5)
    np.testing.assert_allclose(f[:, 2], level ** 3, rtol=1e-5)


def test_candle_wavers_rather_than_strobes():
    a = frame("candle", 7.0, count=300, speed=8)
    b = frame("candle", 7.001, count=300, speed=8)
    assert np.abs(a - b).max() < 0.02


def test_fire_is_candle():
    np.testing.assert_array_equal(frame("fire", 4.2, seed=3), frame("candle", 4.2, seed=3))


def test_gradient_runs_from_first_colour_to_last():
    f = frame("gradient", 10, count=5, colors=["#ff0000", "#0000ff"])
    np.testing.assert_allclose(f, [(1 - x, 0, x) for x in (0, .25, .5, .75, 1)], atol=1e-6)
    three = frame("gradient", 0, count=3, colors=["#ff0000", "#00ff00", "#0000ff"])
    np.testing.assert_allclose(three, [RED, GREEN, BLUE], atol=1e-6)


def test_moving_gradient_scrolls_and_wraps():
    still = frame("gradient", 0, count=4, colors=["#ff0000", "#0000ff"], speed=0.25)
    np.testing.assert_allclose(still, [RED, (.5, 0, .5), BLUE, (.5, 0, .5)], atol=1e-6)
    later = frame("gradient", 1, count=4, colors=["#ff0000", "#0000ff"], speed=0.25)
    np.testing.assert_allclose(later, np.roll(still, -1, axis=0), atol=1e-6)


# Caches ----------------------------------------------------------------------
# twinkle, candle, rainbow and gradient keep per-step or per-parameter arrays
# between frames. Each is checked against the effect written without any
# cache (as it was before them): equal to the bit, whatever order the frames
# come in, and moving on when t crosses into another step.

from pillowd.leds import frames as fx  # noqa: E402


def _clear_caches():
    for cached in (fx._noise, fx._twinkle_offsets, fx._twinkle_lit, fx._candle_step,
                   fx._hues, fx._still_gradient, fx._gradient_stops, fx._rgb_cached):
        cached.cache_clear()


def uncached_twinkle(t, count, p):
    local = fx._hash(count, p["seed"], -1).astype(np.float64)
    local += t / p["period"]
    step = np.floor(local)
    lit = fx._hash(count, p["seed"], step.astype(np.int64)) < np.float32(p["density"])
    level = np.sin(np.float32(math.pi) * (local - step).astype(np.float32))
    level *= lit
    fg = np.asarray(p["color"], dtype=np.float32)
    bg = np.asarray(p["background"], dtype=np.float32)
    return bg + level[:, None] * (fg - bg)


def uncached_candle(t, count, p):
    x = t * p["speed"]
    step = math.floor(x)
    a = fx._hash(count, p["seed"], step)
    b = fx._hash(count, p["seed"], step + 1)
    f = x - step
    f = f * f * (3 - 2 * f)
    level = np.float32(1) - np.float32(p["flicker"]) * (a + np.float32(f) * (b - a))
    frame = np.stack([level, level * level, level * level * level], axis=1)
    return frame * np.asarray(p["color"], dtype=np.float32)


def uncached_rainbow(t, count, p):
    hue = np.arange(count, dtype=np.float32) / count * np.float32(p["spread"] * 4096)
    hue += np.float32((t * p["speed"]) % 1.0 * 4096)
    return fx._wheel.__wrapped__(p["saturation"])[hue.astype(np.int32) & 4095]


@pytest.mark.parametrize("name, reference, raw", [
    ("twinkle", uncached_twinkle, {"density": 0.5, "period": 0.3, "background": "#102030"}),
    ("twinkle", uncached_twinkle, {"density": 1, "seed": 7}),
    ("candle", uncached_candle, {"flicker": 0.8, "speed": 11}),
    ("candle", uncached_candle, {"seed": 2**31 - 1}),
    ("rainbow", uncached_rainbow, {"speed": -0.7, "spread": 2.5, "saturation": 0.6}),
])
def test_cached_effects_equal_the_uncached_in_any_order(name, reference, raw):
    effect = EFFECTS[name]
    p = effect.resolve(raw)
    # Crossing many steps, backwards and forwards, with repeats; and t large
    # enough (2**26 periods and more) for twinkle's general path
    times = [0.0, 0.01, 0.29, 0.31, 1.0, 5.55, 5.56, 1.0, 0.0, -3.3, 86400.25,
             0.3 * 2**26 + 0.1, 1.5 * 2**27 + 0.7, 5.56]
    _clear_caches()
    for t in times:
        for count in (1, 300, 7):
            got = effect(t, count, p)
            np.testing.assert_array_equal(got, reference(t, count, p), err_msg=f"t={t}")
            assert got.dtype == np.float32 and got.flags.writeable


def test_step_caches_move_on_with_t_and_keep_seeds_apart():
    _clear_caches()
    # Every LED flips at least once over 40 steps: a cache stuck on one step
    # would show the same lit set throughout
    lit = {tuple(frame("twinkle", t, count=64, density=0.5, seed=s)[:, 0] > 0)
           for s in (1, 2) for t in np.arange(0, 40 * 1.5, 1.5) + 0.75}
    assert len(lit) > 60
    a = frame("candle", 3.0, count=50, seed=1)
    b = frame("candle", 3.0, count=50, seed=2)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(frame("candle", 3.0, count=50, seed=1), a)


def test_hash_gives_the_same_values_for_a_scalar_step_as_in_an_array():
    steps = np.array([-5, -1, 0, 1, 2**31, 2**40 + 3], dtype=np.int64)
    for seed in (0, 99):
        for step in steps:
            alone = fx._hash(4, seed, int(step))
            np.testing.assert_array_equal(fx._hash(4, seed, np.full(4, step)), alone)
            np.testing.assert_array_equal(fx._noise(4, seed, int(step)), alone)
        assert len({fx._hash(4, seed, int(step))[0] for step in steps}) == len(steps)


def test_cached_frames_cannot_be_changed_through_a_returned_frame():
    _clear_caches()
    first = frame("gradient", 0, count=5, colors=["#ff0000", "#0000ff"])
    expected = first.copy()
    first[:] = 0.5
    np.testing.assert_array_equal(
        frame("gradient", 0, count=5, colors=["#ff0000", "#0000ff"]), expected)
    for name in ("twinkle", "candle", "rainbow"):
        f = frame(name, 1.0, count=5)
        f[:] = 0.123
        assert not np.array_equal(frame(name, 1.0, count=5), f)
