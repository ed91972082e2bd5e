"""Outages: the queue or the history out of reach; the pillow stays up, says why, and loses nothing."""

from __future__ import annotations

import re
import sqlite3
from contextlib import contextmanager

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
    p = pillow()
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
        assert p.get("/healthz").status_code == 200
        assert 0 < poll_interval(p) <= POLL_MAX
    back = wait_for(lambda: (s := p.state())["queue"]["online"] and
                    s["queue"]["applied"] == 2 and s, timeout=30,
                    message="the glow played after the lock")
    assert back["recent"][0]["from"] == "during" and back["queue"]["reason"] is None
    assert [m for m in p.cli("poison", "list").stdout.splitlines() if sent in m] == []


def test_queue_locked_reports_offline_with_reason_then_recovers(pillow):
    p = pillow()
    state = p.config.parent / "state"
    p.cli("send", "hug", "--from", "before")
    wait_for(lambda: p.state()["queue"]["applied"] == 1, message="the first hug")
    with locked(state / "queue.sqlite3"):
        offline = wait_for(lambda: (s := p.state())["queue"]["online"] is False and s,
                           timeout=30, message="offline while the queue is locked")
        assert "locked" in offline["queue"]["reason"]
        assert p.get("/healthz").status_code == 200
        assert 0 < poll_interval(p) <= POLL_MAX
    p.cli("send", "glow", "--from", "after")
    wait_for(lambda: (s := p.state())["queue"]["online"] and s["queue"]["applied"] == 2,
             timeout=30, message="online again, the glow played")
