"""Crash consistency: a real `pillowd run` SIGKILLed again and again loses and repeats nothing."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
from collections import Counter

from conftest import BASE_CONFIG, PillowProcess, both_backends, wait_for

import pillowd.queues.local as local

MESSAGES = 1000
KILLS = 20
# Fast polling and a short visibility timeout, so messages a killed daemon had
# taken come back within the test; a high dequeue limit, so twenty kills cannot
# push a valid message to poison.
CRASH_CONFIG = BASE_CONFIG.replace(
    "poll_max_seconds = 0.5\nmax_dequeue_count = 3",
    "poll_max_seconds = 0.2\nmax_dequeue_count = 50\nvisibility_timeout_seconds = 1\n"
    "batch_size = 8").replace("poll_min_seconds = 0.05", "poll_min_seconds = 0.01")


def message(i: int) -> str:
    """Message *i*: mostly valid, every 40th one malformed (it must end up in poison)."""
    if rejected(i):
        return json.dumps({"scene": "hug", "id": f"m{i}", "brightness": 7})
    return json.dumps({"scene": ("hug", "glow")[i % 2], "id": f"m{i}", "from": "crash",
                       "text": f"message {i}"})


def rejected(i: int) -> bool:
    return i % 40 == 7  # 25 of 1000: a peek (at most 32) sees the whole poison queue


def queued(config, backend, queue_name, pillow_env) -> int:
    """Messages still on the main queue, visible or not."""
    if backend == "azure":
        from azure.storage.queue import QueueClient
        client = QueueClient.from_connection_string(
            pillow_env["AZURE_STORAGE_CONNECTION_STRING"], queue_name)
        with client:
            return client.get_queue_properties().approximate_message_count
    db = sqlite3.connect(config.parent / "state" / "queue.sqlite3", timeout=10)
    try:
        return db.execute("SELECT COUNT(*) FROM messages WHERE queue = ?",
                          (queue_name,)).fetchone()[0]
    finally:
        db.close()


@both_backends
def test_sigkill_at_random_moments_loses_nothing_and_plays_nothing_twice(
        make_config, pillow_env, queues, backend, queue_name):
    seed = int(os.environ.get("PILLOWD_CRASH_SEED", random.randrange(2 ** 32)))
    rng = random.Random(seed)
    print(f"crash test seed {seed} (PILLOWD_CRASH_SEED to repeat)")
    config = make_config(base=CRASH_CONFIG)
    state = config.parent / "state"
    process = PillowProcess(config, pillow_env).start()

    sent: dict[str, str] = {}  # queue message id -> the message's own id
    done = threading.Event()

    queue = queues(config).main  # the sender: another writer, as `pillowd send` is

    def send():
        try:
            for i in range(MESSAGES):
                sent[queue.put(message(i))] = f"m{i}"
                if done.wait(rng.uniform(0, 0.04)):
                    break
        finally:
            done.set()

    sender = threading.Thread(target=send, name="sender")
    sender.start()
    kills = 0
    try:
        while kills < KILLS or not done.is_set():
            # Kill while it works: right after start, mid-batch, between polls.
            done.wait(rng.uniform(0.05, 0.8))
            process.kill()
            kills += 1
            process.start()
    finally:
        done.set()
        sender.join()

    assert len(sent) == MESSAGES, "the sender stopped early"
    assert kills >= KILLS
    # The last daemon drains the queue: taken-then-killed messages reappear after
    # the visibility timeout and are settled now.
    wait_for(lambda: queued(config, backend, queue_name, pillow_env) == 0, timeout=90,
             message="the queue to drain")
    poisoned = [json.loads(json.loads(m.body)["original"])["id"]
                for m in queues(config).poison.peek(32)]
    served = process.state()
    process.stop()

    history = sqlite3.connect(state / "history.sqlite3")
    try:
        # A rejected message has no readable id of its own: it is known by its
        # queue message id, which maps every row back to what was sent.
        rows = [(sent.get(q, q), o) for q, o in history.execute(
            "SELECT queue_message_id, outcome FROM outcomes")]
    finally:
        history.close()
    outcomes_per_id = Counter(i for i, _ in rows)
    applied_per_id = Counter(i for i, o in rows if o == "applied")
    by_outcome = Counter(o for _, o in rows)
    print(f"{backend}: {kills} kills; outcomes {dict(by_outcome)}; "
          f"poison copies {len(poisoned)}")

    lost = set(sent.values()) - set(outcomes_per_id)
    assert not lost, f"{len(lost)} messages lost: {sorted(lost)[:10]}"
    assert set(outcomes_per_id) == set(sent.values())
    twice = {i: n for i, n in applied_per_id.items() if n > 1}
    assert not twice, f"applied twice: {twice}"
    repeated = {i: n for i, n in outcomes_per_id.items() if n > 1}
    assert not repeated, f"more than one outcome: {repeated}"

    rejected_ids = {i for i, o in rows if o == "rejected"}
    assert rejected_ids == {f"m{i}" for i in range(MESSAGES) if rejected(i)}
    # Every rejected message is kept in poison for a person to look at.
    assert set(poisoned) == rejected_ids
    assert by_outcome["applied"] + by_outcome["superseded"] == MESSAGES - len(rejected_ids)
    assert by_outcome["applied"] > 0
    # What the page shows agrees with the file.
    assert {k: served["queue"][k] for k in by_outcome} == dict(by_outcome)


def test_every_acknowledged_write_is_synced_to_disk(tmp_path):
    """SIGKILL cannot show it, a power cut would: WAL with synchronous=NORMAL may
    roll back the last commits, e.g. a poison copy the history already calls made."""
    from pillowd.history import History
    store = local.LocalStore(tmp_path / "queue.sqlite3")
    history = History(tmp_path / "history.sqlite3")
    try:
        for db in (store._db, history._db):
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        store.close()
        history.close()
