"""Soak: a real pillowd under a steady message stream and page clients; prints resource growth.

    .venv/bin/python bench/soak.py [--minutes 10] [--rate 10] [--clients 10]

Starts `pillowd run` on a temporary config (local queue, mock hardware), connects
--clients python-socketio clients to /pillow (each receives every state event and
up to 20 frames a second), sends --rate messages a second for --minutes, and reads
the daemon's RSS, open fds and threads from /proc at the start (after warm-up) and
the end. Targets: RSS growth <= 5 MB, no fd or thread growth.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import socketio

from pillowd.queues.local import LocalStore
from pillowd.testing import PillowProcess
from pillowd.testing.config import pillow_config


def config_text(state) -> str:
    return pillow_config(state,
                         name="soak-pillow",
                         queue={"poll_min_seconds": 0.05, "poll_max_seconds": 1.0},
                         scenes={"idle": {"effect": "breathe", "color": "#202040"},
                                 "hug": {"effect": "breathe",
                                         "color": "#ff6ec7",
                                         "duration": 2},
                                 "glow": {"effect": "solid",
                                          "color": "#00ff00",
                                          "duration": 1}})


RSS_TARGET_KB = 5 * 1024


def sample(pid: int) -> dict:
    """RSS (kB), open fds and threads of *pid*, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    field = lambda name: int(re.search(rf"^{name}:\s+(\d+)", status, re.M).group(1))  # noqa: E731
    return {"rss_kb": field("VmRSS"), "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": field("Threads")}


class Client:
    """One page: a python-socketio client counting what it receives."""

    def __init__(self, url: str):
        self.states = 0
        self.frames = 0
        self.sio = socketio.Client(reconnection=True)
        self.sio.on("state", self._state, namespace="/pillow")
        self.sio.on("frame", self._frame, namespace="/pillow")
        self.sio.connect(url, namespaces=["/pillow"], transports=["websocket"],
                         wait_timeout=10)

    def _state(self, data):
        self.states += 1

    def _frame(self, data):
        self.frames += 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=float, default=10, help="messages per second")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--warmup", type=float, default=20,
                        help="seconds of load before the first sample")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="pillowd-soak-") as tmp:
        state = Path(tmp) / "state"
        config = Path(tmp) / "config.toml"
        config.write_text(config_text(state=state))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PILLOWD_")}
        daemon = PillowProcess(config, env)
        clients: list[Client] = []
        stop = threading.Event()
        try:
            url = daemon.start().url
            clients = [Client(url) for _ in range(args.clients)]
            sent = [0]

            def send():
                store = LocalStore(state / "queue.sqlite3")
                queue = store.queue("pillow")
                interval, n = 1 / args.rate, 0
                start = time.monotonic()
                while not stop.is_set():
                    n += 1
                    queue.put(json.dumps({"scene": ("hug", "glow")[n % 2], "id": f"soak-{n}",
                                          "from": "soak", "text": f"message {n}"}))
                    sent[0] = n
                    stop.wait(max(0.0, start + n * interval - time.monotonic()))
                store.close()

            sender = threading.Thread(target=send, name="sender")
            sender.start()
            time.sleep(args.warmup)
            first = sample(daemon.pid)
            began = time.monotonic()
            end = began + args.minutes * 60
            print(f"start  rss {first['rss_kb']} kB  fds {first['fds']}  "
                  f"threads {first['threads']}", flush=True)
            while (left := end - time.monotonic()) > 0:
                time.sleep(min(60, left))
                now = sample(daemon.pid)
                print(f"{(time.monotonic() - began) / 60:5.1f} min  rss {now['rss_kb']} kB  "
                      f"fds {now['fds']}  threads {now['threads']}  sent {sent[0]}", flush=True)
            last = sample(daemon.pid)
            stop.set()
            sender.join()
            health = requests.get(url + "healthz", timeout=5).status_code
            snapshot = requests.get(url + "api/state", timeout=5).json()
        finally:
            stop.set()
            for client in clients:
                client.sio.disconnect()
            daemon.stop()

    growth = last["rss_kb"] - first["rss_kb"]
    counts = {k: snapshot["queue"][k] for k in
              ("applied", "superseded", "expired", "duplicate", "rejected")}
    print(f"end    rss {last['rss_kb']} kB  fds {last['fds']}  threads {last['threads']}")
    print(f"soak: {args.minutes:g} min at {args.rate:g} msg/s with {args.clients} clients; "
          f"sent {sent[0]}; outcomes {counts}; healthz {health}")
    print(f"RSS growth {growth / 1024:+.1f} MB (target <= 5 MB), "
          f"fds {first['fds']} -> {last['fds']}, threads {first['threads']} -> {last['threads']}")
    print(f"client events: states {sum(c.states for c in clients)}, "
          f"frames {sum(c.frames for c in clients)}")
    met = (growth <= RSS_TARGET_KB and last["fds"] <= first["fds"]
           and last["threads"] <= first["threads"] and health == 200)
    print("targets met" if met else "TARGETS MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
