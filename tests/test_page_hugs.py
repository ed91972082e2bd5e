"""The status page's hug card in a real Chromium: the last hug, "Hug back", what became
of the last hug sent (two pillows on Azurite), and what came in quiet hours."""

import json
from datetime import datetime, timedelta

import pytest

from conftest import BASE_CONFIG, PillowProcess, wait_for
from pillowd.family import FamilyKey
from test_hugs_between_pillows import TOKEN as PAIR_TOKEN, hug, items, pair  # noqa: F401
from test_page import TOKEN, browser, open_page, wait_live  # noqa: F401
from test_pairing import bare_env, owner, prefix  # noqa: F401

KEY = FamilyKey.generate()

OUTBOUND = """
[scenes.hugged]
effect = "solid"
color = "#ffb347"
duration = 1
"""


@pytest.fixture
def hugging(make_config, pillow_env, tmp_path):
    """A pillow with the token and a partner, bob, whose queue is in the same local
    queue file: the test reads what the pillow sent there. The family key is in the
    pillow's tokens (the systemd credential azure-queue-sas)."""
    base = BASE_CONFIG.replace('name = "pillow"\n',
                               'name = "pillow"\noutbound_name = "bob"\n', 1)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "azure-queue-sas").write_text(f'family_key = "{KEY.text()}"\n')
    process = PillowProcess(make_config(OUTBOUND, base=base),
                            {**pillow_env, "PILLOWD_CONTROL_TOKEN": TOKEN,
                             "CREDENTIALS_DIRECTORY": str(credentials)})
    yield process.start()
    process.stop()


def hug_from_bob(ident: str, reply_to: dict | None = None) -> str:
    return json.dumps(KEY.signed({"scene": "hug", "from": "bob", "id": ident, "ttl": 600,
                                  "event": "hug", "pillow": "bob", "reply_to": reply_to}))


def test_the_page_shows_the_last_hug_and_hugs_back_with_the_token(
        hugging, queues, open_page):
    p = hugging
    found = queues(p.config)

    page = open_page(p.url)
    wait_live(page)
    assert page.text_content("#last-hug") == "No hug from a partner yet."
    assert page.locator("#hug").is_hidden()          # no token in this browser yet

    found.main.put(hug_from_bob("bob-1"))
    page.wait_for_function(
        "document.getElementById('last-hug').textContent.startsWith('Hug from bob')")
    assert page.locator("#hug").is_hidden()

    page.goto(p.url + f"?token={TOKEN}")
    wait_live(page)
    # Within the reply window of bob's hug, the one button answers it.
    assert page.get_by_role("button", name="Send a hug").count() == 0
    page.get_by_role("button", name="Hug back").click()
    page.wait_for_selector("#hug-result.ok")
    # The event went to bob's queue, answering bob's hug.
    # bob's queue holds the receipt for bob-1, then the hug event.
    sent = wait_for(lambda: [json.loads(m.body) for m in found.outbound[0].peek()
                             if '"event":"hug"' in m.body], message="the hug event")
    (event,) = sent
    assert event["reply_to"] == {"id": "bob-1", "from": "bob"}
    wait_for(lambda: p.state()["recent"][0]["scene"] == "hugged",
             message="the press played here")

    found.main.put(hug_from_bob("bob-2", {"id": event["id"], "from": "test-pillow"}))
    page.wait_for_function(
        "document.getElementById('last-hug').textContent.startsWith('Hug back from bob')")
    assert page.locator("#recent li").first.text_content().count("hug back") == 1


def hhmm(at: str) -> str:
    """14:02, in this machine's time zone, which the browser shares."""
    return datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone().strftime("%H:%M")


def ago(page, within="#last-sent") -> str:
    """The "just now" or "2 min ago" a line shows, whose exact time is on hover."""
    when = page.locator(f"{within} time.ago").first
    assert when.get_attribute("title"), "no exact time on hover"
    return when.text_content()


def test_the_senders_page_shows_delivered_then_hugged_back(pair, open_page):
    alice, bob = pair("alice"), pair("bob")
    page = open_page(alice.url + f"?token={PAIR_TOKEN}")
    wait_live(page)
    assert page.locator("#last-sent").is_hidden()
    page.get_by_role("button", name="Send a hug").click()
    page.wait_for_function(
        "document.getElementById('last-sent').textContent.includes('delivered')",
        timeout=30_000)
    sent = alice.state()["last_sent"]
    bobs = sent["partners"]["bob"]
    assert page.text_content("#last-sent") == \
        f"Sent {ago(page)} · delivered ✓ {hhmm(bobs['delivered'])}"

    back = hug(bob)
    page.wait_for_function(
        "document.getElementById('last-sent').textContent.includes('hugged back')",
        timeout=30_000)
    (returned,) = items(alice, back)
    assert page.text_content("#last-sent") == (
        f"Sent {ago(page)} · delivered ✓ {hhmm(bobs['delivered'])} · "
        f"hugged back ✓ {hhmm(returned['at'])}")
    assert page.text_content("#last-hug").startswith("Hug back from bob")


def test_a_hug_into_quiet_hours_shows_on_both_pages(pair, open_page):
    now = datetime.now()
    quiet = (f'\n[quiet]\nstart = "{(now - timedelta(minutes=1)).strftime("%H:%M")}"\n'
             f'end = "{(now + timedelta(minutes=5)).strftime("%H:%M")}"\n')
    alice, bob = pair("alice"), pair("bob", quiet)
    alices = open_page(alice.url + f"?token={PAIR_TOKEN}")
    bobs = open_page(bob.url + f"?token={PAIR_TOKEN}")
    wait_live(alices)
    wait_live(bobs)
    assert bobs.locator("#while-quiet").is_hidden()

    sent = hug(alice)
    # bob's page: the hug waits there, until seen.
    bobs.wait_for_selector("#while-quiet:not([hidden])", timeout=30_000)
    (played,) = items(bob, sent)
    assert bobs.text_content("#while-quiet-list") == \
        f"While you slept: alice, {ago(bobs, '#while-quiet-list')}"
    assert bob.state()["while_quiet"] == [
        {"id": sent, "from": "alice", "text": None, "at": played["at"]}]
    # alice's page: bob's pillow said so in its receipt.
    alices.wait_for_function(
        "document.getElementById('last-sent').textContent.includes('quiet hours')",
        timeout=30_000)
    last = alice.state()["last_sent"]
    assert alices.text_content("#last-sent") == (
        f"Sent {ago(alices)} · delivered ✓ {hhmm(played['at'])} · "
        "bob's pillow is in quiet hours")

    bobs.get_by_role("button", name="Seen").click()
    bobs.wait_for_selector("#while-quiet", state="hidden")
    assert bob.state()["while_quiet"] == []


def test_a_hug_back_shows_even_when_its_receipt_has_not_come(hugging, queues, open_page):
    # bob's pillow answered without a receipt (an older pillow, or the receipt still
    # on its way: a queue keeps no order): the hug back says it was delivered.
    p = hugging
    found = queues(p.config)
    page = open_page(p.url + f"?token={TOKEN}")
    wait_live(page)
    page.get_by_role("button", name="Send a hug").click()
    page.wait_for_selector("#hug-result.ok")
    (event,) = wait_for(lambda: [json.loads(m.body) for m in found.outbound[0].peek()
                                 if '"event":"hug"' in m.body], message="the hug event")
    found.main.put(hug_from_bob("bob-1", {"id": event["id"], "from": "test-pillow"}))
    wait_for(lambda: p.state()["last_sent"]["partners"]["bob"]["hugged_back"],
             message="hugged back on the snapshot")
    page.wait_for_function(
        "document.getElementById('last-sent').textContent.includes('hugged back')",
        timeout=30_000)


def test_the_hug_button_says_hug_back_only_within_the_reply_window(
        make_config, pillow_env, tmp_path, queues, open_page):
    base = BASE_CONFIG.replace('name = "pillow"\n',
                               'name = "pillow"\noutbound_name = "bob"\n', 1)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "azure-queue-sas").write_text(f'family_key = "{KEY.text()}"\n')
    window = "\n[button]\npin = 17\nreply_window_seconds = 3\n"
    p = PillowProcess(make_config(OUTBOUND + window, base=base),
                      {**pillow_env, "PILLOWD_CONTROL_TOKEN": TOKEN,
                       "CREDENTIALS_DIRECTORY": str(credentials)}).start()
    try:
        page = open_page(p.url + f"?token={TOKEN}")
        wait_live(page)
        page.get_by_role("button", name="Send a hug").wait_for()
        queues(p.config).main.put(hug_from_bob("bob-1"))
        page.get_by_role("button", name="Hug back").wait_for()
        # The window passes: the button says what it does now.
        page.get_by_role("button", name="Send a hug").wait_for()
    finally:
        p.stop()


def test_a_receipt_shows_as_delivered_on_the_hug_it_answers(hugging, queues, open_page):
    p = hugging
    found = queues(p.config)
    page = open_page(p.url + f"?token={TOKEN}")
    wait_live(page)
    page.get_by_role("button", name="Send a hug").click()
    page.wait_for_selector("#hug-result.ok")
    (event,) = wait_for(lambda: [json.loads(m.body) for m in found.outbound[0].peek()
                                 if '"event":"hug"' in m.body], message="the hug event")
    played = datetime.now().astimezone()
    found.main.put(json.dumps(KEY.signed({
        "event": "receipt", "of": event["id"], "pillow": "bob",
        "played_at": played.isoformat(), "quiet": False})))
    wait_for(lambda: p.state()["recent"][0].get("event") == "receipt",
             message="the receipt in the history")
    receipt = p.state()["recent"][0]
    assert receipt["of"] == event["id"] and receipt["outcome"] == "applied"

    # On the press's row, not a row of its own, and not counted as a message.
    page.wait_for_selector("#recent li .delivered")
    rows = page.locator("#recent li")
    assert rows.count() == 1
    assert rows.first.get_attribute("data-id") == event["id"]
    assert rows.first.locator(".who").text_content() == "You"
    assert rows.first.locator(".delivered").text_content() == \
        f"delivered ✓ {hhmm(receipt['at'])}"
    assert p.state()["queue"]["applied"] == 2
    assert page.text_content("#counts .applied dd") == "1"


# -- press and hold ------------------------------------------------------------------

def hug_events(found) -> list[dict]:
    return [json.loads(m.body) for m in found.outbound[0].peek(32)
            if '"event":"hug"' in m.body]


def test_the_hug_button_held_sends_how_long_it_was_held_with_a_ring(
        hugging, queues, open_page):
    p = hugging
    found = queues(p.config)
    page = open_page(p.url)
    page.clock.install()           # the page's own clock: held seconds without waiting
    page.goto(p.url + f"?token={TOKEN}")
    wait_live(page)
    button = page.get_by_role("button", name="Send a hug")
    box = button.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)

    page.mouse.down()
    page.clock.fast_forward(2500)
    # Held: the ring shows, and nothing has gone yet.
    assert "holding" in button.get_attribute("class")
    assert page.evaluate("getComputedStyle(document.getElementById('hug'), '::after')"
                         ".opacity") == "1"
    assert hug_events(found) == []
    page.mouse.up()
    page.wait_for_selector("#hug-result.ok")
    (event,) = wait_for(lambda: hug_events(found), message="the held hug")
    assert 2.5 <= event["hold"] < 4          # 2.5 s on the page's clock, and the real
    assert "holding" not in button.get_attribute("class")

    # Held past 30 s: it goes at 30 s, once; the release sends nothing more.
    page.mouse.down()
    page.clock.fast_forward(30_000)
    wait_for(lambda: len(hug_events(found)) == 2, message="the hug at 30 s")
    assert hug_events(found)[1]["hold"] == 30
    page.clock.fast_forward(270_000)
    page.mouse.up()
    # A tap after it is a hug of its own: nothing came between.
    page.keyboard.press("Enter")           # the button has the focus: a key is a tap
    third = wait_for(lambda: hug_events(found)[2:], message="the tap")
    assert len(hug_events(found)) == 3 and "hold" not in third[0]


def test_the_hug_card_shows_how_long_and_in_what_colour(hugging, queues, open_page):
    p = hugging
    page = open_page(p.url)
    wait_live(page)
    queues(p.config).main.put(json.dumps(KEY.signed({
        "scene": "hug", "from": "bob", "id": "bob-held", "ttl": 600, "event": "hug",
        "pillow": "bob", "reply_to": None, "hold": 4.5, "strength": 0.5,
        "color": "#3366ff"})))
    page.wait_for_function(
        "document.getElementById('last-hug').textContent.includes('held 4.5 s')")
    assert page.text_content("#last-hug").startswith("Hug from bob")
    assert page.text_content("#last-hug").endswith(", held 4.5 s, 50 % strength")
    assert page.get_attribute("#last-hug", "data-color") == "#3366ff"
    assert page.evaluate("getComputedStyle(document.querySelector('#last-hug .swatch'))"
                         ".backgroundColor") == "rgb(51, 102, 255)"
