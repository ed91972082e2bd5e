"""The status page's server side: controls, origins and the frame stream."""

import time

import pytest
import socketio

from conftest import wait_for

TOKEN = "s3cret-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def controlled(pillow):
    return pillow(env={"PILLOWD_CONTROL_TOKEN": TOKEN})


@pytest.mark.parametrize("path, body", [("/api/brightness", {"brightness": 0.2}),
                                        ("/api/off", {}), ("/api/on", {}),
                                        ("/api/quiet", {"quiet": True}),
                                        ("/api/hug", {})])
def test_controls_are_off_without_a_configured_token(pillow, path, body):
    p = pillow()
    reply = p.post(path, json=body, headers=AUTH)
    assert reply.status_code == 403
    assert "no control token" in reply.json()["error"]


@pytest.mark.parametrize("path, body", [("/api/scene", {"scene": "hug"}),
                                        ("/api/brightness", {"brightness": 0.2}),
                                        ("/api/off", {}), ("/api/on", {}),
                                        ("/api/quiet", {"quiet": True}),
                                        ("/api/hug", {}), ("/api/token", {})])
def test_every_control_needs_the_right_token(controlled, path, body):
    before = controlled.state()
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": TOKEN}):
        reply = controlled.post(path, json=body, headers=headers)
        assert reply.status_code == 401, headers
    after = controlled.state()
    assert (after["scene"], after["leds"], after["quiet"]) == \
        (before["scene"], before["leds"], before["quiet"])


def test_brightness_off_and_quiet_change_the_state(controlled, watch):
    watcher = watch(controlled.url)
    assert controlled.post("/api/brightness", json={"brightness": 0.25},
                           headers=AUTH).json() == {"brightness": 0.25}
    watcher.wait_state(lambda s: s["leds"]["brightness"] == 0.25, message="brightness")
    for bad in ({"brightness": 2}, {"brightness": "high"}, {"brightness": True}, {}):
        reply = controlled.post("/api/brightness", json=bad, headers=AUTH)
        assert reply.status_code == 400, bad
    assert controlled.post("/api/brightness", data=b"[", headers=AUTH).status_code == 400

    assert controlled.post("/api/quiet", json={"quiet": True}, headers=AUTH).ok
    watcher.wait_state(lambda s: s["quiet"] is True, message="quiet")
    assert controlled.post("/api/quiet", json={"quiet": "yes"},
                           headers=AUTH).status_code == 400
    assert controlled.post("/api/quiet", json={"quiet": False}, headers=AUTH).ok
    watcher.wait_state(lambda s: s["quiet"] is False, message="not quiet")

    assert controlled.post("/api/scene", json={"scene": "glow"}, headers=AUTH).ok
    watcher.wait_state(lambda s: s["scene"] == "glow", message="glow")
    wait_for(lambda: any(f != bytes(36) for f in watcher.frames[-3:]), message="light")
    assert controlled.post("/api/off", headers=AUTH).ok
    watcher.wait_state(lambda s: s["lights"] == "off", message="off")
    wait_for(lambda: watcher.frames and watcher.frames[-1] == bytes(36),
             message="dark LEDs")


def test_off_ends_what_plays_and_the_next_message_plays_as_usual(controlled, watch):
    """SPEC v0.4: off is not brightness 0 for good (a later hug played dark)."""
    watcher = watch(controlled.url)
    controlled.cli("send", "glow")
    watcher.wait_state(lambda s: s["scene"] == "glow", message="glow")
    reply = controlled.post("/api/off", headers=AUTH)
    assert reply.json() == {"brightness": 1.0, "lights": "off"}
    state = watcher.wait_state(lambda s: s["lights"] == "off", message="lights off")
    assert state["scene"] == "off" and state["message"] is None
    assert state["leds"]["brightness"] == 1.0  # the dimmer as it was
    wait_for(lambda: watcher.frames[-1] == bytes(36), message="dark LEDs")

    controlled.cli("send", "hug", "--from", "Alice")
    state = watcher.wait_state(lambda s: s["scene"] == "hug", message="the hug")
    assert state["lights"] == "on"
    wait_for(lambda: watcher.frames[-1] == bytes([255, 0, 0]) * 12,
             message="the hug's red at full brightness")

    # Off, then on: back to idle's glow, without a message.
    controlled.post("/api/off", headers=AUTH)
    watcher.wait_state(lambda s: s["lights"] == "off", message="off again")
    assert controlled.post("/api/on", headers=AUTH).json() == {"lights": "on"}
    watcher.wait_state(lambda s: s["lights"] == "on" and s["scene"] == "idle"
                       and s["message"] is None, message="on, idle")
    wait_for(lambda: watcher.frames[-1] == bytes([0, 0, 1]) * 12, message="idle's glow")


def test_a_pasted_token_is_checked_without_changing_anything(controlled):
    before = controlled.state()
    assert controlled.post("/api/token", headers=AUTH).json() == {"token": "works"}
    wrong = controlled.post("/api/token", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    after = controlled.state()
    assert (after["scene"], after["leds"], after["quiet"], after["recent"]) == \
        (before["scene"], before["leds"], before["quiet"], before["recent"])


def test_a_short_token_is_explained_only_to_its_holder(pillow):
    p = pillow(env={"PILLOWD_CONTROL_TOKEN": "1234"})
    held = p.post("/api/token", headers={"Authorization": "Bearer 1234"})
    assert held.status_code == 403
    assert "too short" in held.json()["error"]
    # The fix for the way this pillow was started: the environment variable.
    assert "PILLOWD_CONTROL_TOKEN" in held.json()["fix"]
    assert "install.sh" not in held.json()["fix"]
    other = p.post("/api/token", headers={"Authorization": "Bearer 4321"})
    assert other.status_code == 403 and "too short" not in other.json()["error"]
    page = p.get("/").text
    assert "too short" not in page  # not for every visitor


def test_controls_refuse_other_sites_but_not_scripts(controlled):
    own = controlled.url.rstrip("/")
    body = {"quiet": True}
    foreign = controlled.post("/api/quiet", json=body,
                              headers={**AUTH, "Origin": "http://evil.example"})
    assert foreign.status_code == 403 and "evil.example" in foreign.json()["error"]
    cross = controlled.post("/api/quiet", json=body,
                            headers={**AUTH, "Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    assert controlled.state()["quiet"] is False
    # The page itself, and a script (curl sends no Origin), with the token.
    assert controlled.post("/api/quiet", json=body,
                           headers={**AUTH, "Origin": own,
                                    "Sec-Fetch-Site": "same-origin"}).ok
    assert controlled.post("/api/quiet", json={"quiet": False}, headers=AUTH).ok


def test_control_bodies_are_limited(controlled):
    reply = controlled.post("/api/scene", data=b"{" + b" " * 70_000 + b"}",
                            headers={**AUTH, "Content-Type": "application/json"})
    assert reply.status_code == 413


def test_socketio_refuses_other_origins(pillow):
    p = pillow()
    # websocket-client writes the Origin header itself: told which one to send.
    client = socketio.Client(reconnection=False,
                             websocket_extra_options={"origin": "http://evil.example"})
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(p.url, namespaces=["/pillow"], transports=["websocket"],
                       wait_timeout=5)
    polling = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        polling.connect(p.url, namespaces=["/pillow"], transports=["polling"],
                        headers={"Origin": "http://evil.example"}, wait_timeout=5)
    # Its own origin is welcome.
    same = socketio.Client(reconnection=False,
                           websocket_extra_options={"origin": p.url.rstrip("/")})
    states = []
    same.on("state", states.append, namespace="/pillow")
    same.connect(p.url, namespaces=["/pillow"], transports=["websocket"], wait_timeout=5)
    try:
        wait_for(lambda: states, message="a state for the same origin")
    finally:
        same.disconnect()


def test_the_snapshot_lists_the_scenes(pillow):
    assert pillow().state()["scenes"] == ["idle", "hug", "glow"]


def test_frames_are_binary_and_at_most_20_a_second(pillow):
    p = pillow()
    client = socketio.Client(reconnection=False)
    times, frames = [], []

    def frame(data):
        times.append(time.monotonic())
        frames.append(data)

    client.on("frame", frame, namespace="/pillow")
    client.connect(p.url, namespaces=["/pillow"], transports=["websocket"],
                   wait_timeout=10)
    try:
        p.cli("send", "glow")  # breathing: a new frame on every render
        wait_for(lambda: len(times) >= 45, timeout=10, message="45 frames")
    finally:
        client.disconnect()
    assert all(isinstance(f, bytes) and len(f) == 36 for f in frames)
    window = times[-40:]
    rate = (len(window) - 1) / (window[-1] - window[0])
    assert 10 <= rate <= 21, f"{rate:.1f} frames per second"


def test_history_pages_with_a_cursor_newest_first(pillow):
    p = pillow(env={"PILLOWD_CONTROL_TOKEN": "t0ken-t0ken-t0ken"})
    for i in range(30):
        p.post("/api/scene", json={"scene": "glow", "id": f"m{i}"},
               headers={"Authorization": "Bearer t0ken-t0ken-t0ken"})
    seen, cursor = [], None
    while True:
        page = p.get("/api/history", params={"limit": 7, "before": cursor}).json()
        assert len(page["items"]) <= 7
        seen += [item["id"] for item in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == [f"m{i}" for i in range(29, -1, -1)]
    assert p.state()["recent_before"] is None  # all 30 fit in `recent`
    for bad in ("limit=1001", "limit=-1", "before=x", "before=99999999999999999999999"):
        answer = p.get(f"/api/history?{bad}")
        assert answer.status_code == 400, bad
        assert "error" in answer.json()


def test_a_page_on_every_ipv6_address_prints_an_address_that_opens_and_takes_ipv4(
        make_config, pillow_env):
    # [web] host = "::" is every address: the URL `pillowd run` prints opens (::1,
    # as join asks it), and so do the IPv4 loopback and LAN addresses it lists.
    import requests

    from conftest import BASE_CONFIG, PillowProcess
    base = BASE_CONFIG.replace('host = "127.0.0.1"', 'host = "::"')
    assert base != BASE_CONFIG
    process = PillowProcess(make_config(base=base), pillow_env)
    process.start()
    try:
        port = process.url.rstrip("/").rsplit(":", 1)[1]
        assert process.url == f"http://[::1]:{port}/"
        for url in (process.url, f"http://127.0.0.1:{port}/"):
            assert requests.get(f"{url}api/state", timeout=10).json()["pillow"]
    finally:
        process.stop()
