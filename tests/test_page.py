"""The status page in a real Chromium against a real `pillowd run`."""

from urllib.parse import urlsplit

import pytest

from conftest import wait_for

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
# Debian's Chromium, with the background connections it would make to Google off:
# the machine has no internet, and the page must not need any.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TOKEN = "correct-horse-battery"


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser):
    """Opens the page in a fresh browser context; at the end checks that every
    request it made went to the pillow on localhost, and that no script failed."""
    contexts, requests, errors = [], [], []

    def open_(url, **context_options):
        # The tests' own wait_for_function() scripts are eval'd, which the page's
        # Content-Security-Policy forbids; test_the_page_works_under_its_own_csp
        # opens the page with the policy in force.
        context = browser.new_context(**{"bypass_csp": True, **context_options})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("request", lambda r: requests.append(r.url))
        page.on("websocket", lambda ws: requests.append(ws.url))
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(url)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert requests, "the page made no requests at all"
    foreign = [u for u in requests
               if urlsplit(u).scheme not in ("data", "blob")
               and urlsplit(u).hostname not in ("127.0.0.1", "localhost")]
    assert foreign == [], f"requests left localhost: {foreign}"
    assert errors == [], f"errors in the page's scripts: {errors}"


def wait_live(page):
    page.wait_for_selector("#connection.ok")
    assert page.text_content("#connection") == "live"


def test_a_message_shows_on_the_page_as_text(pillow, open_page):
    p = pillow()
    page = open_page(p.url)
    wait_live(page)
    assert page.text_content("#scene") == "idle"
    assert page.text_content("#name") == "test-pillow"
    assert page.text_content("#version") == "pillowd 0.1.0"

    p.cli("send", "glow", "--from", "Alice", "--text", "<b>thinking</b> of you")
    page.wait_for_function("document.getElementById('scene').textContent === 'glow'")
    assert page.text_content("#sender") == "Alice"
    # Message data is text, never markup.
    assert page.text_content("#text") == "<b>thinking</b> of you"
    assert page.locator("#text b").count() == 0
    assert page.text_content("#until") == "until the next message"
    assert page.text_content("#queue-online") == "online"
    assert page.text_content("#counts .applied dd") == "1"

    # A rejection is listed with its reason.
    import pillowd.queues.local as local
    store = local.LocalStore(p.config.parent / "state" / "queue.sqlite3")
    store.queue("pillow").put('{"scene": "glow", "brightness": 7}')
    store.close()
    page.wait_for_selector("#recent li.rejected")
    assert "brightness must be between 0 and 1" in page.text_content(
        "#recent li.rejected .reason")
    assert page.text_content("#counts .rejected dd") == "1"
    # Without a token configured the page is read-only.
    assert page.locator("#controls-card").is_hidden()


def test_canvas_colours_match_the_frame_bytes(pillow, watch, open_page):
    p = pillow()
    watcher = watch(p.url)
    page = open_page(p.url, device_scale_factor=2)
    wait_live(page)
    read = """() => {
        const c = document.getElementById('leds');
        const ctx = c.getContext('2d');
        const frame = window.pillowPage.lastFrame();
        const pixels = window.pillowPage.ledPositions().map(({x, y}) =>
            Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3)));
        return {frame, pixels};
    }"""

    # A breathing green: every frame differs, so frame and pixels are read together.
    p.cli("send", "glow")
    wait_for(lambda: any(f[1] > 0 and f[0] == 0 for f in watcher.frames[-5:]),
             message="green frames")
    seen = page.evaluate(read)
    frame = bytes(seen["frame"])
    assert len(seen["pixels"]) == 12 and len(frame) == 36
    assert frame in watcher.frames, "the page drew a frame the server never sent"
    # Each LED drawn in the colour that plays: green, black only where it is off.
    for i, pixel in enumerate(seen["pixels"]):
        lit = frame[3 * i:3 * i + 3] != bytes(3)
        assert (pixel[0], pixel[2]) == (0, 0) and (pixel[1] > 0) == lit, (i, pixel, frame)

    # The hug's solid red, exactly, at every LED.
    p.cli("send", "hug")
    page.wait_for_function("""() => {
        const c = document.getElementById('leds'), ctx = c.getContext('2d');
        return window.pillowPage.ledPositions().every(({x, y}) => {
            const [r, g, b] = ctx.getImageData(x, y, 1, 1).data;
            return r === 255 && g === 0 && b === 0;
        });
    }""")
    # The LEDs sit apart along the cloud, not on top of each other.
    positions = page.evaluate("window.pillowPage.ledPositions()")
    assert len({(q["x"], q["y"]) for q in positions}) == 12


def test_the_page_recovers_after_the_daemon_restarts(pillow, open_page):
    p = pillow()
    page = open_page(p.url)
    wait_live(page)
    p.cli("send", "glow", "--from", "Bob")
    page.wait_for_function("document.getElementById('sender').textContent === 'Bob'")

    port = p.url
    p.stop()
    page.wait_for_selector("#connection.warn")
    assert page.text_content("#connection") == "reconnecting…"
    assert page.evaluate("document.body.classList.contains('stale')")
    assert page.locator("#stale").is_visible()
    assert "s ago" in page.text_content("#last-seen")

    p.restart()
    assert p.url == port
    page.wait_for_selector("#connection.ok", timeout=20_000)
    assert not page.evaluate("document.body.classList.contains('stale')")
    assert page.locator("#stale").is_hidden()
    # The fresh state replaced the old: glow did not survive the restart.
    assert page.text_content("#scene") == "idle"
    p.cli("send", "hug", "--from", "Carol")
    page.wait_for_function("document.getElementById('sender').textContent === 'Carol'")


def test_controls_refuse_without_the_token_and_work_with_it(pillow, open_page):
    p = pillow(env={"PILLOWD_CONTROL_TOKEN": TOKEN})
    page = open_page(p.url)
    wait_live(page)
    assert page.locator("#token-form").is_visible()
    assert page.locator("#control-panel").is_hidden()

    # The server, not the page, refuses: straight from the page's origin, no token.
    status = page.evaluate("""async () => (await fetch('/api/scene', {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: '{"scene": "hug"}'})).status""")
    assert status == 401

    # A wrong token is checked at once: the page never says "Unlocked" for it.
    page.get_by_label("Control token").fill("wrong-token")
    page.get_by_role("button", name="Unlock").click()
    page.wait_for_selector("#control-result.bad")
    assert "does not work" in page.text_content("#control-result")
    assert page.locator("#token-form").is_visible()
    assert page.evaluate("localStorage.getItem('pillowd-control-token')") is None
    assert p.state()["scene"] == "idle"

    # The token as `pillowd run` prints it: taken, kept, and out of the address bar.
    page.goto(p.url + f"?token={TOKEN}")
    wait_live(page)
    assert "token" not in page.url
    assert page.evaluate("localStorage.getItem('pillowd-control-token')") == TOKEN
    assert page.locator("#control-panel").is_visible()

    page.get_by_text("More").click()
    page.get_by_label("Play a scene").select_option("glow")
    page.get_by_role("button", name="Play", exact=True).click()
    page.wait_for_function("document.getElementById('scene').textContent === 'glow'")
    assert page.text_content("#sender") == "status page"

    page.get_by_label("Brightness").fill("30")
    wait_for(lambda: p.state()["leds"]["brightness"] == 0.3, message="brightness 0.3")
    page.wait_for_function(
        "document.getElementById('brightness-state').textContent === '30 %'")

    page.get_by_role("button", name="Quiet now").click()
    wait_for(lambda: p.state()["quiet"] is True, message="quiet")
    page.wait_for_selector("#quiet[aria-pressed=true]")

    lights = page.get_by_role("switch", name="Lights")
    assert lights.get_attribute("aria-checked") == "true"
    lights.click()
    wait_for(lambda: p.state()["lights"] == "off", message="lights off")
    page.wait_for_selector("#lights[aria-checked=false]")
    assert page.text_content("#scene") == "lights off"
    assert p.state()["leds"]["level"] == 0.3  # the dimmer stays as it was

    # Kept in the browser: a new visit needs no token.
    page.goto(p.url)
    wait_live(page)
    assert page.locator("#control-panel").is_visible()


def test_phone_layout_in_the_dark_fits_the_screen(pillow, open_page):
    p = pillow()
    page = open_page(p.url, viewport={"width": 360, "height": 740},
                     color_scheme="dark", device_scale_factor=2)
    wait_live(page)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"the page scrolls sideways on a phone ({width}px)"
    background = page.evaluate("getComputedStyle(document.body).color")
    assert background == "rgb(238, 241, 250)"  # the dark theme's ink


def test_show_older_pages_through_history_without_live_updates_wiping_it(pillow, open_page):
    p = pillow(env={"PILLOWD_CONTROL_TOKEN": TOKEN})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for i in range(60):
        assert p.post("/api/scene", json={"scene": "glow", "from": f"sender{i}"},
                      headers=auth).status_code == 200
    page = open_page(p.url)
    wait_live(page)
    assert page.locator("#recent li").count() == 50
    assert "sender59" in page.text_content("#recent li:first-child")
    page.click("#older")
    page.wait_for_function("document.querySelectorAll('#older-list li').length === 10")
    older = page.locator("#older-list li .who").all_text_contents()
    assert older == [f"sender{i}" for i in range(9, -1, -1)]
    assert page.is_hidden("#older")  # nothing older is left
    # A new outcome refreshes the recent list and leaves the older pages in place.
    p.post("/api/scene", json={"scene": "hug", "from": "late"}, headers=auth)
    page.wait_for_function(
        "document.querySelector('#recent li .who').textContent === 'late'")
    assert page.locator("#older-list li").count() == 10


def test_a_page_without_its_socketio_client_says_so(pillow, browser):
    # The client script as if the install lacked it (a 404 from the real daemon's
    # route is what a build without web/static/vendor/ serves).
    p = pillow()
    assert p.get("/static/vendor/socket.io.min.js").status_code == 200
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.route("**/static/vendor/socket.io.min.js",
                   lambda route: route.fulfill(status=404, body="not found"))
        page.goto(p.url)
        page.wait_for_selector("#connection.bad")
        assert page.text_content("#connection") == "no live updates"
        assert page.is_visible("#stale")
        assert "Socket.IO client" in page.text_content("#stale")
        assert "missing" in page.text_content("#stale")
    finally:
        context.close()


def test_the_page_says_why_the_leds_are_dark_when_the_hardware_cannot_start(
        open_page, make_config, pillow_env):
    from conftest import BASE_CONFIG, ROOT, PillowProcess

    # backend "pi" off a Raspberry Pi: the LEDs cannot start, the pillow runs on.
    config = make_config(base=BASE_CONFIG.replace('backend = "mock"', 'backend = "pi"'))
    p = PillowProcess(config, pillow_env, cwd=ROOT).start()
    try:
        page = open_page(p.url)
        wait_live(page)
        page.wait_for_selector("#hardware-trouble:not([hidden])")
        assert "needs a Raspberry Pi" in page.text_content("#hardware-trouble")
    finally:
        p.stop()


def test_the_page_says_so_while_the_strip_fails_and_clears_when_it_works(
        open_page, make_config, monkeypatch):
    import pillowd.daemon as daemon_module
    from pillowd import config
    from pillowd.hardware import open_mock
    strips = []

    def mock_only(backend, leds, record_to=None):
        hardware = open_mock(leds.count)
        strips.append(hardware.strip)
        return hardware
    monkeypatch.setattr(daemon_module, "open_hardware", mock_only)
    d = daemon_module.Daemon(config.load(make_config()), environ={})
    d.start()
    try:
        page = open_page(d.url)
        wait_live(page)
        assert page.is_hidden("#hardware-trouble")
        strips[0].fail(10**6, "writing /dev/leds0: Input/output error")
        d.controls.play({"scene": "hug"}, source="web")
        page.wait_for_selector("#hardware-trouble:not([hidden])")
        shown = page.text_content("#hardware-trouble")
        assert "LEDs: writing /dev/leds0: Input/output error (since " in shown, shown
        assert "trying again" in shown
        strips[0].fail(0)
        page.wait_for_selector("#hardware-trouble[hidden]", state="attached")
    finally:
        d.close()


def test_no_trouble_banner_while_the_hardware_works(open_page, pillow):
    page = open_page(pillow().url)
    wait_live(page)
    assert page.is_hidden("#hardware-trouble")


def test_the_page_works_under_its_own_content_security_policy(pillow, browser):
    from playwright.sync_api import expect
    p = pillow(env={"PILLOWD_CONTROL_TOKEN": TOKEN})
    context = browser.new_context()  # the policy in force, unlike open_page's
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        refused, errors = [], []
        page.on("console", lambda m: refused.append(m.text)
                if "Content Security Policy" in m.text else None)
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(p.url + f"?token={TOKEN}")
        wait_live(page)
        p.cli("send", "hug", "--from", "Alice")
        expect(page.locator("#sender")).to_have_text("Alice")
        # The canvas is drawn: the hug's red at the first LED.
        wait_for(lambda: page.evaluate("""() => {
            const [p] = window.pillowPage.ledPositions();
            const d = document.getElementById('leds').getContext('2d')
                .getImageData(p.x, p.y, 1, 1).data;
            return d[0] === 255 && d[1] === 0 && d[2] === 0; }"""), message="a red LED")
        page.get_by_role("switch", name="Lights").click()
        wait_for(lambda: p.state()["lights"] == "off", message="lights off")
        assert refused == [] and errors == []
    finally:
        context.close()


def test_a_private_pillow_page_asks_for_the_token_once(make_config, pillow_env, browser):
    from playwright.sync_api import expect
    from conftest import ROOT, PillowProcess
    config = make_config()
    config.write_text(config.read_text().replace('host = "127.0.0.1"',
                                                 'host = "127.0.0.1"\nprivate = true'))
    p = PillowProcess(config, {**pillow_env, "PILLOWD_CONTROL_TOKEN": TOKEN}, cwd=ROOT).start()
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(p.url)
        page.wait_for_selector("#connection.bad")
        assert "test-pillow" not in page.content()
        assert page.locator("#token-form").is_visible()
        page.get_by_label("Control token").fill("a-wrong-token-of-length")
        page.get_by_role("button", name="Unlock").click()
        page.wait_for_selector("#control-result.bad")
        assert "does not work" in page.text_content("#control-result")
        assert page.locator("#token-form").is_visible()

        page.get_by_label("Control token").fill(TOKEN)
        page.get_by_role("button", name="Unlock").click()
        wait_live(page)
        expect(page.locator("#name")).to_have_text("test-pillow")
        page.goto(p.url)  # asked once: kept in this browser
        wait_live(page)
        assert page.locator("#token-form").is_hidden()
    finally:
        context.close()
        p.stop()
