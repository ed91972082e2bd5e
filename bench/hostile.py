"""A hostile LAN against the status page (issue 20): half-sent requests, abandoned
sessions, big refused bodies, idle connections at the file limit, guessed tokens.

    .venv/bin/python bench/hostile.py [--rows half,sessions,bodies,files,tokens]

Each row starts its own real `pillowd run` (mock hardware, local queue, control
token set) on loopback, attacks it within fixed bounds, and prints what it measured
against the issue's goal. Run it with another checkout's venv to measure that code
(the daemon is `python -m pillowd` of the interpreter running this script), e.g. the
code before the issue:

    git worktree add /tmp/hostile-before 71c18eb   # plus a venv of its own
    /tmp/hostile-before/.venv/bin/python bench/hostile.py

Figures: threads and RSS from /proc/PID; CPU from /proc/PID/task/*/schedstat.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from pillowd.testing import PillowProcess

TOKEN = "bench-token-bench-token"
CONFIG = """
[pillow]
name = "bench-pillow"
state_dir = "{state}"
[queue]
backend = "local"
[hardware]
backend = "mock"
[leds]
count = 60
[web]
host = "127.0.0.1"
port = 0
[scenes.idle]
effect = "solid"
color = "#202040"
"""
CAP = 96  # the connection cap of pillowd.webserver, for the threads goal


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / 1e9


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def get_ms(url: str, timeout: float = 5.0) -> float:
    """One GET's time in ms; a failure or timeout counts as the timeout."""
    t0 = time.monotonic()
    try:
        requests.get(url, timeout=timeout)
    except requests.RequestException:
        return timeout * 1000
    return (time.monotonic() - t0) * 1000


def address(p: PillowProcess) -> tuple[str, int]:
    host, port = p.url.split("//")[1].rstrip("/").split(":")
    return host, int(port)


def settle(pid: int, seconds: float = 2.0) -> int:
    time.sleep(seconds)
    return threads(pid)


# -- rows ---------------------------------------------------------------------------

def half_sent(p: PillowProcess) -> None:
    pid, state = p.pid, p.url + "api/state"
    for _ in range(5):
        get_ms(state)
    resting, rss0 = settle(pid), rss_mb(pid)
    held = []
    for _ in range(300):
        try:
            s = socket.create_connection(address(p), timeout=5)
            s.sendall(b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")
            held.append(s)
        except OSError:
            pass
    opened = time.monotonic()
    time.sleep(1.0)
    times = sorted(get_ms(state) for _ in range(100))
    peak_threads, peak_rss = threads(pid), rss_mb(pid)
    p99 = times[98]
    # Held on, never finished: does the server let them go by itself?
    dropped = None
    while time.monotonic() - opened < 35:
        if threads(pid) <= resting:
            dropped = time.monotonic() - opened
            break
        time.sleep(0.25)
    for s in held:
        s.close()
    t0, back = time.monotonic(), None
    while time.monotonic() - t0 < 60:
        if threads(pid) <= resting:
            back = time.monotonic() - t0
            break
        time.sleep(0.25)
    print(f"300 half-sent requests held ({len(held)} connected):")
    print(f"  GET /api/state p50 {times[49]:.0f} ms, p99 {p99:.0f} ms "
          f"(goal ≤ 250) {verdict(p99 <= 250)}")
    print(f"  threads {resting} at rest, {peak_threads} held "
          f"(goal ≤ cap {CAP} + 16) {verdict(peak_threads <= CAP + 16)}")
    print(f"  RSS +{peak_rss - rss0:.1f} MB (goal ≤ 20) {verdict(peak_rss - rss0 <= 20)}")
    shown = f"{dropped:.1f} s" if dropped is not None else "not within 35 s"
    print(f"  while still held, the server let them go after: {shown}")
    shown = f"{back:.1f} s" if back is not None else "not within 60 s"
    print(f"  back to {resting} threads after they closed: {shown} "
          f"(goal ≤ 30 s) {verdict(back is not None and back <= 30)}")


def sessions(p: PillowProcess) -> None:
    pid, base = p.pid, p.url + "socket.io/?EIO=4&transport=polling"
    resting, rss0 = settle(pid), rss_mb(pid)
    sids, peak_threads, t0 = [], resting, time.monotonic()
    session = requests.Session()
    for i in range(2000):
        # From 250 loopback addresses, so the per-address handshake rate is not
        # all that is measured.
        source = f"127.0.2.{i % 250 + 1}"
        try:
            with socket.create_connection(address(p), timeout=5,
                                          source_address=(source, 0)) as s:
                s.sendall(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n"
                          b"Host: 127.0.0.1\r\n\r\n")
                answer = b""
                while chunk := s.recv(65536):
                    answer += chunk
            text = answer.decode("utf-8", "replace")
            if text.startswith("HTTP/1.1 200"):
                sids.append(json.loads(text[text.index("{"):text.rindex("}") + 1])["sid"])
        except (OSError, ValueError):
            pass
        if i % 100 == 0:
            peak_threads = max(peak_threads, threads(pid))
    elapsed = time.monotonic() - t0
    peak_rss = rss_mb(pid)
    alive = sum(session.post(base + f"&sid={sid}", data=b"1", timeout=5).status_code == 200
                for sid in sids)
    print(f"2,000 abandoned polling sessions ({len(sids)} opened in {elapsed:.1f} s):")
    print(f"  sessions alive at the end {alive} (goal: never above the cap, 64) "
          f"{verdict(alive <= 64)}")
    print(f"  threads {resting} at rest, up to {peak_threads} during")
    print(f"  RSS +{peak_rss - rss0:.1f} MB (goal ≤ 10) {verdict(peak_rss - rss0 <= 10)}")


def bodies(p: PillowProcess) -> None:
    pid = p.pid
    resting, rss0 = settle(pid), rss_mb(pid)
    size, chunk = 50_000_000, b"x" * 1_000_000
    closes, taken, peak = [], [], rss0
    for _ in range(10):
        s = socket.create_connection(address(p), timeout=10)
        s.sendall(b"POST /api/scene HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % size)
        headers_at = time.monotonic()
        sent = [0]

        def send():
            try:
                while sent[0] < size:
                    s.sendall(chunk)
                    sent[0] += len(chunk)
            except OSError:
                pass

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        closed_at = None
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
        except OSError:
            pass
        closed_at = time.monotonic()
        sender.join(30)
        peak = max(peak, rss_mb(pid))
        s.close()
        closes.append(closed_at - headers_at)
        taken.append(sent[0])
    after = rss_mb(pid)
    print("ten 50 MB POSTs without a token:")
    print(f"  closed {max(closes) * 1000:.0f} ms after the headers at worst "
          f"(goal ≤ 1000) {verdict(max(closes) <= 1)}")
    print(f"  body bytes the client got to send: {statistics.mean(taken) / 1e6:.1f} MB "
          "on average (kernel buffers included)")
    print(f"  RSS +{peak - rss0:.1f} MB at most, +{after - rss0:.1f} MB after "
          f"(goal ≤ 5) {verdict(peak - rss0 <= 5)}")


def files(p: PillowProcess) -> None:
    pid = p.pid
    subprocess.run(["prlimit", f"--pid={pid}", "--nofile=256:256"], check=True)
    settle(pid)
    held = []
    for _ in range(300):
        try:  # idle: connected, never a byte
            held.append(socket.create_connection(address(p), timeout=1))
        except OSError:
            pass
    time.sleep(2.0)
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(5.0)
    cpu = 100 * (cpu_seconds(pid) - c0) / (time.monotonic() - t0)
    ms = get_ms(p.url + "healthz", timeout=10)
    for s in held:
        s.close()
    print(f"300 idle connections ({len(held)} connected), file limit 256:")
    print(f"  CPU {cpu:.1f} % of a core (goal ≤ 5) {verdict(cpu <= 5)}")
    answered = ms < 10_000
    print(f"  /healthz {'answered in %.0f ms' % ms if answered else 'no answer in 10 s'} "
          f"{verdict(answered)}")


def tokens(p: PillowProcess) -> None:
    url, seconds = p.url + "api/quiet", 15.0
    session, checked, refused = requests.Session(), 0, 0
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < seconds:
        n += 1
        status = session.post(url, json={}, timeout=5,
                              headers={"Authorization": f"Bearer guess-{n:016d}"}).status_code
        checked += status == 401
        refused += status == 429
    elapsed = time.monotonic() - t0
    per_minute = checked / elapsed * 60
    print(f"wrong tokens from one address for {elapsed:.0f} s ({n} sent, {n / elapsed:.0f}/s):")
    print(f"  checked {per_minute:.0f} per minute, {refused} refused unchecked (429) "
          f"(goal ≤ 20 per minute) {verdict(per_minute <= 20)}")


ROWS = {"half": half_sent, "sessions": sessions, "bodies": bodies, "files": files,
        "tokens": tokens}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS))
    options = parser.parse_args(argv)
    import pillowd
    print(f"pillowd from {Path(pillowd.__file__).parent}\n")
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text(CONFIG.format(state=Path(tmp) / "state"))
        env = {**os.environ, "PILLOWD_CONTROL_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
        for name in options.rows.split(","):
            daemon = PillowProcess(config, env).start()
            try:
                ROWS[name](daemon)
            finally:
                daemon.stop()
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
