"""What an owner meets on the page (issue 29), in a real Chromium against a real
`pillowd run`: the cloud as the eye sees it, its live figures, the lights as a
switch, the hug button, a history that reads like a conversation, and tokens."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from conftest import BASE_CONFIG, PillowProcess, wait_for
from test_page import TOKEN, browser, open_page, wait_live  # noqa: F401

# The shipped brightness (config.toml), at which the old cloud looked switched off;
# an idle that glows as the shipped one does, but stands still.
SHIPPED = BASE_CONFIG.replace("brightness = 1.0", "brightness = 0.6").replace(
    'color = "#000010"', 'color = "#202040"')
SCENES = """
[scenes.red]
effect = "solid"
color = "#ff0000"
duration = 0

[scenes.pink]
effect = "solid"
color = "#ff6ec7"
duration = 0
"""

# Each LED's colour at its centre, as drawn on the canvas.
PIXELS = """() => {
    const ctx = document.getElementById('leds').getContext('2d');
    return window.pillowPage.ledPositions().map(({x, y}) =>
        Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3)));
}"""


@pytest.fixture
def shipped(make_config, pillow_env):
    process = PillowProcess(make_config(SCENES, base=SHIPPED),
                            {**pillow_env, "PILLOWD_CONTROL_TOKEN": TOKEN})
    yield process.start()
    process.stop()


def pixels_when(page, test, message):
    """The cloud's pixels once every LED passes *test*."""
    return wait_for(lambda: (lambda px: px if px and all(test(*c) for c in px) else None)(
        page.evaluate(PIXELS)), timeout=15, message=message)


def test_the_cloud_shows_the_colour_that_plays_at_a_level_a_person_can_see(
        shipped, watch, open_page):
    p = shipped
    auth = {"Authorization": f"Bearer {TOKEN}"}
    watcher = watch(p.url)
    page = open_page(p.url)
    wait_live(page)

    # Idle: dim, but blue, not black (its drive values are (1, 1, 4)).
    pixels_when(page, lambda r, g, b: b >= 100 and r == g and b > r, "idle's blue")

    # A solid red hug at brightness 0.6 is driven at (83, 0, 0) after gamma: drawn
    # as 60 % red (and more, so a glowing bead reads as one), never dark maroon.
    p.cli("send", "red")
    wait_for(lambda: watcher.frames[-1] == bytes([83, 0, 0]) * 12, message="red frames")
    pixels_when(page, lambda r, g, b: r >= 200 and g == 0 and b == 0, "a bright red")

    # Pink keeps its hue: the ratios of #ff6ec7.
    p.cli("send", "pink")
    pixels_when(page, lambda r, g, b: r >= 200 and abs(g / r - 0x6e / 0xff) < 0.04
                and abs(b / r - 0xc7 / 0xff) < 0.04, "pink, its hue kept")

    # Quiet hours dim the LEDs to a few steps of drive: still pink-ish, not black.
    assert p.post("/api/quiet", json={"quiet": True}, headers=auth).ok
    wait_for(lambda: max(watcher.frames[-1]) <= 3 and max(watcher.frames[-1]) > 0,
             message="quiet frames")
    pixels_when(page, lambda r, g, b: r >= 100 and r > b > g, "a dim pink")
    assert p.post("/api/quiet", json={"quiet": False}, headers=auth).ok

    # Black only when the LED is off.
    assert p.post("/api/off", headers=auth).ok
    pixels_when(page, lambda r, g, b: (r, g, b) == (0, 0, 0), "dark LEDs")
    # The next message plays as usual: lit.
    p.cli("send", "red")
    pixels_when(page, lambda r, g, b: r >= 200 and g == 0 and b == 0, "red again")


def test_the_led_power_beside_the_cloud_is_live(shipped, open_page):
    p = shipped
    page = open_page(p.url)
    wait_live(page)
    p.cli("send", "pink")
    # Once the fade is over (12 LEDs at (83, 13, 48)): the brightest LED at 60 %, and
    # the current the renderer estimates for that frame, not the idle's.
    page.wait_for_function("document.getElementById('light-level').textContent === '60 %'")
    drawn = p.state()["leds"]["milliamps"]
    assert drawn > 130
    assert page.text_content("#milliamps") == f"{round(drawn)} mA for 12 LEDs"


def test_the_lights_switch_shows_the_state_and_off_is_not_for_good(shipped, open_page):
    p = shipped
    page = open_page(p.url + f"?token={TOKEN}")
    wait_live(page)
    lights = page.get_by_role("switch", name="Lights")
    p.cli("send", "red", "--from", "Alice")
    page.wait_for_function("document.getElementById('sender').textContent === 'Alice'")
    lights.click()
    page.wait_for_selector("#lights[aria-checked=false]")
    assert p.state()["scene"] == "off"
    assert page.text_content("#lights-fact") == "off until the next message"

    # A later hug plays lit, and the switch says the lights are on again.
    p.cli("send", "red", "--from", "Bob")
    page.wait_for_selector("#lights[aria-checked=true]")
    pixels_when(page, lambda r, g, b: r >= 200 and g == 0 and b == 0, "Bob's hug, lit")
    lights.click()
    page.wait_for_selector("#lights[aria-checked=false]")
    lights.click()  # on: back to idle's glow
    page.wait_for_selector("#lights[aria-checked=true]")
    wait_for(lambda: p.state()["scene"] == "idle", message="idle")
    # Brightness 0 is not off: the slider starts above it.
    assert page.get_attribute("#brightness", "min") == "5"


def test_without_a_partner_the_hug_button_plays_the_hug_here(shipped, open_page):
    p = shipped
    page = open_page(p.url + f"?token={TOKEN}")
    wait_live(page)
    p.cli("send", "hug", "--from", "Bob")  # a message, not a partner's hug
    page.wait_for_function("document.getElementById('sender').textContent === 'Bob'")
    button = page.get_by_role("button", name="Play hug here")
    assert page.get_by_role("button", name="Hug back").count() == 0
    button.click()
    page.wait_for_selector("#hug-result.ok")
    assert page.text_content("#hug-result") == \
        "Playing the hug here (this pillow has no partner to send it to)."


def test_the_history_reads_like_a_conversation(make_config, pillow_env, open_page):
    import pillowd.queues.local as local
    config = make_config(SCENES)
    # Two notes in one batch: the older is superseded, and can still be read.
    store = local.LocalStore(config.parent / "state" / "queue.sqlite3")
    queue = store.queue("pillow")
    now = datetime.now(timezone.utc)
    queue.put(json.dumps({"scene": "hug", "from": "Carol", "text": "thinking of you",
                          "sent_at": (now - timedelta(seconds=1)).isoformat()}))
    queue.put(json.dumps({"scene": "pink", "from": "Dan", "text": "first line\nsecond line",
                          "sent_at": now.isoformat()}))
    store.close()
    p = PillowProcess(config, pillow_env).start()
    try:
        page = open_page(p.url)
        wait_live(page)
        page.wait_for_selector("#recent li.superseded")
        carol = page.locator("#recent li.superseded")
        assert carol.locator(".who").text_content() == "Carol"
        assert carol.locator(".note").text_content() == "thinking of you"
        dan = page.locator("#recent li.applied")
        # The line break kept, as the note was written.
        assert dan.locator(".note").inner_text() == "first line\nsecond line"
        # When, in one format: relative, with the exact time on hover.
        when = dan.locator("time")
        assert when.text_content() == "just now"
        exact = page.evaluate("(at) => new Date(at).toLocaleString()",
                              when.get_attribute("datetime"))
        assert when.get_attribute("title") == exact
        # The message being played shows its line break too.
        assert page.inner_text("#text") == "first line\nsecond line"

        # A rejected message keeps its sender.
        store = local.LocalStore(config.parent / "state" / "queue.sqlite3")
        store.queue("pillow").put(json.dumps({"scene": "glow", "brightness": 7,
                                              "from": "Erin"}))
        store.close()
        page.wait_for_selector("#recent li.rejected")
        assert page.text_content("#recent li.rejected .who") == "Erin"
    finally:
        p.stop()


def test_an_empty_history_says_so(pillow, open_page):
    page = open_page(pillow().url)
    wait_live(page)
    assert page.locator("#recent-empty").is_visible()
    assert page.text_content("#recent-empty").split() == (
        "No messages yet. When someone sends the pillow a hug or a note, it shows "
        "here.").split()


def test_a_pasted_token_is_checked_at_once(pillow, open_page):
    p = pillow(env={"PILLOWD_CONTROL_TOKEN": TOKEN})
    page = open_page(p.url)
    wait_live(page)
    page.get_by_label("Control token").fill("not-the-token-at-all")
    page.get_by_role("button", name="Unlock").click()
    page.wait_for_selector("#control-result.bad")
    assert page.text_content("#control-result") == \
        "That token does not work on this pillow. Check it and paste it again."
    assert page.locator("#control-panel").is_hidden()
    page.get_by_label("Control token").fill(TOKEN)
    page.get_by_role("button", name="Unlock").click()
    page.wait_for_selector("#control-result.ok")
    assert page.text_content("#control-result") == "Unlocked: this token works."
    assert page.locator("#control-panel").is_visible()
    assert p.state()["recent"] == []  # the check changed nothing


def test_the_short_token_banner_is_for_its_holder_with_the_fix_and_wraps(
        pillow, open_page):
    p = pillow(env={"PILLOWD_CONTROL_TOKEN": "1234"})
    page = open_page(p.url, viewport={"width": 360, "height": 740})
    wait_live(page)
    assert page.locator("#token-problem").is_hidden()  # a visitor sees no banner
    page.get_by_label("Control token").fill("4321")
    page.get_by_role("button", name="Unlock").click()
    page.wait_for_selector("#control-result.bad")
    assert page.locator("#token-problem").is_hidden()

    page.get_by_label("Control token").fill("1234")
    page.get_by_role("button", name="Unlock").click()
    page.wait_for_selector("#token-problem:not([hidden])")
    banner = page.text_content("#token-problem")
    assert "too short" in banner
    # The fix for `pillowd run` with the variable set (as `make run` is), not install.sh.
    assert "PILLOWD_CONTROL_TOKEN" in page.text_content("#token-fix")
    assert "install.sh" not in banner
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    box = page.locator("#token-problem").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 360
