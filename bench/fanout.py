"""Status page fan-out: how fast a state change reaches 50 live clients, and what it costs the render loop."""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from pillowd.testing import PillowProcess
from pillowd.testing.config import pillow_config

TOKEN = "bench-token-bench-token"


def config_text(state, leds, fps) -> str:
    return pillow_config(state,
                         queue={"poll_min_seconds": 0.1, "poll_max_seconds": 1.0},
                         leds={"count": leds, "brightness": 0.6, "fps": fps},
                         scenes={"idle": {"effect": "breathe", "color": "#202040"},
                                 "hug": {"effect": "breathe",
                                         "color": "#ff6ec7",
                                         "duration": 0}})


def clients(url: str, count: int, ready, results, stop, process: int = 0) -> None:
    """One process of *count* Socket.IO clients; reports (change, latency) pairs.

    Several processes, so that the clients' own GIL does not pass for server delay;
    time.monotonic() is one clock for every process on Linux. Each client connects
    from its own loopback address, as pages on a LAN do (the pillow serves at most
    8 sessions to one address)."""
    import socket
    from urllib.parse import urlsplit

    import socketio
    server = urlsplit(url)

    # python-socketio's client handles each Engine.IO message in its own thread, so
    # under load a frame's binary attachment can overtake its header: counted, not printed.
    errors = [0]

    def count_error(hook_args):
        errors[0] += 1

    threading.excepthook = count_error
    sessions = []
    frames = [0]
    for _ in range(count):
        sock = socket.create_connection(
            (server.hostname, server.port), timeout=20,
            source_address=(f"127.1.{process + 1}.{len(sessions) + 1}", 0))
        client = socketio.Client(reconnection=False, websocket_extra_options={"socket": sock})
        seen: set[str] = set()

        def state(s, seen=seen):
            now = time.monotonic()
            text = (s.get("message") or {}).get("text") or ""
            if text.startswith("change-") and text not in seen:
                seen.add(text)
                results.put((text, now))

        def frame(data):
            frames[0] += 1

        client.on("state", state, namespace="/pillow")
        client.on("frame", frame, namespace="/pillow")
        client.connect(url, namespaces=["/pillow"], transports=["websocket"],
                       wait_timeout=20)
        sessions.append(client)
    ready.put(count)
    first, since = frames[0], time.monotonic()
    stop.wait()
    rate = (frames[0] - first) / (time.monotonic() - since) / count
    results.put(("frames", (rate, errors[0])))
    for client in sessions:
        client.disconnect()


def render_fps(url: str) -> float | None:
    text = requests.get(url + "metrics", timeout=5).text
    m = re.search(r"^pillowd_render_fps (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--changes", type=int, default=40)
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between changes")
    parser.add_argument("--leds", type=int, default=60)
    parser.add_argument("--fps", type=int, default=50)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text(config_text(state=Path(tmp) / "state", leds=args.leds,
                                        fps=args.fps))
        env = {**os.environ, "PILLOWD_CONTROL_TOKEN": TOKEN}
        with PillowProcess(config, env) as daemon:
            return measure(daemon.start().url, args)


def measure(url: str, args) -> int:
    ctx = mp.get_context("spawn")
    ready, results, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    per = [args.clients // args.processes + (i < args.clients % args.processes)
           for i in range(args.processes)]
    workers = [ctx.Process(target=clients, args=(url, n, ready, results, stop, i))
               for i, n in enumerate(per) if n]
    for w in workers:
        w.start()
    connected = sum(ready.get(timeout=120) for _ in workers)
    time.sleep(1.5)  # let the render-fps window settle with everyone connected

    fps_samples: list[float] = []
    sampling = threading.Event()

    def sample():
        while not sampling.wait(0.5):
            value = render_fps(url)
            if value:
                fps_samples.append(value)

    sampler = threading.Thread(target=sample)
    sampler.start()
    sent: dict[str, float] = {}
    session = requests.Session()
    for i in range(args.changes):
        text = f"change-{i}"
        sent[text] = time.monotonic()
        reply = session.post(url + "api/scene", json={"scene": "hug", "text": text},
                             headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        reply.raise_for_status()
        time.sleep(args.interval)
    time.sleep(1.0)  # the last change's stragglers
    sampling.set()
    sampler.join()
    stop.set()

    latencies, rates, errors = [], [], 0
    expected = args.changes * connected
    got = 0
    deadline = time.monotonic() + 30
    finished = 0
    while finished < len(workers) and time.monotonic() < deadline:
        key, value = results.get(timeout=30)
        if key == "frames":
            rates.append(value[0])
            errors += value[1]
            finished += 1
        else:
            latencies.append((value - sent[key]) * 1000)
            got += 1
    missing = expected - got
    for w in workers:
        w.join(10)

    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    fps_mean = statistics.fmean(fps_samples) if fps_samples else float("nan")
    fps_min = min(fps_samples) if fps_samples else float("nan")
    print(f"clients: {connected} in {len(workers)} processes; {args.changes} state "
          f"changes (POST /api/scene) every {args.interval * 1000:.0f} ms; "
          f"{args.leds} LEDs at {args.fps} fps target")
    print(f"state change -> client: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
          f"max {latencies[-1]:.1f} ms ({len(latencies)} deliveries, {missing} missing)")
    print(f"render loop meanwhile: mean {fps_mean:.1f} fps, min {fps_min:.1f} fps "
          f"({fps_mean / args.fps * 100:.0f} % / {fps_min / args.fps * 100:.0f} % of "
          f"target, {len(fps_samples)} samples of pillowd_render_fps)")
    print(f"frames received: {statistics.fmean(rates):.1f} per client per second "
          f"(client-side decode races in python-socketio: {errors})")
    print(f"targets: p99 <= 100 ms, fps >= 95 % of {args.fps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
