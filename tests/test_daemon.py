"""End to end: a real `pillowd run`, messages sent with `pillowd send`, watched live."""

import base64
import json
import signal
import sqlite3

from conftest import both_backends, wait_for


@both_backends
def test_a_hug_arrives_live_and_returns_to_idle(pillow, watch):
    p = pillow()
    watcher = watch(p.url)
    first = watcher.wait_state(lambda s: True, message="the state on connect")
    assert first["scene"] == "idle" and first["message"] is None

    sent = p.cli("send", "hug", "--from", "Alice", "--text", "thinking of you")
    queue_id = sent.stdout.strip()
    assert len(queue_id) >= 8

    playing = watcher.wait_state(lambda s: s["scene"] == "hug", message="the hug")
    assert playing["message"]["from"] == "Alice"
    assert playing["message"]["text"] == "thinking of you"
    assert playing["until"] is not None
    assert playing["recent"][0]["outcome"] == "applied"
    assert playing["queue"]["applied"] == 1

    # The LEDs really show the hug's red (brightness 1 in the test config).
    red = wait_for(lambda: next((f for f in reversed(watcher.frames)
                                 if f[:3] == b"\xff\x00\x00"), None),
                   message="a red frame")
    assert len(red) == 12 * 3

    back = watcher.wait_state(lambda s: s["scene"] == "idle" and s["queue"]["applied"],
                              timeout=5, message="idle after the hug's 1.5 s")
    assert back["message"] is None and back["until"] is None


@both_backends
def test_base64_and_bare_word_bodies_are_played(pillow, watch, queues):
    p = pillow()
    watcher = watch(p.url)
    p.cli("send", "glow", "--base64", "--from", "Bob")
    watcher.wait_state(lambda s: s["scene"] == "glow" and s["message"]["from"] == "Bob",
                       message="a base64 message")
    queues(p.config).main.put("HUGGING")  # a bare word, through an alias
    watcher.wait_state(lambda s: s["scene"] == "hug", message="a bare word")


@both_backends
def test_bad_message_is_rejected_with_reason_and_poison_requeue_brings_it_back(
        pillow, watch, queues):
    p = pillow()
    watcher = watch(p.url)
    # Written straight to the queue as another sender could: pillowd send refuses it.
    refused = p.cli("send", "nap", check=False)
    assert refused.returncode == 1 and "unknown scene 'nap'" in refused.stderr

    store = queues(p.config)
    store.main.put(json.dumps({"scene": "hug", "brightness": 7}))
    rejected = watcher.wait_state(lambda s: s["queue"]["rejected"] == 1,
                                  message="the rejection")
    assert rejected["recent"][0]["outcome"] == "rejected"
    assert "brightness must be between 0 and 1" in rejected["recent"][0]["reason"]
    assert rejected["scene"] == "idle"

    listed = p.cli("poison", "list").stdout
    assert "brightness must be between 0 and 1" in listed
    assert '"brightness": 7' in listed
    poison = store.poison.peek()
    assert len(poison) == 1
    wrapper = json.loads(poison[0].body)
    assert set(wrapper) == {"reason", "original", "queue", "dequeue_count", "at"}
    assert wrapper["queue"] == store.main.name and wrapper["dequeue_count"] == 1

    p.cli("poison", "requeue")
    # Back on the main queue, the same body is rejected again: a second outcome.
    watcher.wait_state(lambda s: s["queue"]["rejected"] == 2, message="the requeued one")
    assert len(store.poison.peek()) == 1
    p.cli("poison", "purge")
    assert store.poison.peek() == []


@both_backends
def test_restart_replays_nothing_already_applied(pillow, watch, make_config, queues):
    p = pillow()
    watcher = watch(p.url)
    p.cli("send", "hug", "--from", "Alice")
    watcher.wait_state(lambda s: s["queue"]["applied"] == 1, message="the hug")
    watcher.close()
    assert p.stop() == 0

    # The same client id sent again, as a retrying sender would, after a restart.
    history = sqlite3.connect(p.config.parent / "state" / "history.sqlite3")
    (applied_id,) = history.execute(
        "SELECT id FROM outcomes WHERE outcome = 'applied'").fetchone()
    history.close()
    queues(p.config).main.put(json.dumps({"scene": "hug", "id": applied_id}))

    p.start()
    again = watch(p.url)
    state = again.wait_state(lambda s: s["queue"]["duplicate"] == 1,
                             message="the duplicate")
    assert state["queue"]["applied"] == 1
    assert state["recent"][0]["outcome"] == "duplicate"
    assert state["scene"] == "idle"
    # History survived the restart.
    items = p.get("/api/history?limit=10").json()["items"]
    assert [i["outcome"] for i in items] == ["duplicate", "applied"]


@both_backends
def test_a_message_whose_daemon_was_killed_comes_back(pillow, make_config, queues):
    # Received but never settled (the daemon died): it must be seen again.
    config = make_config()
    queue = queues(config).main
    queue.put(json.dumps({"scene": "hug", "from": "Carol", "id": "carol-1"}))
    taken = queue.receive(32, visibility_timeout=1)
    assert len(taken) == 1 and queue.receive() == []

    p = pillow()
    wait_for(lambda: p.state()["queue"]["applied"] == 1, message="the comeback")
    assert p.state()["recent"][0]["id"] == "carol-1"


def test_sigterm_leaves_the_leds_dark_and_exits_promptly(pillow, watch):
    import time
    p = pillow()
    watcher = watch(p.url)
    p.cli("send", "glow")
    wait_for(lambda: any(f.count(0) < len(f) for f in watcher.frames[-3:]),
             message="lit frames")
    started = time.monotonic()
    code = p.stop(signal.SIGTERM)
    elapsed = time.monotonic() - started
    assert code == 0
    assert elapsed < 2.0, f"took {elapsed:.2f} s to stop"
    # What the (mock) strip was left showing, recorded as the hardware closed.
    leds = json.loads((p.config.parent / "state" / "mock-hardware.json").read_text())["leds"]
    assert leds["lit_frames"] > 0, "never lit: the check below would prove nothing"
    assert leds["pixels"] == [[0, 0, 0]] * 12
    out = "".join(p.output)
    assert "Traceback" not in out


def test_http_endpoints(pillow):
    p = pillow()
    health = p.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    metrics = p.get("/metrics").text
    assert 'pillowd_messages_total{outcome="applied"} 0.0' in metrics
    assert "pillowd_render_fps" in metrics and "pillowd_web_clients" in metrics
    page = p.get("/")
    assert page.status_code == 200 and "test-pillow" in page.text
    assert "socket.io.min.js" in page.text and "//cdn" not in page.text
    js = p.get("/static/vendor/socket.io.min.js")
    assert js.status_code == 200 and len(js.content) > 10_000
    assert p.get("/api/history?limit=0").status_code == 400
    assert p.get("/api/history?limit=abc").status_code == 400
    # No token configured: controls are refused with 403.
    assert p.post("/api/scene", json={"scene": "hug"}).status_code == 403


def test_control_token_guards_post_scene(pillow, watch):
    p = pillow(env={"PILLOWD_CONTROL_TOKEN": "s3cret-token-for-tests"})
    watcher = watch(p.url)
    assert p.post("/api/scene", json={"scene": "hug"}).status_code == 401
    assert p.post("/api/scene", json={"scene": "hug"},
                  headers={"Authorization": "Bearer wrong"}).status_code == 401
    auth = {"Authorization": "Bearer s3cret-token-for-tests"}
    bad = p.post("/api/scene", json={"scene": "nap"}, headers=auth)
    assert bad.status_code == 400 and "unknown scene" in bad.json()["error"]
    huge = p.post("/api/scene", data=b"x" * 70_000, headers=auth)
    assert huge.status_code == 413
    ok = p.post("/api/scene", json={"scene": "glow", "from": "web"}, headers=auth)
    assert ok.status_code == 200 and ok.json()["outcome"] == "applied"
    watcher.wait_state(lambda s: s["scene"] == "glow", message="the web scene")
    # The token never shows in the page, the state or the output.
    assert "s3cret-token-for-tests" not in p.get("/").text
    assert "s3cret-token-for-tests" not in json.dumps(p.state())
    assert "s3cret-token-for-tests" not in "".join(p.output)


def test_port_taken_is_one_line_error(make_config, pillow_env):
    import socket
    from conftest import run_cli
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    config = make_config()
    config.write_text(config.read_text().replace("port = 0", f"port = {port}"))
    result = run_cli("run", "--config", str(config), env=pillow_env, check=False)
    taken.close()
    assert result.returncode == 1
    assert f"cannot serve the status page on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


@both_backends
def test_send_puts_base64_when_asked(make_config, pillow_env, queues):
    from conftest import run_cli
    config = make_config()
    queues(config)  # opened, as a pillow would: send refuses a queue nobody opened
    run_cli("send", "hug", "--base64", "--text", "hé", "--config", str(config),
            env=pillow_env)
    (message,) = queues(config).main.peek()
    decoded = json.loads(base64.b64decode(message.body))
    assert decoded["scene"] == "hug" and decoded["text"] == "hé"
    assert decoded["id"] and decoded["sent_at"].endswith("Z")


def test_demo_feeds_scenes_through_the_queue(pillow, watch):
    p = pillow(args=["--demo"])
    watcher = watch(p.url)
    played = watcher.wait_state(lambda s: s["queue"]["applied"] >= 1, timeout=20,
                                message="a demo scene")
    demo = played["recent"][0]
    assert demo["outcome"] == "applied" and demo["scene"] in ("hug", "glow")
    assert demo["from"] in ("Alice", "Bob", "Grandma", "Sam")
