"""The conversation's parts, each apart: who a press answers, what became of what was
sent, what came in the night, the receipts a partner's hug gets, how it is all kept.

tests/test_conversation.py drives them together through a real daemon; here each
part is built on its own, with its own state, as the Conversation builds it."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from pillowd.family import FamilyKey
from pillowd.hugs.kept import ConversationFile, checked_state
from pillowd.hugs.night import WhileQuiet
from pillowd.hugs.outbox import Outbox
from pillowd.hugs.receipts import Receipts, receipt_id
from pillowd.hugs.sent import SentHugs, partner_entry
from pillowd.hugs.target import ReplyTarget
from pillowd.queues.local import LocalStore

T0 = 1_800_000_000.0   # an epoch second


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


def hug_back(of: str, *, pillow="bob", sent_at: float | None = None):
    return SimpleNamespace(reply_to={"id": of, "from": "alice"}, pillow=pillow,
                           sent_at=at(sent_at) if sent_at is not None else None)


def receipt(of: str, *, pillow="bob", played_at: float | None = None, expired=False,
            superseded=False, quiet=False, sent_at: float | None = None):
    return SimpleNamespace(of=of, pillow=pillow, expired=expired, superseded=superseded,
                           quiet=quiet, played_at=at(played_at) if played_at else None,
                           sent_at=at(sent_at) if sent_at else None)


def outcome(ident="m1", kind="applied", when="2027-01-15T08:00:00.000Z"):
    return SimpleNamespace(id=ident, outcome=kind, at=when)


# -- who a press answers -----------------------------------------------------------

def test_the_reply_target_is_the_last_message_heard_for_a_window_after_it_played():
    target = ReplyTarget(None, window=30)
    assert target.reply_to(T0) is None
    target.heard("m1", "bob", T0)
    target.heard("m2", "carol", T0 + 5)
    assert target.reply_to(T0 + 35) == {"id": "m2", "from": "carol"}
    assert target.reply_to(T0 + 35.1) is None


def test_a_kept_reply_target_still_counts_after_a_restart():
    assert ReplyTarget({"id": "m1", "from": "bob", "at": T0}, window=30).reply_to(T0 + 10) \
        == {"id": "m1", "from": "bob"}


# -- what came in the night --------------------------------------------------------

def test_the_night_keeps_the_newest_messages_until_they_are_seen():
    night = WhileQuiet(limit=3)
    for n in range(5):
        night.came(f"m{n}", "bob", f"note {n}", f"2027-01-15T0{n}:00:00.000Z")
    assert [item["id"] for item in night.view()] == ["m2", "m3", "m4"]
    assert night.holds("m4") and not night.holds("m0")
    night.view()[0]["text"] = "changed"        # a view, not the state
    assert night.items[0]["text"] == "note 2"
    assert night.seen() is True
    assert night.view() == [] and night.seen() is False


# -- what became of what was sent --------------------------------------------------

def test_a_hug_back_counts_within_the_window_of_ours_playing_there_by_the_partners_clock():
    sent = SentHugs(None, None, window=30, ttl=600)
    sent.sent({"id": "h1", "sent_at": "x"}, T0, ["bob"])
    # bob's clock runs an hour ahead: both times are read on it
    assert sent.receipt(receipt("h1", played_at=T0 + 3600), outcome("r1")).played == T0 + 3600
    assert sent.answers(hug_back("h1", sent_at=T0 + 3600 + 31), T0) is True
    assert sent.answers(hug_back("h1", sent_at=T0 + 3600 + 31.5), T0) is False
    assert sent.answers(hug_back("unknown", sent_at=T0), T0) is False


def test_without_a_receipt_a_hug_back_counts_until_the_ttl_and_window_have_passed():
    sent = SentHugs(None, None, window=30, ttl=600)
    sent.sent({"id": "h1", "sent_at": "x"}, T0, ["bob"])
    assert sent.answers(hug_back("h1", sent_at=T0 + 690), T0) is True
    assert sent.answers(hug_back("h1", sent_at=T0 + 691), T0) is False


def test_last_sent_follows_each_partners_receipt_once():
    sent = SentHugs(None, None, window=30, ttl=600)
    sent.sent({"id": "h1", "sent_at": "2027-01-15T08:00:00.000Z"}, T0, ["bob", "carol"])
    assert sent.last["partners"] == {"bob": partner_entry(), "carol": partner_entry()}
    first = sent.receipt(receipt("h1", played_at=T0 + 2, quiet=True), outcome("r1"))
    assert first.current is True
    assert sent.last["partners"]["bob"]["delivered"] is not None
    assert sent.last["partners"]["bob"]["quiet"] is True
    assert sent.receipt(receipt("h1", played_at=T0 + 9), outcome("r1-copy")) is None
    sent.receipt(receipt("h1", pillow="carol", expired=True), outcome("r2"))
    assert sent.last["partners"]["carol"]["expired"] is True
    assert sent.hugged_back(hug_back("h1", pillow="carol"), "2027-01-15T08:00:05.000Z")
    assert sent.last["partners"]["carol"]["hugged_back"] == "2027-01-15T08:00:05.000Z"


def test_a_superseded_hug_was_delivered_though_not_played():
    sent = SentHugs(None, None, window=30, ttl=600)
    sent.sent({"id": "h1", "sent_at": "2027-01-15T08:00:00.000Z"}, T0, ["bob"])
    change = sent.receipt(receipt("h1", superseded=True, sent_at=T0 + 4), outcome("r1"))
    assert change.current is True and change.played is None
    entry = sent.last["partners"]["bob"]
    assert entry["superseded"] is True and entry["delivered"] is not None


def test_a_receipt_for_an_older_hug_leaves_last_sent_alone():
    sent = SentHugs(None, None, window=30, ttl=600)
    sent.sent({"id": "h1", "sent_at": "a"}, T0, ["bob"])
    sent.sent({"id": "h2", "sent_at": "b"}, T0 + 1, ["bob"])
    assert sent.receipt(receipt("h1", played_at=T0 + 2), outcome("r1")).current is False
    assert sent.last["partners"]["bob"] == partner_entry()


def test_own_hugs_are_forgotten_once_no_answer_could_count():
    sent = SentHugs(None, None, window=30, ttl=600)
    sent.sent({"id": "old", "sent_at": "a"}, T0, ["bob"])
    sent.sent({"id": "new", "sent_at": "b"}, T0 + 691, ["bob"])
    assert list(sent.own) == ["new"]


def test_a_dropped_hug_expires_on_that_partner_and_a_restamped_one_moves():
    sent = SentHugs(None, None, window=30, ttl=600)
    sent.sent({"id": "h1", "sent_at": "2027-01-15T08:00:00.000Z"}, T0, ["bob"])
    assert sent.dropped({"event": "receipt", "id": "h1"}, "bob") is False
    assert sent.dropped({"event": "hug", "id": "h1"}, "bob") is True
    assert sent.last["partners"]["bob"]["expired"] is True
    later = "2027-01-15T09:00:00.000Z"
    assert sent.restamped({"id": "h1", "sent_at": later}) is True
    assert sent.last["at"] == later
    assert sent.restamped({"id": "h1", "sent_at": later}) is False   # already so


# -- the receipts a partner's hug gets ---------------------------------------------

@pytest.fixture
def bob_outbox(tmp_path):
    store = LocalStore(tmp_path / "queue.sqlite3")
    bob = store.queue("pillow-bob")
    bob.create()
    outbox = Outbox(tmp_path / "outbox.sqlite3", [bob], partners={"pillow-bob": "bob"})
    yield outbox
    outbox.close()
    store.close()


def test_a_partners_hug_gets_one_signed_receipt_on_its_queue(bob_outbox):
    family = FamilyKey.generate()
    receipts = Receipts("alice", family=family, outbox=bob_outbox,
                        partners={"bob": "pillow-bob"}, ttl=600, clock=lambda: T0)
    hug = SimpleNamespace(pillow="bob", id="h1")
    receipts.answer(hug, outcome("h1"), quiet=True)
    receipts.answer(hug, outcome("h1"), quiet=True)      # made again after a crash
    (sent,) = bob_outbox.pending("pillow-bob")
    assert family.verify(sent)
    assert sent["id"] == receipt_id("h1", "alice")
    assert (sent["event"], sent["of"], sent["pillow"], sent["quiet"]) == \
        ("receipt", "h1", "alice", True)
    assert sent["played_at"] == "2027-01-15T08:00:00.000Z"


def test_no_receipt_without_the_family_key_or_for_a_stranger(bob_outbox):
    for family, pillow in ((None, "bob"), (FamilyKey.generate(), "mallory")):
        Receipts("alice", family=family, outbox=bob_outbox, partners={"bob": "pillow-bob"},
                 ttl=600, clock=lambda: T0).answer(
            SimpleNamespace(pillow=pillow, id="h1"), outcome("h1"))
    assert bob_outbox.pending() == []


# -- how it is kept ----------------------------------------------------------------

def test_the_kept_conversation_reads_back_what_was_written(tmp_path):
    file = ConversationFile(tmp_path / "conversation.json")
    assert file.load() == {}
    state = {"target": {"id": "m1", "from": "bob", "at": T0},
             "own": {"h1": {"at": T0, "played": {"bob": T0 + 2}, "answered": ["bob"]}},
             "last_sent": {"id": "h1", "at": "2027-01-15T08:00:00.000Z",
                           "partners": {"bob": partner_entry()}},
             "while_quiet": [{"id": "m1", "from": "bob", "text": None,
                              "at": "2027-01-15T08:00:00.000Z"}]}
    file.save(state)
    assert file.load() == state


def test_what_is_not_as_pillowd_writes_it_is_dropped_with_one_line(tmp_path, caplog):
    path = tmp_path / "conversation.json"
    path.write_text(json.dumps({"target": {"id": "x"}, "own": {"h1": {}, "h2": {"at": T0}},
                                "while_quiet": [{"id": 3}]}))
    with caplog.at_level(logging.WARNING):
        kept = ConversationFile(path).load()
    assert "target" not in kept and list(kept["own"]) == ["h2"]
    assert kept["while_quiet"] == []
    (line,) = [r.getMessage() for r in caplog.records]
    assert "target" in line and "own['h1']" in line and "1 of while_quiet" in line
    assert checked_state(kept) == (kept, [])


def test_a_conversation_that_cannot_be_written_is_logged_not_raised(tmp_path, caplog):
    file = ConversationFile(tmp_path / "missing-folder" / "conversation.json")
    with caplog.at_level(logging.WARNING):
        file.save({"target": None})
    assert "cannot keep the conversation" in caplog.text
