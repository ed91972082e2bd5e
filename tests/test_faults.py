"""The faults a bedroom Pi meets: a strip that fails, a message too big to poison, a full disk."""

from __future__ import annotations

import hashlib
import json
import re
import threading

import pytest

from conftest import both_backends, fill, wait_for
from pillowd import config
from pillowd.config import parse
from pillowd.daemon import Daemon
from pillowd.hardware import MockStrip
from pillowd.leds.light import LightOutput
from pillowd.leds.render import Renderer
from pillowd.leds.scenes import Timeline

SETTINGS = parse('''
[scenes.idle]
effect = "solid"
color = "#000040"
transition_seconds = 0
[scenes.glow]
effect = "breathe"
color = "#00ff00"
period = 0.5
transition_seconds = 0
''')


def renderer(strip: MockStrip, clock=None):
    timeline = Timeline(SETTINGS.scenes["idle"])
    output = LightOutput(strip.count, brightness=1.0, max_milliamps=100_000, gamma=1.0)
    kw = {} if clock is None else {"clock": clock}
    return timeline, Renderer(timeline, strip, output, fps=50, **kw)


# -- the LED strip fails ----------------------------------------------------------


def test_a_strip_that_fails_six_writes_in_a_row_lights_up_again_and_the_loop_lives():
    strip = MockStrip(4)
    strip.fail(6)   # 0.1 + 0.2 + 0.4 + 0.8 + 1.6 + 2 s of back-off
    _, r = renderer(strip)
    heard = []
    r.on_strip(heard.append)
    loop = threading.Thread(target=r.run, name="pillowd-render")
    loop.start()
    try:
        wait_for(lambda: strip.frames >= 1, timeout=30, message="the strip back")
        assert loop.is_alive() and strip.failed_writes == 6
        assert (strip.pixels == [0, 0, 0x40]).all()   # the idle scene, drawn at last
        failed, back = heard
        assert failed["ok"] is False and "Input/output error" in failed["error"]
        assert failed["since"].endswith("Z")
        assert back == {"ok": True, "error": None, "since": None} == r.strip_status()
        assert r.strip_trouble() is None
    finally:
        r.stop()
        loop.join(5)
    assert not loop.is_alive()


def test_a_failing_strip_is_tried_again_with_a_doubling_back_off_not_every_frame():
    now = [100.0]
    strip = MockStrip(4)
    strip.fail(1000)
    _, r = renderer(strip, clock=lambda: now[0])
    waits = []
    for _ in range(8):
        r.render_once(now[0])
        waits.append(round(r._retry_at - now[0], 3))
        now[0] = r._retry_at
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]
    assert strip.failed_writes == 8
    assert "8 writes failed since" in r.strip_trouble()
    strip.fail(0)
    r.render_once(now[0])
    assert r.strip_error is None and strip.frames == 1


def test_a_strip_that_cannot_even_go_dark_at_the_stop_ends_the_loop_quietly():
    strip = MockStrip(4)
    strip.fail(10**6)
    _, r = renderer(strip)
    loop = threading.Thread(target=r.run, name="pillowd-render")
    loop.start()
    wait_for(lambda: r.strip_error is not None, message="the failure seen")
    r.stop()
    loop.join(5)
    assert not loop.is_alive() and r.last_frame == bytes(12)


PARTS = """
[actuators.vibration]
pin = 23

[scenes.buzz]
effect = "solid"
color = "#0000ff"
vibration = "steady"
vibration_level = 1.0
duration = 0
"""


@pytest.fixture
def flaky_daemon(make_config, monkeypatch):
    """An in-process daemon on mock hardware whose strip the test can break."""
    import pillowd.daemon as daemon_module
    from pillowd.hardware import open_mock
    made = []

    def mock_only(backend, leds, record_to=None):
        hardware = open_mock(leds.count)
        made.append(hardware.strip)
        return hardware
    monkeypatch.setattr(daemon_module, "open_hardware", mock_only)
    d = Daemon(config.load(make_config(PARTS)), environ={})
    d.start()
    yield d, made[0]
    d.close()


def test_while_the_strip_fails_health_and_the_snapshot_say_so_and_motors_still_run(
        flaky_daemon):
    d, strip = flaky_daemon
    client = d.page.app.test_client()
    assert client.get("/healthz").status_code == 200
    strip.fail(10**6, "writing /dev/leds0: Input/output error")
    d.controls.play({"scene": "buzz"}, source="web")
    wait_for(lambda: client.get("/healthz").status_code == 503, message="503")
    (why,) = client.get("/healthz").json["reasons"]
    assert why.startswith("LEDs: writing /dev/leds0: Input/output error (")
    hardware = client.get("/api/state").json["hardware"]
    assert hardware["ok"] is False
    assert hardware["error"] == "LEDs: writing /dev/leds0: Input/output error"
    assert hardware["leds"]["ok"] is False and hardware["leds"]["since"]
    assert "LEDs: writing /dev/leds0" in d.pillow.status_line()
    # The motors have their own loop and limits: a hug still buzzes, and the
    # actuators are neither faulted nor latched off.
    wait_for(lambda: d.hardware.pin_factory.pin(23).state > 0, message="the motor on")
    assert d.actuators.trouble() is None
    # Alive, though: systemd's watchdog is fed (a restart would not fix a strip).
    assert all(check() for check in d.health.watchdog_checks().values())

    strip.fail(0)   # plugged back in
    wait_for(lambda: client.get("/healthz").status_code == 200, timeout=15,
             message="healthy again")
    assert client.get("/api/state").json["hardware"] == {
        "ok": True, "error": None, "leds": {"ok": True, "error": None, "since": None}}
    wait_for(lambda: (strip.pixels == [0, 0, 255]).all(), message="the LEDs lit again")


# -- a message too big to poison ---------------------------------------------------


def _big_invite_message() -> str:
    """What a friend's send page can post: a body of 65,400 bytes, under Azure's
    64 KiB, whose text is far over the limit (so it is rejected), and whose poison
    wrapper (reason, quotes escaped) would be over 64 KiB."""
    head = json.dumps({"scene": "hug", "from": "carol", "id": "big-one", "text": ""})
    body = head[:-2] + "x" * (65_400 - len(head)) + '"}'
    assert len(body.encode()) == 65_400
    return body


@both_backends
def test_a_65400_byte_message_is_poisoned_cut_and_the_three_hugs_after_it_play(
        pillow, queues):
    p = pillow()
    q = queues(p.config)
    big = _big_invite_message()
    q.main.put(big)
    for n in range(3):
        q.main.put(json.dumps({"scene": "hug", "id": f"hug-{n}", "from": "bob"}))

    def outcomes():
        return {i["id"]: i["outcome"] for i in p.get("/api/history").json()["items"]}
    wait_for(lambda: {"big-one", "hug-0", "hug-1", "hug-2"} <= set(outcomes()),
             timeout=60, message="an outcome for the big message and the three hugs")
    found = outcomes()
    assert found["big-one"] == "rejected"
    # The three came in one batch with it: the newest plays, the others are superseded.
    assert sorted(found[f"hug-{n}"] for n in range(3)) in (
        ["applied", "applied", "applied"], ["applied", "superseded", "superseded"],
        ["applied", "applied", "superseded"])
    wait_for(lambda: not q.main.peek(), message="the main queue empty")
    (copy,) = q.poison.peek()
    wrapper = json.loads(copy.body)
    assert len(copy.body.encode()) <= 64 * 1024
    assert big.startswith(wrapper["original"]) and len(wrapper["original"]) < len(big)
    assert wrapper["original_bytes"] == 65_400
    assert wrapper["original_sha256"] == hashlib.sha256(big.encode()).hexdigest()
    assert "text is" in wrapper["reason"]
    assert p.state()["queue"]["online"] is True
    # requeue does not put a cut body back as if it were the message.
    if p.config.read_text().count('backend = "local"'):
        result = p.cli("poison", "requeue")
        assert "cut" in result.stderr and "0 message(s) put back" in result.stderr
        assert len(q.poison.peek()) == 1


# -- the pillow's own disk is full ---------------------------------------------------


@pytest.mark.parametrize("backend", ["azure"], indirect=True)
def test_a_full_disk_does_not_poison_a_good_message_and_it_plays_once_freed(
        small_disk, pillow, queues):  # the disk first: unmounted after the pillow stops
    p = pillow()   # its state_dir is the 4 MB disk (tmp_path / "state")
    q = queues(p.config)
    q.main.put(json.dumps({"scene": "hug", "id": "before"}))
    wait_for(lambda: p.state()["queue"]["applied"] == 1, message="a hug before")
    fill(small_disk)
    q.main.put(json.dumps({"scene": "glow", "id": "during", "from": "bob"}))
    offline = wait_for(lambda: (s := p.state())["queue"]["online"] is False and s,
                       timeout=30, message="offline while the disk is full")
    assert "full" in offline["queue"]["reason"], offline["queue"]
    health = p.get("/healthz")
    assert health.status_code == 503
    assert any("taking no messages" in why for why in health.json()["reasons"])
    # The fault lasts while the pillow tries its disk again and again: without the
    # fix, each of those polls took the message once more (max_dequeue_count is 3)
    # and it ended in poison. The message itself waits, visible, on the queue.
    def failures() -> float:
        found = re.search(r"^pillowd_history_failures_total (\S+)$",
                          p.get("/metrics").text, re.M)
        return float(found.group(1)) if found else 0.0
    seen = failures()
    wait_for(lambda: failures() >= seen + 8, timeout=60,
             message="eight more tries of the full disk")
    (waiting,) = wait_for(lambda: q.main.peek(), timeout=30,
                          message="the message given back, waiting on the queue")
    assert waiting.dequeue_count <= 1, waiting  # taken once, when the write failed
    (small_disk / "filler").unlink()
    back = wait_for(lambda: (s := p.state())["queue"]["online"] and
                    s["queue"]["applied"] == 2 and s, timeout=30,
                    message="the message played after the disk was freed")
    assert back["recent"][0]["id"] == "during"
    assert back["queue"]["rejected"] == 0 and q.poison.peek() == []
    assert p.get("/healthz").status_code == 200
