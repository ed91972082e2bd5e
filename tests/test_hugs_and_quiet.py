"""The hug button, its outbound events, quiet hours, and outputs off when the daemon stops."""

import json
import math
import threading
import time
from datetime import datetime, timedelta

import pytest

from conftest import BASE_CONFIG, wait_for
from pillowd import config
from pillowd.daemon import Daemon
from pillowd.hugs.outbox import Outbox
from pillowd.queues import QueueUnavailable
from pillowd.queues.local import LocalStore
from pillowd.quiet import QuietHours

PARTS = """
[actuators.vibration]
pin = 23
max_level = 1.0
max_on_seconds = 60

[actuators.warmer]
pin = 25

[actuators.servo]
pin = 24

[button]
pin = 17

[scenes.hugged]
effect = "solid"
color = "#ffb347"
duration = 5
vibration = "pulse"

[scenes.buzz]
effect = "solid"
color = "#0000ff"
vibration = "steady"
vibration_level = 1.0
warmer = true
servo_angle = 20
"""


# -- queue helpers: the azure branch adds "azure" (Azurite) to these params ---------


@pytest.fixture(params=["local"])
def queue_backend(request):
    """The backend the outbound queue runs on; every test below runs on each."""
    return request.param


def base_with_outbound(backend: str) -> str:
    assert backend == "local", f"add the {backend} set-up to base_with_outbound"
    return BASE_CONFIG.replace(
        'name = "pillow"\n',
        'name = "pillow"\noutbound_name = ["pillow-hugs", "pillow-kin"]\n', 1)


def outbound_events(daemon, partner: int = 0) -> list[dict]:
    return [json.loads(m.body) for m in daemon.queues.outbound[partner].peek(32)]


@pytest.fixture
def daemon(make_config, queue_backend):
    """An in-process daemon (its mock pins reachable), on the test config plus *extra*."""
    made = []

    def make(extra: str = PARTS) -> Daemon:
        settings = config.load(make_config(extra, base=base_with_outbound(queue_backend)))
        d = Daemon(settings, environ={})
        made.append(d)
        d.start()
        return d
    yield make
    for d in made:
        d.close()


# -- the hug button -------------------------------------------------------------------


def test_a_press_plays_hugged_and_sends_exactly_one_event_to_each_partner(daemon):
    from pillowd.messages import encode
    d = daemon()
    d.queues.main.put(encode({"scene": "glow", "from": "Alice", "id": "msg-1"}))
    wait_for(lambda: (d.timeline.current().message or {}).get("id") == "msg-1",
             message="Alice's message, through the queue")
    button = d.hardware.pin_factory.pin(17)
    assert button.state == 1          # pulled up, not pressed
    before = datetime.now().astimezone()
    button.drive_low()
    button.drive_high()               # the hug goes on the release, held that long
    wait_for(lambda: d.timeline.current().scene.name == "hugged",
             message="the hugged scene")
    events = wait_for(lambda: outbound_events(d), message="the hug event")
    wait_for(lambda: not d.outbox.pending(), message="the outbox emptied")
    assert d.hugs.presses == 1
    assert outbound_events(d) == outbound_events(d, 1) == events  # the family's too
    (event,) = events
    assert set(event) == {"scene", "from", "id", "sent_at", "ttl", "event", "pillow",
                          "reply_to", "hold"}
    assert 0.1 <= event["hold"] <= 30
    assert event["scene"] == "hug" and event["ttl"] == 600   # [button] send_scene
    assert event["event"] == "hug"
    assert event["pillow"] == event["from"] == "test-pillow"
    assert event["reply_to"] == {"id": "msg-1", "from": "Alice"}
    at = datetime.fromisoformat(event["sent_at"].replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= at <= datetime.now().astimezone()
    # A partner's pillow plays it: the event is an ordinary message (with no family
    # key here, it is not signed, so it is no partner's: tests/test_conversation.py).
    from pillowd.messages import decode
    played = decode(json.dumps(event), d.settings)
    assert (played.scene.name, played.sender, played.partner) == ("hug", "test-pillow",
                                                                   False)
    # The press is in the history like any other play.
    assert d.pillow.snapshot()["recent"][0]["scene"] == "hugged"
    # And the hugged scene's pulse reaches the motor.
    wait_for(lambda: d.hardware.pin_factory.pin(23).state == 0.5, message="the pulse")


class Flaky:
    """An outbound queue that is offline until told otherwise."""

    def __init__(self, queue):
        self.queue = queue
        self.online = False

    def put(self, body, ttl=None):
        if not self.online:
            raise QueueUnavailable("the network is down (injected)")
        return self.queue.put(body, ttl)


def test_events_wait_on_disk_while_the_queue_is_offline_and_go_on_reconnect(tmp_path):
    store = LocalStore(tmp_path / "queue.sqlite3")
    queue = store.queue("pillow-hugs")
    queue.create()
    flaky = Flaky(queue)
    outbox = Outbox(tmp_path / "outbox.sqlite3", flaky, retry_min=0.05, retry_max=0.1)
    outbox.add({"event": "hug", "id": "one"})
    assert not outbox.flush() and outbox.online is False
    outbox.close()   # the pillow restarts while offline

    outbox = Outbox(tmp_path / "outbox.sqlite3", flaky, retry_min=0.05, retry_max=0.1)
    assert [e["id"] for e in outbox.pending()] == ["one"]
    runner = threading.Thread(target=outbox.run, daemon=True)
    runner.start()
    try:
        outbox.add({"event": "hug", "id": "two"})
        assert queue.peek() == []
        flaky.online = True
        wait_for(lambda: len(queue.peek()) == 2, message="both events sent")
        wait_for(lambda: not outbox.pending(), message="the outbox emptied")
    finally:
        outbox.stop()
        runner.join(2)
        outbox.close()
    assert [json.loads(m.body)["id"] for m in queue.peek()] == ["one", "two"]
    store.close()


def test_one_partner_away_never_holds_back_another_and_nothing_is_lost(tmp_path):
    store = LocalStore(tmp_path / "queue.sqlite3")
    bob, carol = store.queue("pillow-bob"), store.queue("pillow-carol")
    for queue in (bob, carol):
        queue.create()
    away = Flaky(carol)   # carol's queue is down; bob's answers
    away.name = "pillow-carol"
    outbox = Outbox(tmp_path / "outbox.sqlite3", [bob, away], retry_min=0.05,
                    retry_max=0.1)
    sent = []
    outbox.on_sent(lambda event, queue: sent.append((event["id"], queue)))
    runner = threading.Thread(target=outbox.run, daemon=True)
    runner.start()
    try:
        outbox.add({"event": "hug", "id": "one"})
        wait_for(lambda: len(bob.peek()) == 1, message="bob's copy, carol away")
        outbox.add({"event": "hug", "id": "two"})
        wait_for(lambda: len(bob.peek()) == 2, message="bob's second, carol still away")
        assert outbox.online is False and "pillow-carol" in outbox.away
        assert [e["id"] for e in outbox.pending()] == ["one", "two"]
        assert outbox.pending("pillow-bob") == []
    finally:
        outbox.stop()
        runner.join(2)
        outbox.close()
    assert sent == [("one", "pillow-bob"), ("two", "pillow-bob")]

    # The pillow restarts; carol's queue comes back: hers go, bob gets none twice.
    outbox = Outbox(tmp_path / "outbox.sqlite3", [bob, away], retry_min=0.05)
    away.online = True
    assert outbox.flush() is True
    assert [json.loads(m.body)["id"] for m in carol.peek()] == ["one", "two"]
    assert [json.loads(m.body)["id"] for m in bob.peek()] == ["one", "two"]
    assert outbox.pending() == [] and outbox.online is True
    outbox.close()
    store.close()


def test_an_outbox_from_before_families_sends_its_events_to_every_partner(tmp_path):
    import sqlite3
    old = sqlite3.connect(tmp_path / "outbox.sqlite3")
    old.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                " body TEXT NOT NULL)")
    old.execute("INSERT INTO events (body) VALUES (?)", ('{"event":"hug","id":"old"}',))
    old.commit()
    old.close()
    store = LocalStore(tmp_path / "queue.sqlite3")
    queues = [store.queue("pillow-bob"), store.queue("pillow-carol")]
    outbox = Outbox(tmp_path / "outbox.sqlite3", queues)
    assert outbox.flush() is True
    assert [[json.loads(m.body)["id"] for m in q.peek()] for q in queues] == \
        [["old"], ["old"]]
    outbox.close()
    store.close()


def test_a_history_from_before_hug_backs_is_migrated_and_kept(tmp_path):
    import sqlite3
    from pillowd.history import History, Outcome
    old = sqlite3.connect(tmp_path / "history.sqlite3")
    old.executescript("""
        CREATE TABLE outcomes (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL,
            outcome TEXT NOT NULL, scene TEXT, sender TEXT, reason TEXT, at TEXT NOT NULL,
            queue TEXT NOT NULL, queue_message_id TEXT NOT NULL,
            poisoned INTEGER NOT NULL DEFAULT 0);
        INSERT INTO outcomes (id, outcome, scene, sender, reason, at, queue,
            queue_message_id) VALUES ('m-1', 'applied', 'hug', 'Alice', NULL,
            '2026-11-24T10:00:00.000Z', 'pillow', 'q-1');""")
    old.commit()
    old.close()
    history = History(tmp_path / "history.sqlite3")
    (kept,) = history.page()
    assert (kept.id, kept.reply, kept.event) == ("m-1", False, None)
    assert kept.as_json()["reply"] is False
    assert history.last_hug() is None
    history.record(Outcome(id="h-1", outcome="applied", scene="hug", sender="bob",
                           reason=None, at="2026-11-24T10:01:00.000Z", event="hug",
                           reply=True))
    assert history.last_hug().reply is True and history.page()[0].as_json()["reply"]
    history.close()


def test_api_hug_works_with_no_button_and_no_partner(pillow):
    p = pillow(env={"PILLOWD_CONTROL_TOKEN": "t-t-t-t-t-t-t-t-t"})
    answer = p.post("/api/hug", headers={"Authorization": "Bearer t-t-t-t-t-t-t-t-t"})
    assert answer.status_code == 202 and len(answer.json()["id"]) == 36
    # No [scenes.hugged] in this config: nothing plays, and nothing fails.
    assert p.state()["scene"] == "idle"
    assert p.get("/healthz").status_code == 200
    assert "Traceback" not in "".join(p.output)


# -- off when the daemon stops or a loop fails ----------------------------------------


def test_sigterm_leaves_every_pin_off(pillow):
    p = pillow(PARTS)
    p.cli("send", "buzz")
    wait_for(lambda: (lambda a: a.get("vibration") == 1.0 and a.get("warmer")
                      and a.get("servo") == 20)(p.state()["actuators"]),
             message="the motor, warmer and servo on")
    assert p.stop() == 0
    pins = json.loads((p.config.parent / "state" / "mock-hardware.json").read_text())["pins"]
    for name in ("GPIO23", "GPIO24", "GPIO25"):
        states = [state for _, state in pins[name]["states"]]
        assert any(states), f"{name} was never on: the check below would prove nothing"
        assert pins[name]["state"] == 0, f"{name} left at {pins[name]['state']}"
    assert "Traceback" not in "".join(p.output)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_crashed_render_loop_turns_every_actuator_off(daemon):
    d = daemon()
    f = d.hardware.pin_factory
    d.controls.play({"scene": "buzz"}, source="web")
    wait_for(lambda: f.pin(23).state == 1.0 and f.pin(25).state == 1, message="on")

    def broken(now=None):
        raise RuntimeError("injected render fault")
    d.renderer.render_once = broken
    wait_for(lambda: f.pin(23).state == 0 and f.pin(25).state == 0
             and f.pin(24).state == 0, message="everything off")
    assert "render loop stopped" in d.actuators.fault
    wait_for(lambda: "the render loop has stopped" in d.health.reasons(),
             message="the render loop reported unwell")
    assert "actuators off: the render loop stopped" in d.health.reasons()
    assert f.pin(23).state == 0


# -- quiet hours -------------------------------------------------------------------------


def local(hh_mm: str, day: int = 24) -> float:
    """Epoch seconds of *hh_mm* local time on 2026-11-*day*."""
    hours, minutes = map(int, hh_mm.split(":"))
    return datetime(2026, 11, day, hours, minutes).timestamp()


@pytest.mark.parametrize("when, quiet", [
    ("22:29", False), ("22:30", True), ("23:59", True), ("00:00", True),
    ("03:00", True), ("06:59", True), ("07:00", False), ("12:00", False)])
def test_quiet_hours_across_midnight_at_a_frozen_clock(when, quiet):
    hours = QuietHours("22:30", "07:00", clock=lambda: local(when))
    assert hours.active() is quiet


@pytest.mark.parametrize("when, quiet", [
    ("12:59", False), ("13:00", True), ("14:59", True), ("15:00", False)])
def test_quiet_hours_within_one_day(when, quiet):
    assert QuietHours("13:00", "15:00", clock=lambda: local(when)).active() is quiet


def test_quiet_hours_follow_the_local_time_zone(monkeypatch):
    instant = datetime.fromisoformat("2026-11-24T14:00:00+00:00").timestamp()
    hours = QuietHours("22:30", "07:00", clock=lambda: instant)
    for zone, quiet in [("UTC", False), ("Asia/Tokyo", True),      # 23:00 in Tokyo
                        ("America/New_York", False)]:              # 09:00 in New York
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        assert hours.active() is quiet, zone
    monkeypatch.delenv("TZ")
    time.tzset()


def test_quiet_hours_dim_the_leds_and_still_the_actuators(daemon):
    d = daemon(PARTS + '\n[quiet]\nstart = "22:30"\nend = "07:00"\n'
               'max_brightness = 0.1\n')
    f = d.hardware.pin_factory
    d.quiet_hours.clock = lambda: local("12:00")
    d.quiet_hours.check()
    d.controls.play({"scene": "buzz"}, source="web")
    wait_for(lambda: f.pin(23).state == 1.0, message="the motor on by day")
    assert d.pillow.snapshot()["quiet"] is False

    d.quiet_hours.clock = lambda: local("23:15")
    d.quiet_hours.check()
    wait_for(lambda: f.pin(23).state == 0 and f.pin(25).state == 0
             and f.pin(24).state == 0, message="still at night")
    still = {"vibration": 0.0, "servo": None, "warmer": False}
    snapshot = wait_for(lambda: (lambda s: s if s["actuators"] == still else None)(
        d.pillow.snapshot()), message="the snapshot's actuators still")
    assert snapshot["quiet"] is True
    # Blue at brightness 1.0, capped at 0.1: at most 26 of 255 (less after gamma).
    wait_for(lambda: 0 < d.renderer.last_frame[2] <= 26 and
             d.renderer.last_frame[:2] == b"\0\0", message="a dimmed frame")
    marks = len(f.pin(23).states)
    d.controls.play({"scene": "buzz"}, source="web")   # asking again changes nothing
    ticked = time.monotonic()
    # The new scene wakes the loop for a tick; muted, it then sleeps until a change.
    wait_for(lambda: d.actuators.heartbeat > ticked and d.actuators.resting,
             message="a tick for the new scene, then rest")
    assert len(f.pin(23).states) == marks

    d.quiet_hours.clock = lambda: local("07:00", day=25)
    d.quiet_hours.check()
    wait_for(lambda: f.pin(23).state == 1.0, message="the motor back in the morning")
    assert d.pillow.snapshot()["quiet"] is False
    wait_for(lambda: d.renderer.last_frame[:3] == bytes([0, 0, 255]),
             message="full blue again")


def test_quiet_by_hand_lasts_until_quiet_hours_next_begin_or_end(daemon):
    d = daemon(PARTS + '\n[quiet]\nstart = "22:30"\nend = "07:00"\n')
    f = d.hardware.pin_factory
    d.quiet_hours.clock = lambda: local("15:00")
    d.quiet_hours.check()
    d.controls.play({"scene": "buzz"}, source="web")
    wait_for(lambda: f.pin(23).state == 1.0, message="the motor on")
    d.controls.set_quiet(True)          # the page's "quiet now"
    wait_for(lambda: f.pin(23).state == 0, message="still, by hand")
    assert d.pillow.snapshot()["quiet"] is True
    d.quiet_hours.clock = lambda: local("22:00")
    assert d.quiet_hours.check() is True       # still the hand's choice
    d.quiet_hours.clock = lambda: local("23:00")
    assert d.quiet_hours.check() is True       # now quiet hours as well
    d.controls.set_quiet(False)         # a hand can also lift quiet hours...
    wait_for(lambda: f.pin(23).state == 1.0, message="the motor back")
    d.quiet_hours.clock = lambda: local("07:00", day=25)
    assert d.quiet_hours.check() is False      # ...their end forgets the hand...
    wait_for(lambda: f.pin(23).state == 1.0, message="the motor back")
    d.quiet_hours.clock = lambda: local("22:30", day=25)
    assert d.quiet_hours.check() is True       # ...and the next night is quiet
    wait_for(lambda: f.pin(23).state == 0, message="still at 22:30")


def test_quiet_by_hand_works_without_quiet_hours(daemon):
    d = daemon(PARTS)
    f = d.hardware.pin_factory
    d.controls.play({"scene": "buzz"}, source="web")
    wait_for(lambda: f.pin(23).state == 1.0, message="the motor on")
    d.controls.set_quiet(True)
    wait_for(lambda: f.pin(23).state == 0 and d.pillow.snapshot()["quiet"],
             message="still")
    d.controls.set_quiet(False)
    wait_for(lambda: f.pin(23).state == 1.0, message="the motor back")


def test_a_running_pillow_in_quiet_hours_says_so_and_stays_dim(pillow, watch):
    now = datetime.now()
    start = (now - timedelta(minutes=1)).strftime("%H:%M")
    end = (now + timedelta(minutes=3)).strftime("%H:%M")
    p = pillow(PARTS + f'\n[quiet]\nstart = "{start}"\nend = "{end}"\n'
               'max_brightness = 0.1\n')
    watcher = watch(p.url)
    p.cli("send", "hug")
    state = watcher.wait_state(lambda s: s["scene"] == "hug", message="the hug")
    assert state["quiet"] is True
    # The hug's red, capped at 0.1: never brighter than 26 of 255.
    wait_for(lambda: any(f[0] > 0 for f in watcher.frames), message="a dimmed red frame")
    assert max(max(f) for f in watcher.frames) <= 26
    p.cli("send", "buzz")
    buzz = watcher.wait_state(lambda s: s["scene"] == "buzz", message="the buzz")
    assert buzz["actuators"] == {"vibration": 0.0, "servo": None, "warmer": False}
    assert p.stop() == 0
    # The buzz asked for the motor, the warmer and the servo; none ever moved.
    pins = json.loads((p.config.parent / "state" / "mock-hardware.json").read_text())["pins"]
    for name in ("GPIO23", "GPIO24", "GPIO25"):
        assert not any(state for _, state in pins[name]["states"]), name


def test_the_page_shows_the_actuators_and_quiet_hours(pillow):
    from playwright.sync_api import expect, sync_playwright
    now = datetime.now()
    start = (now - timedelta(minutes=1)).strftime("%H:%M")
    end = (now + timedelta(minutes=3)).strftime("%H:%M")
    p = pillow(PARTS + f'\n[quiet]\nstart = "{start}"\nend = "{end}"\nactuators = true\n')
    with sync_playwright() as play:
        browser = play.chromium.launch(executable_path="/usr/bin/chromium",
                                       args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(p.url)
            parts = page.locator("#actuators")
            expect(page.locator("#quiet-state")).to_have_text("quiet now")
            expect(parts).to_contain_text("vibration")
            expect(parts).to_contain_text("limp")
            p.cli("send", "buzz")   # quiet hours here still let the actuators move
            expect(parts).to_contain_text("100 %")
            expect(parts).to_contain_text("20°")
            expect(parts).to_contain_text("warming")
        finally:
            browser.close()


FLOOD_LIMITS = PARTS.replace("max_on_seconds = 60\n", "max_on_seconds = 0.3\nduty_cap = 0.4\n"
                             "window_seconds = 1\ncooldown_seconds = 0.2\n", 1)


def test_a_flood_through_the_queue_in_real_time_stays_within_the_limits(daemon):
    from pillowd.messages import encode
    from test_actuators import on_spans, worst_window
    d = daemon(FLOOD_LIMITS)
    pin = d.hardware.pin_factory.pin(23)
    created = time.monotonic() - sum(t for t, _ in pin.states)
    for i in range(1000):
        d.queues.main.put(encode({"scene": "buzz", "from": f"s{i}", "vibration": 1.0}))
    wait_for(lambda: sum(d.pillow.snapshot()["queue"][k] for k in
                         ("applied", "superseded")) == 1000, timeout=60,
             message="all 1000 messages handled")
    settled = time.monotonic()
    wait_for(lambda: time.monotonic() > settled + 1.5, message="1.5 s more of buzz")
    d.close()   # ends the last stretch on the pin, so every span is a closed one
    spans = on_spans(pin, created, math.inf)
    assert len(spans) >= 3, "the limits never cut in: this test would prove nothing"
    # Real time on a shared machine: gpiozero's own 50 ms tolerance for pin times.
    assert max(e - s for s, e in spans) <= 0.3 + 0.05
    assert worst_window(spans, 1.0) <= 0.4 + 0.05


def test_a_partner_taken_out_of_the_config_leaves_nothing_pending(tmp_path):
    # carol's queue is no longer configured: what waited for her can never go, and
    # must not keep the outbox "pending" (the page, /metrics) for good.
    store = LocalStore(tmp_path / "queue.sqlite3")
    bob, carol = store.queue("pillow-bob"), store.queue("pillow-carol")
    for queue in (bob, carol):
        queue.create()
    outbox = Outbox(tmp_path / "outbox.sqlite3", [bob, carol])
    outbox.add({"event": "receipt", "of": "x", "pillow": "alice"}, to=["pillow-carol"])
    outbox.add({"event": "hug", "id": "one"})
    outbox.close()
    outbox = Outbox(tmp_path / "outbox.sqlite3", [bob])
    assert outbox.status()["pending"] == 1
    assert outbox.flush() is True
    assert outbox.status()["pending"] == 0 and outbox.pending() == []
    outbox.close()
    store.close()
