"""The embedded queue keeps Azure Storage Queue semantics across processes."""

import subprocess
import sys

import pytest

from pillowd.queues import MessageGone
from pillowd.queues.local import LocalStore


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    s = LocalStore(tmp_path / "q.sqlite3", clock=clock)
    yield s
    s.close()


def test_receive_hides_messages_and_counts_deliveries(store, clock):
    q = store.queue("pillow")
    ids = [q.put(f"m{i}") for i in range(40)]
    first = q.receive(32, visibility_timeout=30)
    assert [m.body for m in first] == [f"m{i}" for i in range(32)]
    assert all(m.dequeue_count == 1 and m.pop_receipt for m in first)
    rest = q.receive(32, visibility_timeout=30)
    assert [m.id for m in rest] == ids[32:]
    assert q.receive() == []
    clock.now += 31
    again = q.receive(32)
    assert len(again) == 32 and {m.dequeue_count for m in again} == {2}


def test_stale_pop_receipt_cannot_delete(store, clock):
    q = store.queue("pillow")
    q.put("hello")
    (old,) = q.receive(visibility_timeout=5)
    clock.now += 6
    (new,) = q.receive(visibility_timeout=5)
    with pytest.raises(MessageGone):
        q.delete(old)
    q.delete(new)
    with pytest.raises(MessageGone):
        q.delete(new)
    assert q.peek() == []


def test_release_makes_it_visible_after_the_delay(store, clock):
    q = store.queue("pillow")
    q.put("later")
    (m,) = q.receive(visibility_timeout=60)
    q.release(m, delay=10)
    assert q.receive() == []
    clock.now += 10
    assert [x.body for x in q.receive()] == ["later"]


def test_ttl_expiry_and_forever(store, clock):
    q = store.queue("pillow")
    q.put("short", ttl=5)
    q.put("forever", ttl=-1)
    q.put("default")
    clock.now += 6
    assert [m.body for m in q.peek()] == ["forever", "default"]
    clock.now += 8 * 24 * 3600
    assert [m.body for m in q.peek()] == ["forever"]


def test_named_queues_are_separate_and_clear(store):
    a, b = store.queue("pillow"), store.queue("pillow-poison")
    a.put("a")
    b.put("b")
    assert [m.body for m in a.peek()] == ["a"]
    b.clear()
    assert b.peek() == [] and len(a.peek()) == 1


def test_another_process_can_put_while_we_receive(tmp_path):
    path = tmp_path / "shared.sqlite3"
    store = LocalStore(path)
    q = store.queue("pillow")
    code = ("from pillowd.queues.local import LocalStore\n"
            f"q = LocalStore({str(path)!r}).queue('pillow')\n"
            "for i in range(50): q.put(str(i))\n")
    writer = subprocess.Popen([sys.executable, "-c", code])
    got = []
    import time
    deadline = time.monotonic() + 20
    while len(got) < 50 and time.monotonic() < deadline:
        for m in q.receive(32):
            got.append(m.body)
            q.delete(m)
    writer.wait(10)
    assert sorted(got, key=int) == [str(i) for i in range(50)]
    store.close()


def _put_raw(store, queue, body: bytes, now):
    """A row as another writer (the sqlite3 shell, a C program) may leave it: TEXT
    whose bytes are not UTF-8, which Python's sqlite3 refuses to read back."""
    import sqlite3
    db = sqlite3.connect(store.path)
    with db:
        db.execute("INSERT OR IGNORE INTO queues VALUES (?)", (queue,))
        db.execute("INSERT INTO messages (id, queue, body, inserted_on, expires_on,"
                   " visible_at) VALUES (?, ?, CAST(? AS TEXT), ?, ?, ?)",
                   ("raw", queue, body, now, now + 3600, now))
    db.close()


def test_a_row_that_is_not_utf8_is_read_with_replacement_and_stops_nothing(store, clock):
    q = store.queue("pillow")
    _put_raw(store, "pillow", b'{"scene": "hug", "text": "caf\xe9 \xff"}', clock.now)
    q.put('{"scene": "hug", "id": "after"}')
    assert [m.body for m in q.peek()] == ['{"scene": "hug", "text": "caf\ufffd \ufffd"}',
                                          '{"scene": "hug", "id": "after"}']
    bad, good = q.receive(32)
    assert bad.id == "raw" and "\ufffd" in bad.body and good.body.endswith('"after"}')
    q.delete(bad)
    q.delete(good)
    assert q.peek() == []
