"""Home Assistant over MQTT on loopback: light command → LEDs changed, and applied
message → MQTT publish, with the goals beside the figures.

    .venv/bin/python bench/mqtt.py [--rounds 200]

Needs Debian's mosquitto (`make test-deps` installs it). The figures:

1. light command → LEDs changed: a paho client publishes a JSON light command
   (a new colour of a solid scene with no cross-fade) and times the first Socket.IO
   `frame` event (the real LED bytes, after brightness and power limiting) that
   differs from the frame before. Includes the render loop's next frame and the
   page's frame pacing (at most 20 a second; rounds are spaced 60-150 ms apart).
2. message applied → published: a message from a new sender is put on the local
   queue; the figure runs from its `at` in /api/history (written when the outcome
   is stamped, just before its synchronous=FULL write to the history and its log
   line) to the paho subscriber receiving the last-sender state, on the same clock:
   on a busy disk that write is most of the tail. Beside it, the same message's
   `received` hug event (the Player's on_played -> HomeAssistant.played()).
3. hug() → event received: HomeAssistant.hug() called in this process (its own
   MQTT thread, the same broker) to the subscriber receiving the event.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as paho
import requests
import socketio
from paho.mqtt.enums import CallbackAPIVersion

from pillowd.homeassistant import HomeAssistant
from pillowd.messages import encode
from pillowd.queues.local import LocalStore
from pillowd.testing import PillowProcess
from pillowd.testing.config import pillow_config
from pillowd.testing.mosquitto import Mosquitto

TOPIC = "pillowd/bench-pillow"


def config_text(state, port) -> str:
    return pillow_config(state,
                         queue={"poll_min_seconds": 0.05, "poll_max_seconds": 0.2},
                         leds={"brightness": 1.0},
                         mqtt={"host": "127.0.0.1", "port": port},
                         scenes={"idle": {"effect": "solid", "color": "#000010"},
                                 "bench": {"effect": "solid",
                                           "color": "#ff0000",
                                           "duration": 0,
                                           "transition_seconds": 0}})


class Subscriber:
    """A paho client recording (wall time, topic, payload) of everything under TOPIC."""

    def __init__(self, port: int):
        self.got: list[tuple[float, str, bytes]] = []
        self.cond = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2)
        ready = threading.Event()
        self.client.on_connect = lambda c, *a: c.subscribe(f"{TOPIC}/#", qos=1)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        ready.wait(10)

    def _message(self, client, userdata, message) -> None:
        with self.cond:
            self.got.append((time.time(), message.topic, message.payload))
            self.cond.notify_all()

    def wait(self, topic: str, payload: bytes, timeout: float = 5.0) -> float:
        """Wall time *payload* arrived on *topic*."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for at, t, p in reversed(self.got):
                    if t == topic and p == payload:
                        return at
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"nothing on {topic}")
                self.cond.wait(left)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Frames:
    """The status page's `frame` events with their arrival (monotonic) times."""

    def __init__(self, url: str):
        self.frames: list[tuple[float, bytes]] = []
        self.cond = threading.Condition()
        self.client = socketio.Client(reconnection=False)
        self.client.on("frame", self._frame, namespace="/pillow")
        self.client.connect(url, namespaces=["/pillow"], transports=["websocket"])

    def _frame(self, data) -> None:
        with self.cond:
            self.frames.append((time.monotonic(), bytes(data)))
            self.cond.notify_all()

    def first_change_after(self, since: float, before: bytes, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for at, frame in self.frames:
                    if at >= since and frame != before:
                        return at, frame
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the LEDs did not change")
                self.cond.wait(left)

    def last(self) -> bytes:
        with self.cond:
            return self.frames[-1][1]

    def close(self) -> None:
        self.client.disconnect()


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99


def report(what: str, samples: list[float], goal_ms: float | None) -> None:
    p50, p99 = percentiles(samples)
    goal = "" if goal_ms is None else \
        f" (goal p99 <= {goal_ms:.0f} ms: {'meets' if p99 * 1000 <= goal_ms else 'MISSES'})"
    print(f"{what}: {len(samples)} rounds, p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
          f"max {max(samples) * 1000:.1f} ms{goal}", flush=True)


def light_to_leds(port: int, url: str, rounds: int, rng: random.Random) -> list[float]:
    publisher = paho.Client(CallbackAPIVersion.VERSION2)
    publisher.connect("127.0.0.1", port)
    publisher.loop_start()
    frames = Frames(url)
    samples = []
    try:
        publisher.publish(f"{TOPIC}/light/set", json.dumps(
            {"state": "ON", "effect": "bench", "color": {"r": 1, "g": 2, "b": 3}}), qos=1)
        time.sleep(0.5)  # settle on the bench scene before the first round
        for n in range(rounds):
            before = frames.last()
            colour = {"r": rng.randrange(256), "g": rng.randrange(256), "b": n % 256}
            sent = time.monotonic()
            publisher.publish(f"{TOPIC}/light/set",
                              json.dumps({"state": "ON", "effect": "bench", "color": colour}),
                              qos=1)
            at, _ = frames.first_change_after(sent, before)
            samples.append(at - sent)
            time.sleep(rng.uniform(0.06, 0.15))  # past the page's frame tick
    finally:
        frames.close()
        publisher.disconnect()
        publisher.loop_stop()
    return samples


def applied_to_published(state: Path, url: str, subscriber: Subscriber, rounds: int,
                         rng: random.Random) -> tuple[list[float], list[float], list[float]]:
    """(applied -> MQTT subscriber, applied -> Socket.IO `state` client, applied ->
    `received` event) per round: the second, on the page's path from the same
    change, tells what comes before MQTT (the history write) from MQTT's own share."""
    store = LocalStore(state / "queue.sqlite3")
    queue = store.queue("pillow")
    page: dict[str, float] = {}
    seen = threading.Condition()

    def on_state(snapshot) -> None:
        sender = (snapshot.get("message") or {}).get("from")
        with seen:
            if sender and sender not in page:
                page[sender] = time.time()
                seen.notify_all()
    client = socketio.Client(reconnection=False)
    client.on("state", on_state, namespace="/pillow")
    client.connect(url, namespaces=["/pillow"], transports=["websocket"])
    mqtt, web, events = [], [], []
    try:
        for n in range(rounds):
            sender = f"Alice-{n}"
            queue.put(encode({"scene": "bench", "from": sender, "id": f"bench-{n}"}))
            received = subscriber.wait(f"{TOPIC}/last_sender/state", sender.encode())
            event = subscriber.wait(f"{TOPIC}/hug", json.dumps(
                {"event_type": "received", "from": sender, "text": None}).encode())
            with seen:
                seen.wait_for(lambda: sender in page, 5)
            item = requests.get(url + "api/history?limit=1", timeout=5).json()["items"][0]
            assert item["id"] == f"bench-{n}", item
            applied = datetime.fromisoformat(item["at"].replace("Z", "+00:00")).timestamp()
            mqtt.append(received - applied)
            web.append(page[sender] - applied)
            events.append(event - applied)
            time.sleep(rng.uniform(0.02, 0.1))
    finally:
        client.disconnect()
        store.close()
    return mqtt, web, events


def hug_to_event(port: int, subscriber: Subscriber, rounds: int,
                 rng: random.Random) -> list[float]:
    snapshot = {"scene": "idle", "leds": {"brightness": 1.0}, "quiet": False, "recent": []}
    pillow = HomeAssistant(
        host="127.0.0.1", port=port, username=None, password=None, tls=False,
        ca_file=None, discovery_prefix="bench-ha", topic=f"{TOPIC}/inproc",
        pillow_name="bench-inproc", version="bench", page_url="", scenes=["idle"],
        controls=None, snapshot=lambda: snapshot)
    pillow.start()
    samples = []
    try:
        deadline = time.monotonic() + 10
        while not pillow.status["online"] and time.monotonic() < deadline:
            time.sleep(0.01)
        for n in range(rounds):
            event = {"event_type": "received", "from": f"Bob-{n}", "text": None}
            called = time.time()
            pillow.hug("received", f"Bob-{n}")
            received = subscriber.wait(f"{TOPIC}/inproc/hug", json.dumps(event).encode())
            samples.append(received - called)
            time.sleep(rng.uniform(0.005, 0.03))
    finally:
        pillow.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    rng = random.Random(15)
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
        tmp = Path(tmp)
        broker = Mosquitto(tmp / "broker").start()
        port = broker.port
        state = tmp / "state"
        config = tmp / "config.toml"
        config.write_text(config_text(state=state, port=port))
        subscriber = Subscriber(port)
        try:
            with PillowProcess(config).start() as pillowd:
                url = pillowd.url
                deadline = time.monotonic() + 10
                while not (requests.get(url + "api/state", timeout=5).json()
                           .get("mqtt") or {}).get("online"):
                    if time.monotonic() > deadline:
                        raise SystemExit("pillowd did not connect to the broker")
                    time.sleep(0.05)
                report("light command -> LEDs changed (Socket.IO frame)",
                       light_to_leds(port, url, args.rounds, rng), 100)
                mqtt, web, events = applied_to_published(state, url, subscriber,
                                                         args.rounds, rng)
                report("message applied -> last-sender state at subscriber", mqtt, 50)
                report("  the same change -> Socket.IO state (for comparison)", web, None)
                report("message applied -> `received` hug event at subscriber", events, 50)
            report("HomeAssistant.hug() -> event at subscriber (in process)",
                   hug_to_event(port, subscriber, args.rounds, rng), 50)
        finally:
            subscriber.close()
            broker.stop()


if __name__ == "__main__":
    main()
