"""The status page's hug card in a real Chromium: the last hug, and "Hug back"."""

import json

import pytest

from conftest import BASE_CONFIG, PillowProcess, family_credentials, wait_for
from test_page import TOKEN, browser, open_page, wait_live  # noqa: F401

OUTBOUND = """
[scenes.hugged]
effect = "solid"
color = "#ffb347"
duration = 1
"""


@pytest.fixture
def hugging(make_config, pillow_env, tmp_path):
    """A pillow with the token, the family's key and a partner, bob, whose queue is
    in the same local queue file: the test reads what the pillow sent there."""
    base = BASE_CONFIG.replace('name = "pillow"\n',
                               'name = "pillow"\noutbound_name = "bob"\n', 1)
    family, credentials = family_credentials(tmp_path / "credentials")
    process = PillowProcess(make_config(OUTBOUND, base=base),
                            {**pillow_env, "PILLOWD_CONTROL_TOKEN": TOKEN, **credentials})
    process.family = family  # what bob's pillow signs with
    yield process.start()
    process.stop()


def hug_from_bob(family, ident: str, reply_to: dict | None = None) -> str:
    """bob's hug as his pillow sends it: signed with the family's key."""
    return json.dumps(family.signed({
        "scene": "hug", "from": "bob", "id": ident, "ttl": 600, "event": "hug",
        "pillow": "bob", "reply_to": reply_to}))


def test_the_page_shows_the_last_hug_and_hugs_back_with_the_token(
        hugging, queues, open_page):
    p = hugging
    found = queues(p.config)

    page = open_page(p.url)
    wait_live(page)
    assert page.text_content("#last-hug") == "No hug from a partner yet."
    assert page.locator("#hug").is_hidden()          # no token in this browser yet

    found.main.put(hug_from_bob(p.family, "bob-1"))
    page.wait_for_function(
        "document.getElementById('last-hug').textContent.startsWith('Hug from bob')")
    assert page.locator("#hug").is_hidden()

    page.goto(p.url + f"?token={TOKEN}")
    wait_live(page)
    page.get_by_role("button", name="Hug back").click()
    page.wait_for_selector("#hug-result.ok")
    # The event went to bob's queue, answering bob's hug.
    (sent,) = wait_for(lambda: found.outbound[0].peek(), message="the hug event")
    event = json.loads(sent.body)
    assert event["reply_to"] == {"id": "bob-1", "from": "bob"}
    wait_for(lambda: p.state()["recent"][0]["scene"] == "hugged",
             message="the press played here")

    found.main.put(hug_from_bob(p.family, "bob-2", {"id": event["id"], "from": "test-pillow"}))
    page.wait_for_function(
        "document.getElementById('last-hug').textContent.startsWith('Hug back from bob')")
    assert page.locator("#recent li").first.text_content().count("hug back") == 1
