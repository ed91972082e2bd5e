"""One conversation: who a pillow answers and until when, the receipts that tell the
sender what became of its hug, and the messages that came in quiet hours.

Driven through the real paths: the queue (Consumer → Player), the page's
/api/scene and /api/hug, Home Assistant's commands (Controls.play, source "mqtt"),
the button (gpiozero's mock pin), each on an in-process daemon whose partner, bob,
is played by the test with the family's key."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from conftest import BASE_CONFIG, wait_for
from pillowd import config
from pillowd.daemon import Daemon
from pillowd.family import FamilyKey
from pillowd.history import iso
from pillowd.hugs.conversation import Conversation, UnknownPartner
from pillowd.hugs.outbox import HugNotKept, Outbox
from pillowd.hugs.receipts import receipt_id
from pillowd.messages import encode
from pillowd.queues.local import LocalStore

TOKEN = "conversation-test-token"
KEY = FamilyKey.generate()
HUGGED = """
[button]
pin = 17
{window}
[scenes.hugged]
effect = "solid"
color = "#ffb347"
duration = 1
"""


@pytest.fixture
def pillow(make_config, tmp_path):
    """alice, in process: her partner bob's queue is in her local queue file, and
    the family key is in her tokens (the systemd credential azure-queue-sas)."""
    made = []

    def make(window: float | None = None, extra: str = "", roster: bool = False,
             drop_in: str = "") -> Daemon:
        """*roster*: bob in the family roster, as `pair` writes it (else the older
        outbound_name); *drop_in*: a config.d/ file the owner added."""
        base = BASE_CONFIG.replace('name = "test-pillow"', 'name = "alice"').replace(
            'name = "pillow"\n', 'name = "pillow-alice"\noutbound_name = "pillow-bob"\n', 1)
        if roster:
            base = base.replace('outbound_name = "pillow-bob"\n', "").replace(
                'name = "alice"', 'name = "alice"\nroster_name = "alice"') + (
                '\n[partners.bob]\nqueue = "pillow-bob"\n') + (
                f'color = "{roster}"\n' if isinstance(roster, str) else "")
        text = HUGGED.format(window=f"reply_window_seconds = {window}\n" if window else "")
        credentials = tmp_path / "credentials"
        credentials.mkdir(exist_ok=True)
        (credentials / "azure-queue-sas").write_text(f'family_key = "{KEY.text()}"\n')
        path = make_config(text + extra, base=base)
        if drop_in:
            (path.parent / "config.d").mkdir(exist_ok=True)
            (path.parent / "config.d" / "60-owner.toml").write_text(drop_in)
        settings = config.load(path)
        d = Daemon(settings, environ={"CREDENTIALS_DIRECTORY": str(credentials),
                                      "PILLOWD_CONTROL_TOKEN": TOKEN})
        made.append(d)
        d.start()
        return d
    yield make
    for d in made:
        d.close()


def now(offset: float = 0.0) -> str:
    return iso(datetime.now(timezone.utc) + timedelta(seconds=offset))


def from_bob(d: Daemon, fields: dict, signed: bool = True) -> None:
    """bob's pillow puts *fields* on alice's queue, signed with the family's key."""
    d.queues.main.put(encode(KEY.signed(fields) if signed else fields))


def bobs_hug(ident: str, reply_to: dict | None = None, sent_at: str | None = None) -> dict:
    return {"scene": "hug", "from": "bob", "id": ident, "sent_at": sent_at or now(),
            "ttl": 600, "event": "hug", "pillow": "bob", "reply_to": reply_to}


def playing(d: Daemon, ident: str) -> bool:
    return (d.timeline.current().message or {}).get("id") == ident


def at_bob(d: Daemon) -> list[dict]:
    """What alice sent to bob's queue, oldest first (the outbox emptied first)."""
    wait_for(lambda: not d.outbox.pending(), message="the outbox emptied")
    return [json.loads(m.body) for m in d.queues.outbound[0].peek(32)]


def api(d: Daemon, path: str, body: dict | None = None):
    return requests.post(d.url + path.lstrip("/"), json=body or {}, timeout=5,
                         headers={"Authorization": f"Bearer {TOKEN}"})


def history(d: Daemon, ident: str) -> list:
    return [o for o in d.history.page(1000) if o.id == ident]


def bobs_queue(tmp_path):
    """A local queue store with bob's queue in it."""
    store = LocalStore(tmp_path / "queue.sqlite3")
    bob = store.queue("pillow-bob")
    bob.create()
    return store, bob


def clocks():
    """A wall clock the test moves ([seconds]) and the boot clock with it: time
    passing, as opposed to the wall clock stepped alone."""
    wall = [time.time()]
    return wall, (lambda: wall[0]), (lambda: ("this-boot", wall[0]))


def alices(tmp_path, outbox: Outbox, **parts) -> Conversation:
    """alice's conversation, with bob as her partner and the family's key."""
    return Conversation("alice", window=600, send_scene="hug",
                        path=tmp_path / "conversation.json", outbox=outbox,
                        partners={"bob": "pillow-bob"}, family=KEY, **parts)


# -- bug: a hug back was lost after any local play ------------------------------------


def test_a_press_answers_the_last_message_from_the_queue_whatever_played_since(pillow):
    d = pillow()
    # Grandma's message comes through the queue (no partner's: anyone may answer).
    d.queues.main.put(encode({"scene": "glow", "from": "Grandma", "id": "grandma-1"}))
    wait_for(lambda: playing(d, "grandma-1"), message="Grandma's message")
    # The page, then Home Assistant, play scenes; the demo-like plays have ids too.
    assert api(d, "/api/scene", {"scene": "hug", "from": "status page"}).ok
    wait_for(lambda: d.timeline.current().message["from"] == "status page",
             message="the page's play")
    # Home Assistant's command path (its light's effect): an id of its own.
    assert playing(d, d.controls.play({"scene": "glow"}, source="mqtt").id)

    button = d.hardware.pin_factory.pin(17)
    button.drive_low()
    button.drive_high()
    (pressed,) = wait_for(lambda: at_bob(d), message="the button's hug")
    assert pressed["reply_to"] == {"id": "grandma-1", "from": "Grandma"}

    assert api(d, "/api/hug").status_code == 202   # a press from the page answers it too
    wait_for(lambda: len(at_bob(d)) == 2, message="the page's hug")
    assert at_bob(d)[1]["reply_to"] == {"id": "grandma-1", "from": "Grandma"}


def test_a_press_of_a_pillow_that_heard_nothing_through_the_queue_answers_nobody(pillow):
    d = pillow()
    d.controls.play({"scene": "glow", "from": "Alice", "id": "web-1"}, source="web")
    assert api(d, "/api/hug").status_code == 202
    (event,) = wait_for(lambda: at_bob(d), message="the hug")
    assert event["reply_to"] is None


# -- bug: the two sides counted the reply window from different moments --------------


def test_a_hug_back_counts_from_when_our_hug_played_on_the_partner_not_the_press(pillow):
    """alice's hug waited (her outbox, bob's queue) 2 s before it played on bob; bob
    answered 1.5 s after it played: within the 3 s window on bob's side, so it is a
    hug back here too, although the press was 3.5 s ago."""
    d = pillow(window=3)
    pressed = time.monotonic()
    assert api(d, "/api/hug").status_code == 202
    (hug,) = wait_for(lambda: at_bob(d), message="alice's hug in bob's queue")
    sent = datetime.fromisoformat(hug["sent_at"].replace("Z", "+00:00"))
    played = sent + timedelta(seconds=2)
    # The test is about elapsed time: the press is past the window by the clock here.
    time.sleep(max(0.0, pressed + 3.5 - time.monotonic()))
    from_bob(d, {"event": "receipt", "of": hug["id"], "pillow": "bob",
                 "played_at": iso(played), "quiet": False})
    from_bob(d, bobs_hug("bob-back", {"id": hug["id"], "from": "alice"},
                         sent_at=iso(played + timedelta(seconds=1.5))))
    wait_for(lambda: playing(d, "bob-back"), message="bob's hug back playing")
    assert d.timeline.current().message["reply"] is True
    assert history(d, "bob-back")[0].reply is True
    assert d.pillow.snapshot()["last_hug"]["reply"] is True
    # The conversation hears of it just after it starts to play.
    wait_for(lambda: d.pillow.snapshot()["last_sent"]["partners"]["bob"]["hugged_back"]
             == history(d, "bob-back")[0].at, message="hugged back on the snapshot")

    # An answer pressed after bob's window (by bob's clock) is a plain hug.
    from_bob(d, bobs_hug("bob-late", {"id": hug["id"], "from": "alice"},
                         sent_at=iso(played + timedelta(seconds=4.5))))
    wait_for(lambda: playing(d, "bob-late"), message="bob's late hug playing")
    assert history(d, "bob-late")[0].reply is False


def test_the_receiver_counts_its_window_from_when_the_hug_played_here(pillow):
    d = pillow(window=2)
    # The conversation's own clock, moved by the test: a slow machine taking more
    # than the 2 s window between the play and the first press cannot fail it.
    wall = [time.time()]
    d.conversation.clock = lambda: wall[0]
    # Sent long ago by bob's clock (it waited in his outbox): the window is ours, now.
    from_bob(d, bobs_hug("bob-1", sent_at=now(-500)))
    wait_for(lambda: playing(d, "bob-1"), message="bob's hug")
    wall[0] += 1.5                                         # within the window
    assert api(d, "/api/hug").status_code == 202
    assert at_bob(d)[-1]["reply_to"] == {"id": "bob-1", "from": "bob"}
    wall[0] += 1.0                                         # past it
    assert api(d, "/api/hug").status_code == 202
    wait_for(lambda: len([e for e in at_bob(d) if e.get("event") == "hug"]) == 2,
             message="the second hug")
    assert [e for e in at_bob(d) if e.get("event") == "hug"][-1]["reply_to"] is None


def test_an_unsigned_claim_is_an_ordinary_message_and_never_a_hug_back(pillow):
    d = pillow()
    assert api(d, "/api/hug").status_code == 202
    (hug,) = wait_for(lambda: at_bob(d), message="alice's hug")
    from_bob(d, bobs_hug("forged", {"id": hug["id"], "from": "alice"}), signed=False)
    wait_for(lambda: playing(d, "forged"), message="the forged hug playing")
    assert history(d, "forged")[0].reply is False
    assert d.pillow.snapshot()["last_hug"] is None
    assert len(at_bob(d)) == 1    # and no receipt goes back for it


# -- receipts ---------------------------------------------------------------------


def test_a_partners_hug_is_answered_with_one_signed_receipt_on_its_queue(pillow):
    d = pillow()
    from_bob(d, bobs_hug("bob-1"))
    wait_for(lambda: playing(d, "bob-1"), message="bob's hug")
    (receipt,) = wait_for(lambda: at_bob(d), message="the receipt")
    assert KEY.verify(receipt)
    played = history(d, "bob-1")[0].at
    assert {k: v for k, v in receipt.items() if k not in ("sig", "sent_at")} == {
        "event": "receipt", "of": "bob-1", "pillow": "alice", "played_at": played,
        "quiet": False, "superseded": False, "id": receipt_id("bob-1", "alice"),
        "ttl": 600}
    assert datetime.fromisoformat(receipt["sent_at"].replace("Z", "+00:00")) >= \
        datetime.fromisoformat(played.replace("Z", "+00:00"))
    # A plain message from someone gets none.
    d.queues.main.put(encode({"scene": "glow", "from": "Grandma", "id": "g-1"}))
    wait_for(lambda: playing(d, "g-1"), message="Grandma's message")
    assert len(at_bob(d)) == 1


def test_a_receipt_tells_the_sender_delivered_and_ends_in_its_history(pillow, caplog):
    caplog.set_level("INFO", logger="pillowd")
    d = pillow()
    assert d.pillow.snapshot()["last_sent"] is None
    assert api(d, "/api/hug").status_code == 202
    (hug,) = wait_for(lambda: at_bob(d), message="alice's hug")
    assert KEY.verify(hug)
    sent = d.pillow.snapshot()["last_sent"]
    assert sent == {"id": hug["id"], "at": hug["sent_at"], "partners": {"bob": {
        "delivered": None, "quiet": None, "hugged_back": None, "expired": False}}}

    played = now()
    from_bob(d, {"event": "receipt", "of": hug["id"], "pillow": "bob",
                 "played_at": played, "quiet": True})
    partner = wait_for(lambda: d.pillow.snapshot()["last_sent"]["partners"]["bob"]
                       if d.pillow.snapshot()["last_sent"]["partners"]["bob"]["delivered"]
                       else None, message="delivered")
    assert partner == {"delivered": played, "quiet": True, "hugged_back": None,
                       "expired": False}
    (kept,) = [o for o in d.history.page(10) if o.event == "receipt"]
    assert (kept.outcome, kept.scene, kept.sender) == ("applied", None, "bob")
    assert not playing(d, kept.id)   # a receipt plays nothing
    # Each step of a hug reaches the journal and Home Assistant's hook (Daemon._hug_heard).
    assert [r.getMessage() for r in caplog.records
            if getattr(r, "PILLOW_HUG", None) == "delivered"] == ["hug delivered (bob)"]


def test_a_receipt_without_the_familys_signature_is_rejected(pillow):
    d = pillow()
    assert api(d, "/api/hug").status_code == 202
    (hug,) = wait_for(lambda: at_bob(d), message="alice's hug")
    from_bob(d, {"event": "receipt", "of": hug["id"], "pillow": "bob",
                 "played_at": now(), "quiet": False}, signed=False)
    rejected = wait_for(lambda: [o for o in d.history.page(10) if o.outcome == "rejected"],
                        message="the forged receipt rejected")
    assert "signed by the family's key" in rejected[0].reason
    assert d.pillow.snapshot()["last_sent"]["partners"]["bob"]["delivered"] is None


# -- the receiver's night ------------------------------------------------------------


def test_messages_in_quiet_hours_wait_on_the_page_until_seen(pillow):
    d = pillow()
    d.controls.set_quiet(True)
    from_bob(d, {**bobs_hug("bob-night"), "text": "sleep well"})
    wait_for(lambda: playing(d, "bob-night"), message="bob's hug at night")
    at = history(d, "bob-night")[0].at
    assert d.pillow.snapshot()["while_quiet"] == [
        {"id": "bob-night", "from": "bob", "text": "sleep well", "at": at}]
    (receipt,) = wait_for(lambda: at_bob(d), message="the receipt")
    assert receipt["quiet"] is True and KEY.verify(receipt)

    assert api(d, "/api/seen").json() == {"while_quiet": []}
    assert d.pillow.snapshot()["while_quiet"] == []
    assert requests.post(d.url + "api/seen", timeout=5).status_code in (401, 403)

    d.queues.main.put(encode({"scene": "glow", "from": "Grandma", "id": "g-night"}))
    wait_for(lambda: d.pillow.snapshot()["while_quiet"], message="Grandma's, at night")
    d.hardware.pin_factory.pin(17).drive_low()       # a press counts as seen too
    d.hardware.pin_factory.pin(17).drive_high()      # (sent on its release)
    wait_for(lambda: d.pillow.snapshot()["while_quiet"] == [], message="seen by a press")
    d.controls.set_quiet(False)
    from_bob(d, bobs_hug("bob-day"))
    wait_for(lambda: playing(d, "bob-day"), message="bob's hug by day")
    assert d.pillow.snapshot()["while_quiet"] == []


# -- the outbox delivers only, and never what is too old -----------------------------


def test_an_event_older_than_its_ttl_is_dropped_not_sent_and_hurries_nothing(tmp_path):
    store, bob = bobs_queue(tmp_path)
    wall, clock, boot = clocks()
    outbox = Outbox(tmp_path / "outbox.sqlite3", [bob], partners={"pillow-bob": "bob"},
                    wall=clock, since_boot=boot)
    sent, dropped, hurried = [], [], []
    outbox.on_sent(lambda event, queue: sent.append(event["id"]))
    outbox.on_dropped(lambda event, queue: dropped.append(event["id"]))
    # alice's conversation hurries her poll for each hug a partner's queue took.
    conversation = alices(tmp_path, outbox, hurry=hurried.append, clock=clock)
    stale = conversation.press()
    wall[0] += 700   # an outage of 700 s: the hug is past its ttl
    assert outbox.flush() is True
    assert bob.peek() == [] and sent == [] and dropped == [stale["id"]]
    assert hurried == []            # no answer can come: nothing hurries the poll
    fresh = conversation.press()    # the next press goes, and hurries it
    assert outbox.flush() is True
    assert [json.loads(m.body)["id"] for m in bob.peek()] == [fresh["id"]]
    assert sent == [fresh["id"]] and hurried == [600]
    assert outbox.pending() == []
    assert outbox.status()["dropped"] == 1
    outbox.close()
    store.close()


def test_a_dropped_hug_shows_expired_and_never_rearms_fast_polling(tmp_path):
    store, bob = bobs_queue(tmp_path)
    wall, clock, boot = clocks()
    outbox = Outbox(tmp_path / "outbox.sqlite3", [bob], partners={"pillow-bob": "bob"},
                    wall=clock, since_boot=boot)
    hurried, sections = [], {}
    conversation = alices(tmp_path, outbox, hurry=hurried.append,
                          on_section=sections.__setitem__, clock=lambda: wall[0])
    conversation.press()
    wall[0] += 601
    assert outbox.flush() is True
    assert bob.peek() == [] and hurried == []
    assert sections["last_sent"]["partners"]["bob"]["expired"] is True
    outbox.close()
    store.close()


def test_a_hug_the_outbox_cannot_keep_is_an_error_not_a_lost_hug(tmp_path):
    store, bob = bobs_queue(tmp_path)
    outbox = Outbox(tmp_path / "outbox.sqlite3", [bob])
    heard = []
    conversation = Conversation("alice", window=600, send_scene="hug",
                                path=tmp_path / "conversation.json", outbox=outbox,
                                on_hug=lambda kind, sender, text: heard.append(kind))
    outbox.close()   # as good as a full disk: nothing can be written
    with pytest.raises(HugNotKept, match="could not be kept in .*outbox.sqlite3"):
        conversation.press()
    assert heard == []     # not "pressed": it goes nowhere
    store.close()


def test_the_conversation_is_kept_across_a_restart(pillow, tmp_path):
    d = pillow()
    from_bob(d, bobs_hug("bob-1"))
    wait_for(lambda: playing(d, "bob-1"), message="bob's hug")
    assert api(d, "/api/hug").status_code == 202
    hug = wait_for(lambda: [e for e in at_bob(d) if e.get("event") == "hug"],
                   message="alice's answer")[0]
    d.close()
    d = pillow()
    assert d.pillow.snapshot()["last_sent"]["id"] == hug["id"]
    from_bob(d, bobs_hug("bob-2", {"id": hug["id"], "from": "alice"}))
    wait_for(lambda: playing(d, "bob-2"), message="bob's hug back after the restart")
    assert history(d, "bob-2")[0].reply is True


def test_a_partners_hug_that_expired_here_is_answered_so_and_shows_expired_there(pillow):
    d = pillow()
    from_bob(d, bobs_hug("bob-old", sent_at=now(-700)))    # past its 600 s ttl
    wait_for(lambda: history(d, "bob-old"), message="bob's old hug recorded")
    assert history(d, "bob-old")[0].outcome == "expired"
    (receipt,) = wait_for(lambda: at_bob(d), message="the receipt")
    assert KEY.verify(receipt) and receipt["expired"] is True
    assert (receipt["of"], receipt["played_at"]) == ("bob-old", None)

    # And the other way round: alice's hug expired on bob.
    assert api(d, "/api/hug").status_code == 202
    hug = [e for e in at_bob(d) if e.get("event") == "hug"][0]
    from_bob(d, {"event": "receipt", "of": hug["id"], "pillow": "bob",
                 "played_at": None, "quiet": False, "expired": True})
    wait_for(lambda: d.pillow.snapshot()["last_sent"]["partners"]["bob"]["expired"],
             message="expired, on alice's snapshot")
    assert d.pillow.snapshot()["last_sent"]["partners"]["bob"]["delivered"] is None


def test_the_sender_polls_fast_until_the_window_from_the_play_there_ends(tmp_path):
    from pillowd.queues.backoff import Backoff
    from pillowd.history import Outcome
    from pillowd.messages import decode
    store, bob = bobs_queue(tmp_path)
    wall = [time.time()]
    backoff = Backoff(0.1, 5.0)
    hurried = []
    outbox = Outbox(tmp_path / "outbox.sqlite3", [bob], partners={"pillow-bob": "bob"},
                    wall=lambda: wall[0])
    conversation = alices(
        tmp_path, outbox, clock=lambda: wall[0],
        hurry=lambda seconds: (hurried.append(seconds), backoff.hurry(seconds)))
    for _ in range(8):
        backoff.next(found=False)
    assert backoff.interval == 5.0
    hug = conversation.press()
    assert outbox.flush() and hurried == [600]      # bob's queue took it
    assert backoff.interval == 0.1 and backoff.wake.is_set()
    # bob played it 30 s later (his receipt says); it is now 40 s after the press.
    played = wall[0] + 30
    wall[0] += 40
    settings = config.parse(BASE_CONFIG.format(state_dir=tmp_path))
    receipt = decode(json.dumps(KEY.signed({
        "event": "receipt", "of": hug["id"], "pillow": "bob",
        "played_at": iso(datetime.fromtimestamp(played, timezone.utc)),
        "quiet": False})), settings, KEY)
    conversation.heard(receipt, Outcome(id="q-1", outcome="applied", scene=None,
                                        sender="bob", reason=None, at=now()), True)
    assert hurried[1] == pytest.approx(590, abs=0.01)   # 600 s from the play there
    outbox.close()
    store.close()


def test_a_partner_clock_ahead_never_hurries_the_poll_longer_than_the_window(tmp_path):
    # played_at is by bob's clock, the rest by alice's: a Pi that booted without
    # NTP an hour ahead must not make alice poll Azure fast for an hour.
    from pillowd.history import Outcome
    from pillowd.messages import decode
    store, bob = bobs_queue(tmp_path)
    wall = [time.time()]
    hurried = []
    outbox = Outbox(tmp_path / "outbox.sqlite3", [bob], partners={"pillow-bob": "bob"},
                    wall=lambda: wall[0])
    conversation = alices(tmp_path, outbox, hurry=hurried.append, clock=lambda: wall[0])
    hug = conversation.press()
    settings = config.parse(BASE_CONFIG.format(state_dir=tmp_path))
    receipt = decode(json.dumps(KEY.signed({
        "event": "receipt", "of": hug["id"], "pillow": "bob",
        "played_at": iso(datetime.fromtimestamp(wall[0] + 3600, timezone.utc)),
        "quiet": False})), settings, KEY)
    conversation.heard(receipt, Outcome(id="q-1", outcome="applied", scene=None,
                                        sender="bob", reason=None, at=now()), True)
    assert hurried and max(hurried) <= 600
    outbox.close()
    store.close()


def test_a_hug_plays_even_when_the_conversation_cannot_judge_it(pillow, monkeypatch):
    # A bug in the conversation (asking whether a partner's hug is a hug back fails):
    # the hug must still be kept and played, not come back until it is rejected,
    # and the button must still send.
    d = pillow()

    def cannot(command):
        raise RuntimeError("a bug in the conversation")
    monkeypatch.setattr(d.conversation, "answers", cannot)
    from_bob(d, bobs_hug("bob-1", reply_to={"id": "ours-1", "from": "alice"}))
    wait_for(lambda: playing(d, "bob-1"), message="bob's hug played")
    assert [o.outcome for o in history(d, "bob-1")] == ["applied"]
    assert api(d, "/api/hug").status_code == 202
    wait_for(lambda: [e for e in at_bob(d) if e.get("event") == "hug"],
             message="the press sent to bob")


@pytest.mark.parametrize("kept", [
    {"own": {"x": {}}},
    {"target": {"id": "x"}},
    {"own": {"x": {"at": 1.0, "played": {"bob": "noon"}}}, "target": ["x"]},
    {"last_sent": {"id": "x", "partners": []}, "while_quiet": [{"id": 1}, "x"]},
    {"own": [], "while_quiet": {}},
], ids=["own-without-at", "target-without-at", "bad-played", "bad-last-sent",
        "wrong-types"])
def test_a_bad_entry_in_the_kept_conversation_is_dropped_and_a_press_sends(
        pillow, tmp_path, kept, caplog):
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    (state / "conversation.json").write_text(json.dumps(kept))
    caplog.set_level("WARNING", logger="pillowd.hugs.conversation")
    d = pillow()
    (line,) = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert "conversation.json" in line
    assert api(d, "/api/hug").status_code == 202
    hug = wait_for(lambda: [e for e in at_bob(d) if e.get("event") == "hug"],
                   message="the press sent to bob")[0]
    # Healed: the file is written again, whole.
    assert json.loads((state / "conversation.json").read_text())["last_sent"]["id"] == \
        hug["id"]
    # And a hug from bob plays as usual.
    from_bob(d, bobs_hug("bob-1", reply_to={"id": "x", "from": "alice"}))
    wait_for(lambda: playing(d, "bob-1"), message="bob's hug played")


def test_two_presses_at_once_leave_last_sent_on_the_hug_sent_last(tmp_path):
    # The button (gpiozero's thread) and the page (a web thread) at the same moment:
    # the page must follow the hug that went last, whose receipts will come.
    import threading
    store, bob = bobs_queue(tmp_path)
    second_done = threading.Event()

    class Slow(Outbox):
        first = True

        def add(self, event, to=None):
            super().add(event, to)
            if Slow.first:   # the first press is kept, then its thread is preempted
                Slow.first = False
                second_done.wait(2)

    outbox = Slow(tmp_path / "outbox.sqlite3", [bob], partners={"pillow-bob": "bob"})
    conversation = alices(tmp_path, outbox)
    first = threading.Thread(target=conversation.press, name="test-first-press")
    first.start()
    wait_for(lambda: outbox.pending(), message="the first hug kept")
    second = threading.Thread(target=lambda: (conversation.press(), second_done.set()),
                              name="test-second-press")
    second.start()
    first.join(10)
    second.join(10)
    assert [e["id"] for e in outbox.pending()][-1] == conversation.last_sent["id"]
    outbox.close()
    store.close()


# -- the family roster: partners by name, whatever the pillow is called -------------

RENAMED = '[pillow]\nname = "Alice\'s cloud"\n'


def receipt_from_bob(of: str, **fields) -> dict:
    return {"event": "receipt", "of": of, "pillow": "bob", "played_at": now(),
            "quiet": False, **fields}


def test_a_renamed_pillow_answers_and_is_answered_by_its_roster_name(pillow):
    d = pillow(roster=True, drop_in=RENAMED)
    assert d.pillow.snapshot()["pillow"] == "Alice's cloud"
    # bob's hug gets its receipt, on bob's queue, from "alice" (the roster's name).
    from_bob(d, bobs_hug("bob-1"))
    wait_for(lambda: playing(d, "bob-1"), message="bob's hug")
    (receipt,) = wait_for(lambda: at_bob(d), message="the receipt")
    assert KEY.verify(receipt) and (receipt["of"], receipt["pillow"]) == ("bob-1", "alice")
    # alice's hug says who she is to bob; bob's receipt fills last_sent's "bob".
    assert api(d, "/api/hug").status_code == 202
    hug = wait_for(lambda: [e for e in at_bob(d) if e.get("event") == "hug"],
                   message="alice's hug")[0]
    assert (hug["pillow"], hug["from"]) == ("alice", "Alice's cloud")
    assert list(d.pillow.snapshot()["last_sent"]["partners"]) == ["bob"]
    from_bob(d, receipt_from_bob(hug["id"]))
    wait_for(lambda: d.pillow.snapshot()["last_sent"]["partners"]["bob"]["delivered"],
             message="delivered, on alice's snapshot")
    assert list(d.pillow.snapshot()["last_sent"]["partners"]) == ["bob"]
    assert d.pillow.snapshot()["outbox"]["partners"] == {"pillow-bob": "bob"}


def test_an_older_config_with_only_outbound_name_still_finds_its_partner(pillow):
    # No roster, renamed: the partner is named after its queue as pair made it
    # (pillow-bob beside pillow-alice), not by cutting the pillow's own name.
    d = pillow(drop_in=RENAMED)
    assert d.settings.roster == {"bob": "pillow-bob"}
    from_bob(d, bobs_hug("bob-1"))
    (receipt,) = wait_for(lambda: at_bob(d), message="the receipt")
    assert receipt["of"] == "bob-1"
    assert api(d, "/api/hug").status_code == 202
    assert list(d.pillow.snapshot()["last_sent"]["partners"]) == ["bob"]


def test_a_press_for_one_partner_goes_to_that_partner_only(make_config, tmp_path):
    store = LocalStore(tmp_path / "queues.sqlite3")
    queues = {name: store.queue(f"pillow-{name}") for name in ("bob", "carol")}
    for queue in queues.values():
        queue.create()
    outbox = Outbox(tmp_path / "outbox.sqlite3", list(queues.values()),
                    partners={"pillow-bob": "bob", "pillow-carol": "carol"})
    conversation = Conversation("alice", window=600, send_scene="hug",
                                path=tmp_path / "conversation.json", outbox=outbox,
                                partners={"bob": "pillow-bob", "carol": "pillow-carol"},
                                family=KEY)
    hug = conversation.press(to="bob")
    assert outbox.flush() is True
    assert [json.loads(m.body)["id"] for m in queues["bob"].peek()] == [hug["id"]]
    assert queues["carol"].peek() == []
    assert list(conversation.last_sent["partners"]) == ["bob"]
    with pytest.raises(UnknownPartner, match="no partner named 'dave'"):
        conversation.press(to="dave")
    everyone = conversation.press()
    assert outbox.flush() is True
    assert json.loads(queues["carol"].peek()[-1].body)["id"] == everyone["id"]
    assert sorted(conversation.last_sent["partners"]) == ["bob", "carol"]
    # The press path a "Hug carol" button uses: plays here, sends to carol only.
    from pillowd.hugs.press import Hugs
    from pillowd.settings import ButtonSettings
    played = []
    hugs = Hugs(ButtonSettings(), conversation=conversation,
                play=lambda data, source: played.append((data["scene"], source)))
    ident = hugs.pressed("mqtt", to="carol")
    assert outbox.flush() is True
    assert json.loads(queues["carol"].peek()[-1].body)["id"] == ident
    assert json.loads(queues["bob"].peek()[-1].body)["id"] != ident
    assert played == [("hugged", "mqtt")] and hugs.presses == 1
    with pytest.raises(UnknownPartner):
        hugs.pressed("mqtt", to="dave")
    assert hugs.presses == 1
    outbox.close()
    store.close()


# -- every partner hug that reaches an outcome is answered --------------------------


def test_a_superseded_partner_hug_is_answered_delivered_though_not_played(pillow):
    d = pillow()
    d.consumer.stop()                    # both wait in the queue: one batch, after
    d._threads[[label for label, _, _ in d._loops].index("queue")].join(5)
    from_bob(d, bobs_hug("bob-1", sent_at=now(-2)))
    from_bob(d, bobs_hug("bob-2"))
    d.consumer.poll_once()
    assert [o.outcome for o in history(d, "bob-1")] == ["superseded"]
    receipts = {r["of"]: r for r in at_bob(d)}
    assert sorted(receipts) == ["bob-1", "bob-2"]
    assert receipts["bob-1"]["superseded"] is True
    assert receipts["bob-1"]["played_at"] is None
    assert "expired" not in receipts["bob-1"]
    assert receipts["bob-2"]["superseded"] is False and receipts["bob-2"]["played_at"]

    # And on the sender: delivered, superseded.
    assert api(d, "/api/hug").status_code == 202
    hug = [e for e in at_bob(d) if e.get("event") == "hug"][0]
    from_bob(d, receipt_from_bob(hug["id"], played_at=None, superseded=True,
                                 sent_at=now()))
    d.consumer.poll_once()
    entry = d.pillow.snapshot()["last_sent"]["partners"]["bob"]
    assert entry["delivered"] and entry["superseded"] is True and not entry["expired"]


def test_a_receipt_counts_once_and_a_stale_one_not_at_all(pillow, caplog):
    caplog.set_level("INFO", logger="pillowd")
    d = pillow()
    assert api(d, "/api/hug").status_code == 202
    hug = wait_for(lambda: at_bob(d), message="alice's hug")[0]
    receipt = receipt_from_bob(hug["id"], id=receipt_id(hug["id"], "bob"),
                               sent_at=now(), ttl=600)
    from_bob(d, receipt)
    from_bob(d, receipt)             # sent twice (bob crashed before his record)
    from_bob(d, {**receipt, "id": "another-copy"})   # or made again otherwise
    wait_for(lambda: len([o for o in d.history.page(20) if o.event == "receipt"
                          or o.outcome == "duplicate"]) == 3, message="three receipts")
    delivered = [r for r in caplog.records if getattr(r, "PILLOW_HUG", None) == "delivered"]
    assert len(delivered) == 1       # one `delivered` for Home Assistant
    assert sorted(o.outcome for o in d.history.page(20) if o.id == receipt["id"]) == [
        "applied", "duplicate"]
    # A receipt older than its ttl (a queue that refused for an hour) is expired.
    assert api(d, "/api/hug").status_code == 202
    second = [e for e in at_bob(d) if e.get("event") == "hug"][-1]
    from_bob(d, receipt_from_bob(second["id"], id=receipt_id(second["id"], "bob"),
                                 sent_at=now(-700), ttl=600))
    wait_for(lambda: history(d, receipt_id(second["id"], "bob")), message="stale receipt")
    assert history(d, receipt_id(second["id"], "bob"))[0].outcome == "expired"
    assert d.pillow.snapshot()["last_sent"]["partners"]["bob"]["delivered"] is None


def test_receipts_expire_in_the_outbox_and_are_kept_once(tmp_path):
    store, bob = bobs_queue(tmp_path)
    wall, clock, boot = clocks()
    outbox = Outbox(tmp_path / "outbox.sqlite3", [bob], partners={"pillow-bob": "bob"},
                    wall=clock, since_boot=boot)
    from pillowd.history import Outcome
    from pillowd.hugs.receipts import make_receipt
    played = Outcome(id="bob-1", outcome="applied", scene="hug", sender="bob",
                     reason=None, at=now())
    receipt = KEY.signed(make_receipt("bob-1", "alice", played, quiet=False,
                                      sent_at=now(), ttl=600))
    outbox.add(receipt, to=["pillow-bob"])
    outbox.add(receipt, to=["pillow-bob"])        # made again: waits once
    assert len(outbox.pending()) == 1
    wall[0] += 601                                # bob's queue refused for 10 minutes
    assert outbox.flush() is True
    assert bob.peek() == [] and outbox.status()["dropped"] == 1
    outbox.close()
    store.close()


def test_a_crash_between_the_hugs_record_and_its_receipt_loses_no_receipt(pillow):
    d = pillow()
    d.consumer.stop()
    d._threads[[label for label, _, _ in d._loops].index("queue")].join(5)
    from_bob(d, bobs_hug("bob-1"))
    # The crash: the outcome is kept, then the pillow dies before the receipt is
    # kept and before the message is deleted.
    answer, d.conversation._answer = d.conversation._answer, lambda *a, **k: None
    delete, d.consumer._delete = d.consumer._delete, lambda message: None
    d.consumer.visibility_timeout = 0.2      # it comes back soon, not in 30 s
    d.consumer.poll_once()
    assert [o.outcome for o in history(d, "bob-1")] == ["applied"]
    assert d.outbox.pending() == []
    d.conversation._answer, d.consumer._delete = answer, delete
    # The message comes back after its visibility timeout: only deleted, and answered.
    wait_for(d.consumer.poll_once, message="bob's hug back on the queue")
    (receipt,) = at_bob(d)
    assert receipt["of"] == "bob-1" and receipt["played_at"] == history(d, "bob-1")[0].at
    assert d.queues.main.peek(32) == []
    assert [o.outcome for o in history(d, "bob-1")] == ["applied"]   # played once


def test_a_late_copy_of_a_hug_that_played_is_a_duplicate_not_expired(pillow):
    d = pillow()
    body = encode(KEY.signed(bobs_hug("bob-1")))
    d.queues.main.put(body)
    wait_for(lambda: playing(d, "bob-1"), message="bob's hug")
    wait_for(lambda: at_bob(d), message="its receipt")
    # The same hug again, after its ttl (a retry of bob's outbox that was taken).
    real = d.consumer._wall
    d.consumer._wall = lambda: real() + timedelta(seconds=700)
    d.queues.main.put(body)
    wait_for(lambda: len(history(d, "bob-1")) == 2, message="the copy recorded")
    assert [o.outcome for o in history(d, "bob-1")] == ["duplicate", "applied"]
    (receipt,) = at_bob(d)           # no second receipt, and none saying expired
    assert not receipt.get("expired")


# -- a clock stepped by NTP ------------------------------------------------------------


def test_a_hug_pressed_before_the_clock_was_set_is_sent_not_dropped(tmp_path):
    from pillowd.queues import QueueUnavailable
    store, bob = bobs_queue(tmp_path)

    class Offline:
        """bob's queue, out of reach until the network (and NTP) comes."""
        name, online = bob.name, False

        def put(self, body):
            if not self.online:
                raise QueueUnavailable("no network yet")
            return bob.put(body)

    reach = Offline()
    # Booted offline on fake-hwclock's time, 5 hours behind; the boot clock runs.
    wall = [time.time() - 5 * 3600]
    since = [100.0]
    outbox = Outbox(tmp_path / "outbox.sqlite3", [reach], partners={"pillow-bob": "bob"},
                    wall=lambda: wall[0], since_boot=lambda: ("this-boot", since[0]),
                    sign=KEY.signed)
    sections = {}
    conversation = alices(tmp_path, outbox, clock=lambda: wall[0],
                          on_section=sections.__setitem__)
    hug = conversation.press()
    assert outbox.flush() is False           # offline: it waits
    since[0] += 30                           # 30 s later NTP steps the clock: 5 h on
    wall[0] += 5 * 3600 + 30
    reach.online = True                      # and the network is there
    assert outbox.flush() is True
    assert outbox.status()["dropped"] == 0
    (sent,) = [json.loads(m.body) for m in bob.peek()]
    assert sent["id"] == hug["id"] and KEY.verify(sent)
    stamped = datetime.fromisoformat(sent["sent_at"].replace("Z", "+00:00")).timestamp()
    assert abs(stamped - (wall[0] - 30)) < 1     # when it was really pressed
    assert sections["last_sent"]["at"] == sent["sent_at"]
    assert not sections["last_sent"]["partners"]["bob"]["expired"]
    outbox.close()
    store.close()


# -- one played message, one change of the snapshot ---------------------------------


def test_a_played_message_and_its_scene_are_one_change_of_the_snapshot(pillow):
    d = pillow()
    seen = []
    d.pillow.on_state(lambda: seen.append(d.pillow.snapshot()))
    for n in range(5):
        d.queues.main.put(encode({"scene": "glow", "from": "Grandma", "id": f"g-{n}"}))
        wait_for(lambda: playing(d, f"g-{n}"), message=f"message g-{n}")
        # From any thread, too: what /api/state and the page read.
        state = requests.get(d.url + "api/state", timeout=5).json()
        assert state["recent"][0]["id"] == state["message"]["id"] == f"g-{n}"
    ours = [s for s in seen if s["recent"] and s["recent"][0]["id"].startswith("g-")]
    assert ours
    for state in ours:   # never a row under Recent messages with another scene playing
        assert (state["message"] or {}).get("id") == state["recent"][0]["id"], state
    for state in seen:   # nor the scene before its row
        playing_id = (state["message"] or {}).get("id", "")
        if playing_id.startswith("g-"):
            assert state["recent"][0]["id"] == playing_id, state


def test_a_partners_hug_plays_in_its_roster_colour_unless_it_names_one(pillow):
    d = pillow(roster="#3366ff")      # [partners.bob] color
    assert d.settings.partners["bob"].color == "#3366ff"
    from_bob(d, bobs_hug("bob-1"))
    wait_for(lambda: playing(d, "bob-1"), message="bob's hug")
    assert d.timeline.current().params["color"] == pytest.approx((0x33 / 255, 0x66 / 255, 1))
    from_bob(d, {**bobs_hug("bob-2"), "color": "#ff0000"})
    wait_for(lambda: playing(d, "bob-2"), message="bob's red hug")
    assert d.timeline.current().params["color"] == pytest.approx((1, 0, 0))
    # Anyone else's hug plays in the scene's colour.
    d.queues.main.put(encode({"scene": "hug", "from": "Grandma", "id": "g-1"}))
    wait_for(lambda: playing(d, "g-1"), message="Grandma's hug")
    assert d.timeline.current().params["color"] == pytest.approx((1, 0, 0))
