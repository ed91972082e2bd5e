"""Hostile clients: fuzzed POST /api/scene, junk on Socket.IO, and script in messages on the page."""

from __future__ import annotations

import http.client
import itertools
import json
import os
import random
from urllib.parse import urlsplit

import pytest
import requests
import socketio
import websocket
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from conftest import BASE_CONFIG, Watcher, wait_for

import pillowd.queues.local as local
from pillowd.config import parse
from pillowd.messages import MAX_BODY, Rejection, command_from

TOKEN = "s3cret-token-for-tests"
SETTINGS = parse(BASE_CONFIG.format(state_dir="/nonexistent"))


@pytest.fixture
def controlled(pillow):
    """A pillow whose controls are on, behind TOKEN."""
    return pillow(env={"PILLOWD_CONTROL_TOKEN": TOKEN})


def healthy(p) -> None:
    """The daemon is alive and well, and still plays what it is sent."""
    assert p.proc.poll() is None, "the daemon died"
    assert p.get("/healthz").status_code == 200
    watcher = Watcher(p.url)
    try:
        watcher.wait_state(lambda s: True, message="the state on connect after the junk")
    finally:
        watcher.close()


# -- POST /api/scene -------------------------------------------------------------

scene_fields = st.dictionaries(
    st.sampled_from(["scene", "color", "brightness", "duration", "from", "text", "id",
                     "ttl", "sent_at", "bogus"]),
    st.one_of(st.sampled_from(["hug", "glow", "nap", "#ff0000", "<script>x</script>"]),
              st.floats(allow_nan=True), st.integers(-10 ** 20, 10 ** 20), st.none(),
              st.text(max_size=80), st.lists(st.integers(), max_size=3)), max_size=6)
raw_bodies = st.one_of(
    scene_fields.map(lambda d: json.dumps(d).encode()),
    st.fixed_dictionaries({"scene": st.sampled_from(["hug", "glow"])}).map(
        lambda d: json.dumps(d).encode()),
    st.binary(max_size=300),
    st.sampled_from([b"", b"null", b"[]", b"{", b"NaN", b'{"scene": "hug"',
                     b"[" * 50_000 + b"]" * 10_000, b'{"scene": "\\ud800"}',
                     b'{"scene": "hug", "from": "\\udfff"}', b"\xff" * 100]))
auths = st.sampled_from([f"Bearer {TOKEN}", f"bearer {TOKEN}", f"Bearer {TOKEN}x", "Bearer ",
                         TOKEN, f"Basic {TOKEN}", "", "Bearer \u00e9", None])
content_types = st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded",
                                 "multipart/form-data; boundary=x", "application/json; charset=latin-1",
                                 None])


def expected_status(auth: str | None, body: bytes) -> int:
    if auth is None or auth.split(" ", 1)[0].lower() != "bearer" or \
            auth.partition(" ")[2].strip() != TOKEN:
        return 401
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return 400
    if not isinstance(data, dict):
        return 400
    try:
        command_from(data, SETTINGS)
    except Rejection:
        return 400
    return 200


def test_fuzzed_post_scene_gets_4xx_or_plays_and_never_breaks_the_daemon(controlled):
    p = controlled
    seen = set()
    port = urlsplit(p.url).port
    sources = itertools.count(1)
    wrong = []  # wrong tokens the pillow had to compare

    def compares_a_wrong_token(auth: str | None) -> bool:
        scheme, _, given = (auth or "").partition(" ")
        return scheme.lower() == "bearer" and given.strip() != TOKEN

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(auths, content_types, raw_bodies)
    def post(auth, content_type, body):
        headers = {"Content-Length": str(len(body))}
        if auth is not None:
            headers["Authorization"] = auth
        if content_type is not None:
            headers["Content-Type"] = content_type
        # Each from an address of its own (all of 127/8 is loopback): five wrong
        # tokens from one address would get the rest refused 429 unread.
        # The pillow compares at most 100 wrong tokens a minute, then refuses every
        # control (test_admission checks that): stay under it, so each answer here
        # depends on the request alone.
        if compares_a_wrong_token(auth):
            assume(len(wrong) < 90)
            wrong.append(auth)
        n = next(sources)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10,
                                          source_address=(f"127.0.{n // 250}.{n % 250 + 1}", 0))
        try:
            conn.request("POST", "/api/scene", body=body, headers=headers)
            response = conn.getresponse()
            status, text = response.status, response.read().decode()
        except UnicodeEncodeError:  # a non-Latin-1 header cannot be sent at all
            return
        finally:
            conn.close()
        seen.add(status)
        assert status == expected_status(auth, body), (auth, body[:80], text)
        assert "error" in json.loads(text) or json.loads(text)["outcome"] == "applied"

    post()
    assert {200, 400, 401} <= seen
    healthy(p)


def test_post_scene_limits(controlled, pillow):
    p = controlled
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    huge = json.dumps({"scene": "hug", "text": "x" * MAX_BODY}).encode()
    assert p.post("/api/scene", data=huge, headers=bearer).status_code == 413
    assert p.post("/api/scene", data=huge).status_code == 401  # token first
    # Sent chunked, with no length: werkzeug stops reading at the limit, so the cut
    # body is not JSON (400 rather than 413), and nothing plays.
    chunks = (huge[i:i + 4096] for i in range(0, len(huge), 4096))
    assert p.post("/api/scene", data=chunks, headers=bearer).status_code in (400, 413)
    assert p.state()["queue"]["applied"] == 0
    assert p.get("/api/scene").status_code == 405
    healthy(p)
    readonly = pillow()
    assert readonly.post("/api/scene", json={"scene": "hug"}, headers=bearer).status_code == 403


# -- Socket.IO junk ----------------------------------------------------------------

def test_junk_on_the_socketio_namespace_is_ignored(pillow):
    p = pillow()
    rng = random.Random(8)
    client = socketio.Client(reconnection=False)
    client.connect(p.url, namespaces=["/pillow"], transports=["websocket"], wait_timeout=10)
    for event, payload in [
            ("state", {"scene": "hug"}), ("frame", b"\xff" * 36), ("play", {"scene": "hug"}),
            ("no-such-event", None), ("x" * 10_000, "y"), ("connect", 1), ("disconnect", 2),
            ("junk", rng.randbytes(200_000)), ("junk", "z" * 500_000),
            ("junk", [[[[[[[[[[]]]]]]]]]]), ("junk", {"a": float("nan")})]:
        client.emit(event, payload, namespace="/pillow")
    client.emit("too-big", "q" * 2_000_000, namespace="/pillow")  # past the 1 MB cap
    client.disconnect()

    # Raw Engine.IO/Socket.IO packets that no client library would send.
    ws_url = p.url.replace("http://", "ws://") + "socket.io/?EIO=4&transport=websocket"
    for frames in (["garbage", "4", "42/pillow,[", "40/nope,", "41", "0", "2probe", "5", "6"],
                   ["40/pillow,", '42/pillow,["state",{}]', "42/pillow," + "[" * 5000,
                    "45-/pillow,0[]", "451-/pillow,[\"x\",{\"_placeholder\":true,\"num\":9}]"],
                   [rng.randbytes(1000), rng.randbytes(70_000)],
                   ["4" + "x" * 1_500_000]):
        ws = websocket.create_connection(ws_url, timeout=5)
        try:
            ws.recv()  # the handshake
            for frame in frames:
                if isinstance(frame, bytes):
                    ws.send_binary(frame)
                else:
                    ws.send(frame)
        except (websocket.WebSocketException, OSError):
            pass  # the server may hang up on junk: that is a fine answer
        finally:
            ws.close()

    polling = p.url + "socket.io/"
    handshake = requests.get(polling, params={"EIO": "4", "transport": "polling"}, timeout=5)
    assert handshake.status_code == 200
    sid = json.loads(handshake.text[handshake.text.index("{"):])["sid"]
    for body in [b"garbage", b"4", b"42/pillow,[", rng.randbytes(5000), b"\x00" * 100,
                 b"40/pillow,\x1e" * 1000]:
        answer = requests.post(polling, params={"EIO": "4", "transport": "polling", "sid": sid},
                               data=body, timeout=5)
        assert answer.status_code < 500
    for params in [{"EIO": "4", "transport": "polling", "sid": "not-a-sid"},
                   {"EIO": "99", "transport": "polling"}, {"EIO": "4", "transport": "carrier-pigeon"},
                   {"EIO": "4", "transport": "websocket"}]:
        answer = requests.post(polling, params=params, data=b"40", timeout=5)
        assert 400 <= answer.status_code < 500, (params, answer.status_code)
    healthy(p)
    p.cli("send", "hug")
    wait_for(lambda: p.state()["scene"] == "hug", message="a hug after the junk")


# -- nothing from a message is HTML on the page -------------------------------------

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    path = os.environ.get("PILLOWD_CHROMIUM", "/usr/bin/chromium")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_script_in_from_and_text_is_shown_as_text_and_never_runs(pillow, browser):
    p = pillow()
    sender = '<img src=x onerror="window.__pwned=1;alert(1)">'
    note = '<script>window.__pwned=2</script><b id="injected">bold</b>'
    scene = '<img src=y onerror="window.__pwned=3">'
    store = local.LocalStore(p.config.parent / "state" / "queue.sqlite3")
    try:
        # A rejected one first: its reason quotes the scene, and the page lists it.
        store.queue("pillow").put(json.dumps({"scene": scene, "from": sender}))
        wait_for(lambda: p.state()["queue"]["rejected"] == 1, message="the rejection")
        store.queue("pillow").put(json.dumps({"scene": "glow", "from": sender, "text": note}))
        wait_for(lambda: p.state()["scene"] == "glow", message="the glow")
    finally:
        store.close()

    page = browser.new_page()
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(p.url)
    # The sender's name, the note and the quoted scene appear as literal text.
    for literal in (sender, note, "onerror=\"window.__pwned=3\""):
        page.get_by_text(literal, exact=False).first.wait_for(state="visible", timeout=10_000)
    page.wait_for_timeout(300)  # give a wrongly inserted onerror the chance to fire
    assert page.evaluate("window.__pwned") is None
    assert dialogs == []
    assert page.locator("img[src=x], img[src=y], #injected").count() == 0
    page.close()

