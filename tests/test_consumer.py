"""The queue loop's outcomes, in process, on the real embedded queue and history."""

import json
import random
from datetime import datetime, timedelta, timezone

import pytest

from pillowd.config import parse
from pillowd.consumer import Consumer
from pillowd.history import History, HistoryError
from pillowd.leds.scenes import Timeline
from pillowd.messages import decode
from pillowd.player import Player
from pillowd.queues.backoff import Backoff
from pillowd.queues.local import LocalStore

SETTINGS = parse('''
[scenes.idle]
effect = "solid"
[scenes.hug]
effect = "solid"
color = "#ff0000"
''')


class World:
    """A consumer wired to a real SQLite queue and history, with a settable clock."""

    def __init__(self, tmp_path):
        self.wall_now = datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc)
        self.store = LocalStore(tmp_path / "q.sqlite3",
                                clock=lambda: self.wall_now.timestamp())
        self.queue = self.store.queue("pillow")
        self.poison = self.store.queue("pillow-poison")
        self.history = History(tmp_path / "h.sqlite3")
        self.played = []
        self.outcomes = []
        timeline = Timeline(SETTINGS.scenes["idle"])
        timeline.on_change(lambda playing: self.played.append(playing.message["id"]))
        self.player = Player(self.history, timeline, on_outcome=self.outcome)
        self.consumer = self.make()

    def outcome(self, outcome, start=None):
        # As the Pillow does: the row and the scene in one change.
        self.outcomes.append(outcome)
        if start is not None:
            start()

    def make(self, **kw):
        return Consumer(self.queue, self.poison, self.history, self.player,
                        decode=lambda body: decode(body, SETTINGS),
                        backoff=Backoff(0.1, 5), backend="local",
                        max_dequeue_count=2, max_age=900,
                        wall=lambda: self.wall_now, **kw)

    def send(self, **fields):
        return self.queue.put(json.dumps({"scene": "hug", **fields}))

    def outcome_of(self, message_id):
        return [o.outcome for o in self.history.page(1000) if o.id == message_id]


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.history.close()
    w.store.close()


def test_newest_in_a_batch_plays_others_superseded(world):
    for i in range(3):
        world.send(id=f"m{i}")
    assert world.consumer.poll_once()
    assert world.played == ["m2"]
    assert world.outcome_of("m0") == ["superseded"] == world.outcome_of("m1")
    assert world.outcome_of("m2") == ["applied"]
    assert world.queue.peek() == []


def test_expired_from_sent_at_else_insertion_time(world):
    old = (world.wall_now - timedelta(seconds=1000)).isoformat()
    world.send(id="old", sent_at=old)
    world.send(id="short", ttl=30, sent_at=(world.wall_now - timedelta(seconds=60)).isoformat())
    world.consumer.poll_once()
    assert world.outcome_of("old") == ["expired"] and world.outcome_of("short") == ["expired"]
    world.send(id="queued-long-ago")
    world.wall_now += timedelta(seconds=901)
    world.consumer.poll_once()
    assert world.outcome_of("queued-long-ago") == ["expired"]
    assert world.played == []
    reason = world.history.page(1)[0].reason
    assert "901 s old; the limit is 900 s" == reason


def test_duplicate_ids_are_not_played_twice(world):
    world.send(id="once")
    world.consumer.poll_once()
    world.send(id="once")
    world.consumer.poll_once()
    assert world.played == ["once"]
    assert world.outcome_of("once") == ["duplicate", "applied"]


def test_a_redelivered_message_is_only_deleted(world):
    world.send(id="x")
    (message,) = world.queue.receive(visibility_timeout=0)
    world.consumer.handle([message])
    assert world.played == ["x"]
    # The delete "failed" (crash before it): the same queue message comes back.
    world.queue.put(message.body)  # and, separately, a new copy with the same id
    from pillowd.queues import QueueMessage
    comeback = QueueMessage(message.id, message.body, 2, message.inserted_on, "stale")
    world.consumer.handle([comeback])
    assert world.played == ["x"] and world.outcome_of("x") == ["applied"]
    world.consumer.poll_once()  # the new copy is a duplicate
    assert world.outcome_of("x") == ["duplicate", "applied"]


def test_too_many_deliveries_go_to_poison(world):
    world.queue.put("{not json")
    for _ in range(3):
        taken = world.queue.receive(visibility_timeout=0)
    # dequeue_count is now 3 > max 2: poisoned without even decoding.
    world.queue.release(taken[0])
    world.consumer.poll_once()
    (poisoned,) = world.poison.peek()
    wrapper = json.loads(poisoned.body)
    assert wrapper["original"] == "{not json" and wrapper["dequeue_count"] == 4
    assert "delivered 4 times" in wrapper["reason"]
    assert world.queue.peek() == []


def test_history_failure_leaves_the_message_on_the_queue(world, tmp_path):
    world.send(id="kept")
    world.history.close()  # writing now fails, as a full or broken disk would
    world.history = History(tmp_path / "h2.sqlite3")
    world.history.close()
    consumer = world.make()
    with pytest.raises(HistoryError):  # run() shows it as the queue's offline reason
        consumer.poll_once()
    assert world.played == [] and world.outcomes == []
    world.wall_now += timedelta(seconds=5)  # released for a short while, then back
    (back,) = world.queue.receive()
    assert back.body == json.dumps({"scene": "hug", "id": "kept"})


def test_backoff_grows_to_the_ceiling_and_resets():
    now = [0.0]
    b = Backoff(0.1, 5.0, linger=10, rng=random.Random(1), clock=lambda: now[0])
    assert b.next(True) == 0.1
    now[0] = 5
    assert b.next(False) == 0.1  # still lingering after a message
    now[0] = 11
    waits = []
    for _ in range(12):
        waits.append(b.next(False))
    assert waits[0] < waits[1] < waits[2] < waits[3]
    assert waits[-1] == 5.0 and max(waits) == 5.0
    assert b.next(True) == 0.1
    assert min(b.failed() for _ in range(10)) >= 0.1
    assert b.failed() == 5.0


def test_newest_by_sent_at_plays_whatever_order_the_queue_gives(world):
    later = world.wall_now - timedelta(seconds=5)
    earlier = world.wall_now - timedelta(seconds=50)
    world.send(id="sent-later", sent_at=later.isoformat())
    world.send(id="sent-earlier", sent_at=earlier.isoformat())
    world.consumer.poll_once()
    assert world.played == ["sent-later"]
    assert world.outcome_of("sent-earlier") == ["superseded"]


def test_a_bug_in_decoding_one_message_does_not_hold_up_the_batch(world):
    def decode_or_fail(body):
        if "boom" in body:
            raise KeyError("a bug")
        return decode(body, SETTINGS)
    consumer = world.make()
    consumer.decode = decode_or_fail
    world.send(id="boom")
    world.send(id="fine")
    consumer.poll_once()
    assert world.played == ["fine"]
    (poisoned,) = world.poison.peek()
    assert "internal error: KeyError" in json.loads(poisoned.body)["reason"]


def test_a_local_queue_row_that_is_not_utf8_is_rejected_and_the_next_plays(world):
    import sqlite3
    db = sqlite3.connect(world.store.path)  # another writer, leaving bytes not UTF-8
    now = world.wall_now.timestamp()
    with db:
        db.execute("INSERT INTO messages (id, queue, body, inserted_on, expires_on,"
                   " visible_at) VALUES ('raw', 'pillow', CAST(? AS TEXT), ?, ?, ?)",
                   (b"\xff\xfe{scene", now, now + 600, now))
    db.close()
    world.send(id="after")
    assert world.consumer.poll_once()
    assert world.played == ["after"]
    (rejected,) = [o for o in world.history.page(10) if o.outcome == "rejected"]
    assert rejected.queue_message_id == "raw" and "neither JSON" in rejected.reason
    assert json.loads(world.poison.peek()[0].body)["original"] == "\ufffd\ufffd{scene"


def test_a_rejected_message_is_recorded_under_the_id_its_sender_gave(world):
    world.queue.put(json.dumps({"scene": "no-such-scene", "id": "sent-by-me"}))
    bad_id = world.queue.put(json.dumps({"scene": "nope", "id": "bad\x1b[2Jid"}))
    long_id = world.queue.put(json.dumps({"scene": "nope", "id": "x" * 1000}))
    world.consumer.poll_once()
    assert world.outcome_of("sent-by-me") == ["rejected"]
    # An id that cannot be shown safely is not taken: the queue's own id stands in.
    assert world.outcome_of(bad_id) == ["rejected"] == world.outcome_of(long_id)


class RefusingPoison:
    """A poison queue that refuses every copy, as a revoked or deleted one does."""

    def __init__(self, error):
        self.error = error
        self.tries = 0

    def put(self, body, ttl=None):
        self.tries += 1
        raise self.error


def test_a_message_that_cannot_be_poisoned_is_set_aside_alone_and_ends_at_max_deliveries(
        world):
    from pillowd.queues import QueueAuthError
    consumer = world.make()
    consumer.poison = RefusingPoison(QueueAuthError("azure: the token was refused (403)"))
    world.queue.put("{not json")
    world.send(id="good")
    consumer.poll_once()
    assert world.played == ["good"]              # the rest of its batch played
    (bad,) = world.queue.peek() or [None]        # hidden: set aside, not deleted
    assert bad is None
    world.wall_now += timedelta(seconds=31)      # its visibility timeout ends
    consumer.poll_once()                         # delivery 2 = max_dequeue_count: ends
    assert world.queue.peek() == [] and consumer.poison.tries == 2
    world.wall_now += timedelta(seconds=31)
    assert world.queue.receive() == []           # never comes back
    (rejected,) = [o for o in world.history.page(10) if o.outcome == "rejected"]
    assert not rejected.poisoned and "neither JSON" in rejected.reason


def test_a_poison_queue_that_is_only_unreachable_is_waited_out(world):
    from pillowd.queues import QueueUnavailable
    consumer = world.make()
    consumer.poison = RefusingPoison(QueueUnavailable("cannot reach the poison queue"))
    world.queue.put("{not json")
    for _ in range(4):
        consumer.poll_once()
        world.wall_now += timedelta(seconds=31)
    (back,) = world.queue.peek()                 # still there, past max deliveries
    assert back.dequeue_count == 4
    consumer.poison = world.poison               # the outage ends
    consumer.poll_once()
    assert world.queue.peek() == [] and len(world.poison.peek()) == 1
