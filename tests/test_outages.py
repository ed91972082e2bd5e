"""Outages: the queue or the history out of reach; the pillow stays up, says why, and loses nothing."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from contextlib import contextmanager

import pytest
import requests

from conftest import wait_for

POLL_MAX = 0.5  # the test config's poll_max_seconds


@contextmanager
def locked(path):
    """Another process's exclusive lock on a SQLite file, as a stuck writer would hold."""
    db = sqlite3.connect(path, timeout=10, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        db.execute("ROLLBACK")
        db.close()


def poll_interval(p) -> float:
    text = p.get("/metrics").text
    return float(re.search(r"^pillowd_poll_interval_seconds (\S+)", text, re.M).group(1))


def test_history_locked_reports_offline_with_reason_then_recovers(pillow):
    p = pillow(env={"PILLOWD_CONTROL_TOKEN": "t-t-t-t-t-t-t-t-t"})
    state = p.config.parent / "state"
    p.cli("send", "hug", "--from", "before")
    wait_for(lambda: p.state()["queue"]["applied"] == 1, message="the first hug")
    with locked(state / "history.sqlite3"):
        sent = p.cli("send", "glow", "--from", "during").stdout.strip()
        # SQLite's busy timeout (10 s) passes before the write gives up.
        offline = wait_for(lambda: (s := p.state())["queue"]["online"] is False and s,
                           timeout=30, message="offline while the history is locked")
        assert "history" in offline["queue"]["reason"]
        assert "locked" in offline["queue"]["reason"]
        assert offline["queue"]["applied"] == 1
        # The pillow's own trouble: unhealthy (it takes no messages), unlike an
        # outage of the queue, which is not the pillow's to fix.
        health = p.get("/healthz")
        assert health.status_code == 503 and "locked" in " ".join(health.json()["reasons"])
        assert 0 < poll_interval(p) <= POLL_MAX
        # A play from the page cannot be recorded either: refused, with the reason.
        refused = requests.post(p.url + "api/scene", json={"scene": "hug"}, timeout=30,
                                headers={"Authorization": "Bearer t-t-t-t-t-t-t-t-t"})
        assert refused.status_code == 503 and "locked" in refused.json()["error"]
    back = wait_for(lambda: (s := p.state())["queue"]["online"] and
                    s["queue"]["applied"] == 2 and s, timeout=30,
                    message="the glow played after the lock")
    assert back["recent"][0]["from"] == "during" and back["queue"]["reason"] is None
    # Nothing was rejected for the lock: the poison queue stays empty, and the
    # history has the glow under the id `send` printed.
    assert back["queue"]["rejected"] == 0
    assert p.cli("poison", "list").stdout.strip() == "the poison queue is empty"
    assert back["recent"][0]["id"] == sent


def test_queue_locked_reports_offline_with_reason_then_recovers(pillow):
    p = pillow()
    state = p.config.parent / "state"
    p.cli("send", "hug", "--from", "before")
    wait_for(lambda: p.state()["queue"]["applied"] == 1, message="the first hug")
    # A message that becomes visible a second after the lock is taken: taking it
    # needs the write lock (an empty queue is only looked at, which WAL allows).
    db = sqlite3.connect(state / "queue.sqlite3", timeout=10, isolation_level=None)
    db.execute("INSERT INTO messages (id, queue, body, inserted_on, expires_on, visible_at)"
               " VALUES ('late', 'pillow', ?, ?, ?, ?)",
               (json.dumps({"scene": "glow", "from": "after", "id": "late"}),
                time.time(), time.time() + 600, time.time() + 1))
    db.close()
    with locked(state / "queue.sqlite3"):
        offline = wait_for(lambda: (s := p.state())["queue"]["online"] is False and s,
                           timeout=30, message="offline while the queue is locked")
        assert "locked" in offline["queue"]["reason"]
        assert p.get("/healthz").status_code == 200
        assert 0 < poll_interval(p) <= POLL_MAX
        assert p.state()["queue"]["applied"] == 1
    back = wait_for(lambda: (s := p.state())["queue"]["online"] and
                    s["queue"]["applied"] == 2 and s, timeout=30,
                    message="online again, the late glow played")
    assert back["recent"][0]["id"] == "late"


# -- Azure: a server that takes requests and never answers -------------------------

@pytest.mark.parametrize("backend", ["azure"], indirect=True)
def test_azurite_hanging_is_offline_timed_out_and_loses_nothing(pillow, azurite, queue_name):
    """Behind a live socket, no answer: each poll gives up after the backend's read
    timeout; the page says so, /healthz stays 200, and what was sent during the hang
    plays once the server answers again."""
    from azure.storage.queue import QueueClient
    from pillowd.testing.faultproxy import FaultProxy
    with FaultProxy(azurite.port) as proxy, QueueClient.from_connection_string(
            azurite.connection_string(), queue_name) as sender:  # the sender goes direct
        p = pillow(env={"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string(
            proxy.endpoint("/devstoreaccount1"))})
        wait_for(lambda: p.state()["queue"]["online"], message="online")
        sender.send_message(json.dumps({"scene": "hug", "id": "before", "from": "before"}))
        wait_for(lambda: p.state()["queue"]["applied"] == 1, message="the first hug")
        proxy.hang(True)
        sent = [f"during-{n}" for n in range(3)]
        for ident in sent:
            sender.send_message(json.dumps({"scene": "glow", "id": ident, "from": ident}))
        offline = wait_for(lambda: (s := p.state())["queue"]["online"] is False and s,
                           timeout=60, message="offline while Azurite hangs")
        assert "timed out" in offline["queue"]["reason"]
        assert p.proc.poll() is None and p.get("/healthz").status_code == 200
        assert offline["queue"]["applied"] == 1
        proxy.hang(False)
        wait_for(lambda: (s := p.state())["queue"]["online"] and
                 s["queue"]["applied"] + s["queue"]["superseded"] == 4,
                 timeout=60, message="the messages sent during the hang")
        history = p.get("/api/history", params={"limit": 100}).json()["items"]
        assert sorted(o["id"] for o in history) == sorted(["before", *sent])
        assert "Traceback" not in "".join(p.output)
