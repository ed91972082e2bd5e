"""The daemon speaks systemd's notify protocol: READY only when serving, and a
watchdog that goes quiet when a loop freezes."""

import socket
import threading
import time

import pytest

from conftest import PillowProcess, wait_for
from pillowd.config import load
from pillowd.daemon import Daemon


@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.1)
    received = []
    done = threading.Event()

    def read():
        while not done.is_set():
            try:
                data = sock.recv(4096).decode()
            except (socket.timeout, OSError):
                continue
            received.append((time.monotonic(), data))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    yield str(path), received
    done.set()
    reader.join()
    sock.close()


def test_pillowd_run_says_ready_with_a_status_and_stopping(make_config, pillow_env,
                                                           notify_socket):
    path, received = notify_socket
    env = {**pillow_env, "NOTIFY_SOCKET": path}
    p = PillowProcess(make_config(), env).start()
    try:
        ready = wait_for(lambda: next((d for _, d in received if "READY=1" in d), None),
                         message="READY=1")
        # READY comes once the page answers: it was sent after bind and start.
        assert p.get("/healthz").status_code == 200
        assert "STATUS=idle; local queue" in ready
        p.cli("send", "hug", "--from", "Alice")
        wait_for(lambda: any("STATUS=hug from Alice" in d for _, d in received),
                 message="a STATUS line naming the hug")
    finally:
        assert p.stop() == 0
    assert any("STOPPING=1" in d for _, d in received)


def test_status_follows_each_change_at_once_not_at_the_next_ping(make_config, pillow_env,
                                                                notify_socket):
    path, received = notify_socket
    # A ping every five minutes: any status line seen within the test was sent for
    # a change, not carried by a ping.
    env = {**pillow_env, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": str(600 * 10**6)}
    p = PillowProcess(make_config(), env).start()
    try:
        def statuses():
            return [line for _, d in received for line in d.splitlines()
                    if line.startswith("STATUS=")]
        ready = wait_for(lambda: next((d for _, d in received if "READY=1" in d), None),
                         message="READY=1")
        # Before its first poll the queue is not "offline (None)".
        assert "None" not in ready and "offline" not in ready, ready
        wait_for(lambda: any("local queue online" in s for s in statuses()),
                 message="the queue online, said as it happened")
        p.cli("send", "hug", "--from", "Alice")
        wait_for(lambda: any(s.startswith("STATUS=hug from Alice") for s in statuses()),
                 message="the hug, said as it played")
        wait_for(lambda: statuses()[-1].startswith("STATUS=idle"),
                 message="back to idle, said as it happened")
        lines = statuses()  # each new line once: never the same line twice in a row
        assert all(a != b for a, b in zip(lines, lines[1:])), lines
        assert sum("WATCHDOG=1" in d for _, d in received) == 1  # the first ping only
    finally:
        assert p.stop() == 0


def test_watchdog_pings_stop_when_the_render_loop_freezes(make_config, notify_socket,
                                                          pillow_env):
    path, received = notify_socket
    settings = load(make_config())
    env = {**pillow_env, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}
    daemon = Daemon(settings, environ=env)
    frozen = threading.Event()
    thaw = threading.Event()
    render_once = daemon.renderer.render_once

    def render_or_hang(now=None):
        if frozen.is_set():
            thaw.wait()  # fault injection: the loop stops making progress
        render_once(now)

    daemon.renderer.render_once = render_or_hang
    daemon.start()
    try:
        def pings():
            return [t for t, d in received if "WATCHDOG=1" in d]
        wait_for(lambda: len(pings()) >= 3, message="regular watchdog pings")
        frozen.set()
        # A resting loop is well; this wakes it to draw, and the draw hangs.
        daemon.controls.play({"scene": "hug"})
        wait_for(lambda: any("STATUS=Stalled: render loop" in d for _, d in received),
                 timeout=5, message="the stall reported")
        silent_from = time.monotonic()
        count = len(pings())
        time.sleep(1.0)  # five ping intervals: none may come while frozen
        assert len(pings()) == count
        assert daemon.health.reasons()  # /healthz would say 503 too
        thaw.set()
        frozen.clear()
        wait_for(lambda: [t for t in pings() if t > silent_from], message="pings again")
    finally:
        thaw.set()
        daemon.close()
