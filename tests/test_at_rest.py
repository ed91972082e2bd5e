"""A pillow at rest costs nothing: loops sleep until a change, and the bugs that hid there."""

import json
import os
import re
import signal
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from conftest import BASE_CONFIG, PillowProcess, both_backends, wait_for
from pillowd.config import parse
from pillowd.consumer import Consumer
from pillowd.daemon import Daemon
from pillowd.hardware import MockStrip
from pillowd.history import History
from pillowd.hugs.outbox import Outbox
from pillowd.leds.light import LightOutput
from pillowd.leds.render import Renderer
from pillowd.leds.scenes import Timeline
from pillowd.messages import decode
from pillowd.player import Player
from pillowd.queues import QueueUnavailable
from pillowd.queues.backoff import Backoff
from pillowd.queues.local import LocalStore
from pillowd.quiet import QuietHours

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
[scenes.candle]
effect = "candle"
transition_seconds = 0
''')


def renderer(count=10):
    timeline = Timeline(SETTINGS.scenes["idle"])
    strip = MockStrip(count)
    output = LightOutput(count, brightness=1.0, max_milliamps=100_000, gamma=1.0)
    return timeline, strip, output, Renderer(timeline, strip, output, fps=50)


# -- the render loop ---------------------------------------------------------------


def test_a_brightness_change_while_a_static_frame_is_drawn_is_not_lost():
    # The change lands between computing a static frame and settling on it: the
    # loop must draw it next instead of sleeping on the old brightness.
    timeline, strip, output, r = renderer()

    class DimmedMidFrame(MockStrip):
        dimmed = False

        def show(self, pixels):
            super().show(pixels)
            if not self.dimmed:
                self.dimmed = True
                r.set_brightness(0.5)  # as quiet hours would, from another thread

    r.strip = strip = DimmedMidFrame(10)
    loop = threading.Thread(target=r.run, name="pillowd-render")
    loop.start()
    try:
        wait_for(lambda: strip.frames >= 2 and r.resting,
                 message="the dimmed frame drawn, then rest")
        assert strip.pixels[0].tolist() == [0, 0, 32]   # 0x40 at half brightness
    finally:
        r.stop()
        loop.join(2)


def test_a_periodic_scene_is_computed_once_per_cycle_then_replayed_exactly():
    timeline, strip, output, r = renderer()
    now = [100.0]
    r._clock = timeline._clock = lambda: now[0]
    playing = timeline.play(decode("glow", SETTINGS))
    period_frames = 25  # 0.5 s at 50 fps
    computed = []
    real_render = output.render

    def counting(frame, brightness=1.0):
        computed.append(1)
        return real_render(frame, brightness)
    output.render = counting
    shown = []
    for tick in range(3 * period_frames):
        r.render_once()
        shown.append(strip.pixels.copy())
        now[0] += 0.02
    assert len(computed) == period_frames   # the first cycle only
    # Replayed frames are the live ones: the same phase gives the same bytes.
    live = LightOutput(10, brightness=1.0, max_milliamps=100_000, gamma=1.0)
    for tick in (3, 30, 60):
        expected, _ = live.render(playing.effect(tick * 0.02 % 0.5, 10, playing.params))
        assert np.array_equal(shown[tick], expected)
    assert shown[5].tolist() != shown[15].tolist()   # it does breathe


def test_a_replayed_cycle_sleeps_until_the_next_change_and_a_live_effect_does_not():
    timeline, strip, output, r = renderer()
    loop = threading.Thread(target=r.run, name="pillowd-render")
    loop.start()
    try:
        timeline.play(decode("glow", SETTINGS))
        time.sleep(0.6)          # the first cycle: every frame computed
        before, t0 = r.frames, time.monotonic()
        time.sleep(1.0)
        replayed = (r.frames - before) / (time.monotonic() - t0)
        timeline.play(decode("candle", SETTINGS))   # noise: no cycle to replay
        before, t0 = r.frames, time.monotonic()
        time.sleep(1.0)
        live = (r.frames - before) / (time.monotonic() - t0)
    finally:
        r.stop()
        loop.join(2)
    # Both show every change; only the live one wakes for every frame (50 fps).
    assert live > 35
    assert replayed <= live


def test_an_unchanging_cycle_rests_like_a_static_frame():
    dark = parse('[scenes.idle]\neffect = "breathe"\ncolor = "#000000"\nperiod = 0.5\n')
    timeline = Timeline(dark.scenes["idle"])
    strip = MockStrip(4)
    r = Renderer(timeline, strip, LightOutput(4), fps=50)
    loop = threading.Thread(target=r.run, name="pillowd-render")
    loop.start()
    try:
        wait_for(lambda: r.resting, timeout=8, message="rest after one all-dark cycle")
        frames = r.frames
        time.sleep(0.3)
        assert r.frames == frames
    finally:
        r.stop()
        loop.join(2)


# -- the outbox ----------------------------------------------------------------------


class Offline:
    def put(self, body, ttl=None):
        raise QueueUnavailable("the network is down (injected)")


def test_an_event_added_during_the_outbox_back_off_does_not_spin(tmp_path):
    outbox = Outbox(tmp_path / "outbox.sqlite3", Offline(), retry_min=1.0, retry_max=2.0)
    runner = threading.Thread(target=outbox.run, name="pillowd-outbox", daemon=True)
    runner.start()
    try:
        outbox.add({"event": "hug", "id": "one"})
        wait_for(lambda: outbox.online is False, message="the first try failing")
        outbox.add({"event": "hug", "id": "two"})   # during the back-off
        cpu = time.process_time()
        time.sleep(0.8)
        # A busy loop would burn most of a core here; waiting costs next to nothing.
        assert time.process_time() - cpu < 0.2
        assert [e["id"] for e in outbox.pending()] == ["one", "two"]
    finally:
        outbox.stop()
        runner.join(2)
        outbox.close()
    assert not runner.is_alive()


# -- the actuator watchdog -------------------------------------------------------------


def test_the_watchdog_reads_a_limit_only_under_the_part_lock():
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    from pillowd.body.parts import Limit, Vibration
    from pillowd.settings import Limits

    factory = MockFactory(pin_class=MockPWMPin)
    part = Vibration(23, max_level=1.0, pin_factory=factory,
                     limit=Limit(Limits(max_on_seconds=3600, duty_cap=1.0,
                                        window_seconds=3600, cooldown_seconds=0)))
    # Many short on-spans make deadline() iterate a long deque while set() changes
    # it; a tiny switch interval makes the threads interleave inside it.
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    errors = []
    stop = threading.Event()

    def toggle():
        t = 0.0
        while not stop.is_set():
            t += 0.001
            part.set(1.0 if int(t * 1000) % 2 else 0.0, t)

    def watch():
        try:
            while not stop.is_set():
                part.deadline(time.monotonic())
        except Exception as err:  # "deque mutated during iteration"
            errors.append(err)
    threads = [threading.Thread(target=toggle), threading.Thread(target=watch)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        sys.setswitchinterval(old)
        part.close()
        factory.close()
    assert errors == []


# -- messages from a clock that runs ahead ---------------------------------------------


@pytest.fixture
def consumer(tmp_path):
    wall = [datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc)]
    store = LocalStore(tmp_path / "q.sqlite3", clock=lambda: wall[0].timestamp())
    history = History(tmp_path / "h.sqlite3")
    timeline = Timeline(SETTINGS.scenes["idle"])
    played = []
    timeline.on_change(lambda p: played.append(p.message and p.message["id"]))
    c = Consumer(store.queue("pillow"), store.queue("pillow-poison"), history,
                 Player(history, timeline, on_outcome=lambda o: None),
                 decode=lambda body: decode(body, SETTINGS), backoff=Backoff(0.1, 5),
                 backend="local", max_age=900, wall=lambda: wall[0])
    c.played, c.wall = played, wall
    yield c
    history.close()
    store.close()


def test_a_message_dated_in_the_future_still_expires(consumer):
    future = consumer.wall[0] + timedelta(days=365)
    consumer.queue.put(json.dumps({"scene": "glow", "id": "ahead",
                                   "sent_at": future.isoformat()}))
    consumer.wall[0] += timedelta(seconds=1000)   # past max_age since it was queued
    consumer.poll_once()
    assert consumer.played == []
    assert consumer.history.page(1)[0].outcome == "expired"


def test_a_message_dated_in_the_future_does_not_win_its_batch(consumer):
    future = consumer.wall[0] + timedelta(days=1)
    consumer.queue.put(json.dumps({"scene": "glow", "id": "ahead",
                                   "sent_at": future.isoformat()}))
    consumer.wall[0] += timedelta(seconds=5)
    consumer.queue.put(json.dumps({"scene": "glow", "id": "newest"}))
    consumer.poll_once()
    assert consumer.played == ["newest"]
    assert {o.id: o.outcome for o in consumer.history.page(5)} == {
        "ahead": "superseded", "newest": "applied"}


# -- quiet hours wake only at their edges ---------------------------------------------


def local(hh_mm: str, day: int = 24) -> float:
    hours, minutes = map(int, hh_mm.split(":"))
    return datetime(2026, 11, day, hours, minutes).timestamp()


def test_quiet_hours_sleep_until_their_next_edge():
    hours = QuietHours("22:30", "07:00")
    assert hours.next_edge(local("12:00")) == local("22:30")
    assert hours.next_edge(local("23:00")) == local("07:00", day=25)
    assert hours.next_edge(local("06:59")) == local("07:00")
    assert QuietHours().next_edge(local("12:00")) == float("inf")


# -- the daemon as a process ------------------------------------------------------------


def _proc_status(pid: int, tid: int | None = None) -> str:
    path = f"/proc/{pid}/task/{tid}/status" if tid else f"/proc/{pid}/status"
    return Path(path).read_text()


def _mask(status: str, field: str) -> int:
    return int(re.search(rf"^{field}:\s+([0-9a-f]+)", status, re.M).group(1), 16)


def test_sigterm_has_no_handler_and_waits_blocked_in_every_thread(pillow):
    p = pillow()
    pid = p.proc.pid
    term = 1 << (signal.SIGTERM - 1)
    # No Python handler (which could deadlock on a lock a thread holds)...
    assert not _mask(_proc_status(pid), "SigCgt") & term
    # ...and every thread but the main one (in sigwait) keeps it blocked.
    tasks = [int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid]
    assert tasks and all(_mask(_proc_status(pid, t), "SigBlk") & term for t in tasks)
    assert p.stop() == 0


def test_every_thread_has_a_name_ps_shows(pillow):
    p = pillow()

    def names():
        found = []
        for t in os.listdir(f"/proc/{p.proc.pid}/task"):
            try:
                found.append(Path(f"/proc/{p.proc.pid}/task/{t}/comm").read_text().strip())
            except FileNotFoundError:  # a thread that ended meanwhile
                pass
        return found
    # The address is printed as the server binds: its thread may start just after.
    wait_for(lambda: {"pillowd-render", "pillowd-queue", "pillowd-web"} <= set(names()),
             message="the render, queue and web threads")
    assert all(name.startswith("pillowd") for name in names()), names()


def test_a_message_taken_by_a_killed_run_plays_within_two_seconds_of_the_restart(
        pillow, tmp_path):
    state = tmp_path / "state"   # the test config's state_dir
    state.mkdir(parents=True, exist_ok=True)
    store = LocalStore(state / "queue.sqlite3")
    queue = store.queue("pillow")
    queue.create()
    queue.put(json.dumps({"scene": "glow", "id": "in-flight"}))
    # What SIGKILL leaves behind: the message taken (hidden for 30 s) and held.
    (taken,) = queue.receive(1, visibility_timeout=30)
    history = History(state / "history.sqlite3")
    history.hold("pillow", [(taken.id, taken.pop_receipt)])
    history.close()
    store.close()
    p = pillow()
    ready = time.monotonic()
    wait_for(lambda: (p.state()["message"] or {}).get("id") == "in-flight",
             timeout=10, message="the taken message playing")
    assert time.monotonic() - ready < 2   # not the 30 s of its visibility timeout


def test_a_broken_led_backend_leaves_the_pillow_running_and_says_why(make_config,
                                                                    pillow_env):
    # backend "pi" on a machine that is not a Raspberry Pi: the LEDs cannot start.
    config = make_config(base=BASE_CONFIG.replace('backend = "mock"', 'backend = "pi"'))
    p = PillowProcess(config, pillow_env).start()
    try:
        state = p.state()
        assert state["hardware"]["ok"] is False
        assert "Raspberry Pi" in state["hardware"]["error"]
        health = p.get("/healthz")
        assert health.status_code == 503
        assert any("LEDs" in why for why in health.json()["reasons"])
        p.cli("send", "glow")
        wait_for(lambda: p.state()["scene"] == "glow", message="messages still play")
    finally:
        assert p.stop() == 0


def test_an_unexpected_error_in_an_api_route_answers_json(make_config, pillow_env):
    from pillowd import config as loader

    d = Daemon(loader.load(make_config()), environ={**pillow_env,
                                                    "PILLOWD_CONTROL_TOKEN": "t0ken-t0ken-t0ken"})
    try:
        def broken(data, source="web"):
            raise RuntimeError("injected bug with a secret inside")
        d.controls.play = broken
        client = d.page.app.test_client()
        answer = client.post("/api/scene", json={"scene": "glow"},
                             headers={"Authorization": "Bearer t0ken-t0ken-t0ken"})
        assert answer.status_code == 500
        assert answer.is_json and "secret" not in answer.get_data(as_text=True)
        assert "internal error" in answer.json["error"]
    finally:
        d.close()


def test_a_cycle_knows_when_each_frame_next_changes():
    from pillowd.leds.render import Cycle

    cycle = Cycle(started=10.0, seconds=0.2, fps=50, count=1)   # 10 frames
    levels = [0, 0, 1, 1, 1, 2, 2, 0, 0, 0]
    for k, level in enumerate(levels):
        assert cycle.next_change(10.0) is None   # not all known yet
        cycle.frame(k, lambda t, level=level: (np.full((1, 3), level, np.uint8), 0.0))
    # Changes at frames 2, 5 and 7 (frame 0 repeats frame 9): from frame 7 the next
    # change is frame 2 of the next cycle.
    assert cycle.next_change(10.0) == pytest.approx(10.0 + 2 / 50)
    assert cycle.next_change(10.0 + 7 / 50) == pytest.approx(10.0 + 12 / 50)
    assert cycle.next_change(10.0 + 23 / 50) == pytest.approx(10.0 + 25 / 50)


@both_backends
def test_requeueing_one_poison_message_leaves_the_others_in_view(make_config, pillow_env,
                                                                 queues):
    from conftest import run_cli

    config = make_config()
    poison = queues(config).poison
    ids = [poison.put(json.dumps({"reason": "bad", "original": f"body-{n}"}), ttl=-1)
           for n in range(3)]
    run_cli("poison", "requeue", ids[1], "--config", str(config), env=pillow_env)
    # Right after, not 30 s later: the two passed over are visible again.
    listed = run_cli("poison", "list", "--config", str(config), env=pillow_env).stdout
    assert ids[0] in listed and ids[2] in listed and ids[1] not in listed


def test_a_failing_scene_listener_neither_stops_the_play_nor_the_others():
    timeline = Timeline(SETTINGS.scenes["idle"])
    heard = []

    def broken(playing):
        raise RuntimeError("injected listener bug")
    timeline.on_change(broken)
    timeline.on_change(lambda playing: heard.append(playing.scene.name))
    playing = timeline.play(decode("glow", SETTINGS))   # no exception reaches the caller
    assert heard == ["glow"] and timeline.current() is playing
