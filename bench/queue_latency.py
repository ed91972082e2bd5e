"""Pickup latency and idle cost of the Azure queue consumer, measured against Azurite.

Runs a real `pillowd run` on the Azure backend (Azurite from node_modules, with a
counting proxy from pillowd.testing.faultproxy between the daemon and Azurite) and prints:

- pickup latency: from `send_message` returning to a python-socketio client receiving
  the `state` event for that message; BENCH_MESSAGES (200) messages at random
  spacing (0.05-0.5 s), poll_min_seconds = 0.1. Targets: p50 <= 75 ms, p99 <= 150 ms.
- idle cost: queue requests the daemon makes while idle at the shipped config,
  counted by the proxy over BENCH_IDLE_SECONDS (150 s) after the post-message linger
  has passed, extrapolated to an hour; the longest gap between idle polls; and the
  pickup latency of a first message after that idle window. Targets: <= 720
  requests/hour, first pickup <= poll_max_seconds + 0.2 s.

Prints figures, asserts nothing: `make bench` or `.venv/bin/python bench/queue_latency.py`.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import socketio
from azure.storage.queue import QueueClient

from pillowd.testing import PillowProcess
from pillowd.testing.azurite import Azurite
from pillowd.testing.config import pillow_config
from pillowd.testing.faultproxy import FaultProxy
from pillowd.testing.measure import percentile

MESSAGES = int(os.environ.get("BENCH_MESSAGES", 200))
IDLE_SECONDS = float(os.environ.get("BENCH_IDLE_SECONDS", 150))
QUEUE = "bench"


def config_text(state, queue) -> str:
    return pillow_config(state,
                         queue={"backend": "azure", "name": queue},
                         scenes={"idle": {"effect": "solid", "color": "#000010"},
                                 "hug": {"effect": "solid",
                                         "color": "#ff0000",
                                         "duration": 0}})


class Arrivals:
    """A socketio client noting when each message's `state` event arrived."""

    def __init__(self, url: str):
        self.seen: dict[str, float] = {}
        self.changed = threading.Condition()
        self.client = socketio.Client(reconnection=False)
        self.client.on("state", self._state, namespace="/pillow")
        self.client.connect(url, namespaces=["/pillow"], transports=["websocket"],
                            wait_timeout=10)

    def _state(self, state):
        now = time.monotonic()
        sender = (state.get("message") or {}).get("from")
        if sender and sender not in self.seen:
            with self.changed:
                self.seen[sender] = now
                self.changed.notify_all()

    def wait(self, sender: str, timeout: float = 30) -> float | None:
        with self.changed:
            self.changed.wait_for(lambda: sender in self.seen, timeout)
        return self.seen.get(sender)


def send(client: QueueClient, tag: str) -> float:
    client.send_message(json.dumps({"scene": "hug", "from": tag, "id": tag}))
    return time.monotonic()


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-queue-"))
    azurite = Azurite(work / "azurite").start()
    proxy = FaultProxy(azurite.port)
    config = work / "config.toml"
    config.write_text(config_text(state=work / "state", queue=QUEUE))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "PILLOWD_"))}
    env["AZURE_STORAGE_CONNECTION_STRING"] = azurite.connection_string(
        proxy.endpoint("/devstoreaccount1"))
    daemon = PillowProcess(config, env)
    sender = QueueClient.from_connection_string(azurite.connection_string(), QUEUE)
    try:
        url = daemon.start().url
        arrivals = Arrivals(url)
        rng = random.Random(1)

        # -- pickup latency while messages flow ---------------------------------
        # One message first, not counted: the daemon starts idle, so its first
        # pickup is the idle case measured below, not the flowing one.
        send(sender, "warm-up")
        arrivals.wait("warm-up")
        latencies, lost = [], 0
        for n in range(MESSAGES):
            time.sleep(rng.uniform(0.05, 0.5))
            tag = f"flow-{n}"
            sent = send(sender, tag)
            arrived = arrivals.wait(tag)
            if arrived is None:
                lost += 1
            else:
                latencies.append((arrived - sent) * 1000)
        print(f"queue_latency: pickup latency over {len(latencies)} messages (after one "
              f"uncounted warm-up) at random "
              f"spacing 0.05-0.5 s (poll_min_seconds 0.1): "
              f"p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms, "
              f"max {max(latencies):.1f} ms, mean {statistics.mean(latencies):.1f} ms"
              f"{f', {lost} not seen' if lost else ''} (targets: p50 <= 75, p99 <= 150)")

        # -- idle cost at the shipped config ------------------------------------
        time.sleep(10 + 12)  # the 10 s linger, then the ramp up to poll_max
        proxy.reset_counts()
        started = time.monotonic()
        time.sleep(IDLE_SECONDS)
        window = time.monotonic() - started
        times = list(proxy.times)
        per_hour = len(times) / window * 3600
        gaps = [b - a for a, b in zip(times, times[1:])]
        print(f"queue_latency: idle cost: {len(times)} queue requests in {window:.0f} s "
              f"counted by a proxy outside the daemon = {per_hour:.0f} requests/hour "
              f"extrapolated (target <= 720); longest gap between polls "
              f"{max(gaps) if gaps else float('nan'):.2f} s")

        # -- the first message after the idle window ----------------------------
        firsts = []
        for trial in range(3):
            if trial:
                time.sleep(10 + 12 + rng.uniform(0, 5))  # idle again, at the ceiling
            tag = f"first-{trial}"
            sent = send(sender, tag)
            arrived = arrivals.wait(tag)
            firsts.append((arrived - sent) if arrived else float("inf"))
        print(f"queue_latency: first pickup after {window:.0f} s idle: {firsts[0]:.2f} s; "
              f"after re-idling at the ceiling: "
              f"{', '.join(f'{f:.2f}' for f in firsts[1:])} s; worst {max(firsts):.2f} s "
              f"(target <= poll_max_seconds 5 + 0.2 = 5.2 s; the worst case is the "
              f"longest idle gap above plus one pickup)")
        arrivals.client.disconnect()
    finally:
        sender.close()
        daemon.stop()
        proxy.close()
        azurite.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
