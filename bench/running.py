"""The daemon at rest: CPU, wake-ups, frames pushed and cost per frame, against the goals.

    .venv/bin/python bench/running.py [--seconds 30] [--leds 60]

Runs a real `pillowd run` (default config but mock hardware, local queue, no
message) twice: with the breathing idle scene and with a static one. For each it
measures, over --seconds and after a warm-up, with no page open and then with one
python-socketio client on /pillow:

- CPU: the sum of every thread's run time from /proc/PID/task/*/schedstat
  (nanoseconds, not the 10 ms ticks of /proc/PID/stat), as % of one core;
- wake-ups: context switches of all threads (voluntary + involuntary, from
  /proc/PID/task/*/status) per second;
- frames pushed to the client per second (Socket.IO `frame` events);
- with a live animation (candle: noise, no cycle to replay, every frame computed),
  the render thread's CPU per rendered frame, against the LED pipeline's own time
  (effect + LightOutput, the same work without the loop) measured in this run.

A periodic scene (breathe) is computed for one cycle and then replayed: the loop
wakes only when the strip must change, so "rendered" counts those wake-ups.

It also prints every thread's name as `ps -L -o comm` shows it.

`--rows fitted` measures the static scene with no page three ways: with the trouble
cue turned off (`[cue] enabled = false`), with it on guard (the default, nothing
wrong), and with a squeeze sensor fitted (`[squeeze]`: on mock hardware, a mock
MCP3008 that gpiozero reads over its software SPI on mock pins, untouched), each
against the first; with each part's own thread (pillowd-cue, pillowd-squeeze).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests
import socketio

from pillowd.leds.effects import EFFECTS
from pillowd.leds.light import LightOutput
from pillowd.testing import PillowProcess
from pillowd.testing.azurite import Azurite
from pillowd.testing.config import pillow_config


def config_text(state, leds, effect) -> str:
    return pillow_config(state,
                         leds={"count": leds},
                         scenes={"idle": {"effect": effect, "color": "#202040"},
                                 "hug": {"effect": "breathe",
                                         "color": "#ff6ec7",
                                         "duration": 10}})


GOALS = {  # issue 16, on this machine
    ("candle", False): {},
    ("breathe", False): {"cpu": 0.5},
    ("solid", False): {"cpu": 0.05, "wakeups": 5},
    ("breathe", True): {"cpu": 0.5, "frames": 20},
    ("solid", True): {"cpu": 0.05, "wakeups": 5, "frames": 0},
}


def tasks(pid: int) -> dict[int, dict]:
    """Per thread: name, ns of CPU and context switches so far."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            ns = int((task / "schedstat").read_text().split()[0])
            status = (task / "status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile
        switches = sum(int(m) for m in re.findall(
            r"^(?:non)?voluntary_ctxt_switches:\s+(\d+)", status, re.M))
        found[int(task.name)] = {"comm": comm, "ns": ns, "switches": switches}
    return found


def frames_rendered(url: str) -> float:
    text = requests.get(url + "metrics", timeout=5).text
    m = re.search(r"^pillowd_render_frames_total (\S+)", text, re.M)
    return float(m.group(1)) if m else float("nan")


def measure(daemon: PillowProcess, seconds: float) -> dict:
    before, frames0, t0 = tasks(daemon.pid), frames_rendered(daemon.url), time.monotonic()
    time.sleep(seconds)
    after, frames1, t1 = tasks(daemon.pid), frames_rendered(daemon.url), time.monotonic()
    elapsed = t1 - t0
    both = [tid for tid in after if tid in before]
    cpu_ns = sum(after[t]["ns"] - before[t]["ns"] for t in both)
    switches = sum(after[t]["switches"] - before[t]["switches"] for t in both)
    render = [t for t in both if after[t]["comm"] == "pillowd-render"]
    render_ns = sum(after[t]["ns"] - before[t]["ns"] for t in render)
    frames = frames1 - frames0
    return {"cpu": 100 * cpu_ns / 1e9 / elapsed, "wakeups": switches / elapsed,
            "frame_us": render_ns / 1e3 / frames if render and frames > 0 else None,
            "rendered": frames / elapsed,
            "busiest": sorted(((after[t]["ns"] - before[t]["ns"]) / 1e6 / elapsed,
                               after[t]["comm"]) for t in both)[-3:][::-1]}


def pipeline_us(effect_name: str, count: int, frames: int = 2000) -> float:
    """The LED pipeline's own time per frame: effect + brightness, gamma, power limit."""
    effect = EFFECTS[effect_name]
    params = effect.resolve({"color": "#202040"})
    light = LightOutput(count, brightness=0.6, max_milliamps=2000)
    runs = []
    for r in range(5):
        t, start = 1000.0 + r, time.perf_counter()
        for _ in range(frames):
            light.render(effect(t, count, params), 1.0)
            t += 0.02
        runs.append((time.perf_counter() - start) / frames * 1e6)
    return statistics.median(runs)


def page_client(url: str) -> tuple[socketio.Client, list]:
    frames: list[float] = []
    client = socketio.Client(reconnection=False)
    client.on("frame", lambda data: frames.append(time.monotonic()), namespace="/pillow")
    client.connect(url, namespaces=["/pillow"], transports=["websocket"])
    return client, frames


def verdict(value, goal, lower_is_better=True) -> str:
    if goal is None or value is None:
        return ""
    ok = value <= goal if lower_is_better else value >= goal
    return f"(goal ≤ {goal}: {'met' if ok else 'MISSED'})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--leds", type=int, default=60)
    parser.add_argument("--warmup", type=float, default=4)
    parser.add_argument("--rows", default="rest,fitted,blinking",
                        help="rest (the scenes, with and without a page), fitted "
                             "(the cue and the squeeze sensor at rest), blinking "
                             "(the cue showing: queue unreachable)")
    options = parser.parse_args(argv)
    rows = set(options.rows.split(","))
    print(f"pillowd at rest: {options.leds} LEDs, mock hardware, local queue, "
          f"{options.seconds:.0f} s per figure, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cores\n")
    for effect in ("breathe", "solid", "candle") if "rest" in rows else ():
        own = pipeline_us(effect, options.leds)
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "config.toml"
            config.write_text(config_text(state=f"{tmp}/state", leds=options.leds,
                                            effect=effect))
            daemon = PillowProcess(config).start()
            try:
                time.sleep(options.warmup)
                if effect == "breathe":
                    names = sorted(t["comm"] for t in tasks(daemon.pid).values())
                    print("threads (ps -L -o comm):", ", ".join(names), "\n")
                for watched in (False, True) if effect != "candle" else (False,):
                    client = frames = None
                    if watched:
                        client, frames = page_client(daemon.url)
                        time.sleep(options.warmup / 2)
                        frames.clear()
                    m = measure(daemon, options.seconds)
                    pushed = len(frames) / options.seconds if watched else None
                    if client is not None:
                        client.disconnect()
                    goal = GOALS[(effect, watched)]
                    kind = {"breathe": "idle breathing", "solid": "static",
                            "candle": "live animation (candle)"}[effect]
                    label = f"{kind} scene, {'one page open' if watched else 'no page'}"
                    print(label)
                    print(f"  CPU        {m['cpu']:7.3f} % of one core "
                          f"{verdict(round(m['cpu'], 3), goal.get('cpu'))}")
                    print(f"  wake-ups   {m['wakeups']:7.1f} /s "
                          f"{verdict(round(m['wakeups'], 1), goal.get('wakeups'))}")
                    if watched:
                        print(f"  frames     {pushed:7.1f} /s pushed "
                              f"{verdict(round(pushed, 1), goal.get('frames'))}")
                    print(f"  rendered   {m['rendered']:7.1f} frames/s")
                    if m["frame_us"] is not None and effect == "candle":
                        ratio = m["frame_us"] / own
                        print(f"  per frame  {m['frame_us']:7.1f} µs of render-thread CPU, "
                              f"pipeline alone {own:.1f} µs: {ratio:.2f}× "
                              f"{verdict(round(ratio, 2), 2.0)}")
                    print("  busiest    " + ", ".join(f"{name} {ms:.2f} ms/s"
                                                     for ms, name in m["busiest"]))
                    print()
            finally:
                daemon.stop()
    if "fitted" in rows:
        fitted(options)
    if "blinking" in rows:
        blinking(options)
    return 0


def blinking(options) -> None:
    """The render loop while the cue blinks over a static scene: the pillow's queue
    unreachable (Azure at a closed port), [cue] offline_seconds = 1, the default
    period (one blink every 10 s). Against the same scene with nothing wrong, the
    render thread should wake twice a period (the LED on, then off)."""
    print("the cue blinking over a static scene, no page (queue unreachable)\n")
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        text = config_text(state=f"{tmp}/state", leds=options.leds, effect="solid")
        config.write_text(text.replace('backend = "local"', 'backend = "azure"\nname = "bench"', 1)
                          + "[cue]\noffline_seconds = 1\n")
        # Azurite's well-known account, at the discard port: nothing listens.
        closed = Azurite(Path(tmp), port=9).connection_string()
        daemon = PillowProcess(config, {**os.environ,
                                        "AZURE_STORAGE_CONNECTION_STRING": closed}).start()
        try:
            deadline = time.monotonic() + 30
            while requests.get(daemon.url + "api/state", timeout=5).json().get("cue") \
                    != "offline" and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(options.warmup)
            before = tasks(daemon.pid)
            m = measure(daemon, options.seconds)
            after = tasks(daemon.pid)
        finally:
            daemon.stop()
    for name in ("pillowd-render", "pillowd-cue", "pillowd-queue"):
        ids = [t for t in after if t in before and after[t]["comm"] == name]
        ms = sum(after[t]["ns"] - before[t]["ns"] for t in ids) / 1e6 / options.seconds
        wakes = sum(after[t]["switches"] - before[t]["switches"] for t in ids) / options.seconds
        print(f"  {name:<15} {ms:.3f} ms/s of CPU, {wakes:.2f} wake-ups/s")
    print(f"  whole daemon    {m['cpu']:.3f} % of one core, {m['wakeups']:.1f} wake-ups/s, "
          f"{m['rendered']:.2f} frames/s rendered\n")


FITTED = {  # label: what the config adds; issue 27's goals against the first
    "static, [cue] enabled = false": "[cue]\nenabled = false\n",
    "static, cue on guard (nothing wrong)": "",
    "static, squeeze sensor fitted, untouched": "[squeeze]\nthreshold = 0.3\n",
}
FITTED_GOALS = {"static, squeeze sensor fitted, untouched": {"cpu": 0.3, "wakeups": 10}}


def fitted(options) -> None:
    """The cue and the squeeze sensor at rest, each against the pillow without them."""
    print("the trouble cue and the squeeze sensor at rest (static scene, no page)\n")
    base = None
    for label, extra in FITTED.items():
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "config.toml"
            config.write_text(config_text(state=f"{tmp}/state", leds=options.leds,
                                            effect="solid") + extra)
            daemon = PillowProcess(config).start()
            try:
                time.sleep(options.warmup)
                before = tasks(daemon.pid)
                m = measure(daemon, options.seconds)
                after = tasks(daemon.pid)
            finally:
                daemon.stop()
        own = {after[t]["comm"]: (after[t]["ns"] - before[t]["ns"]) / 1e6 / options.seconds
               for t in after if t in before
               and after[t]["comm"] in ("pillowd-cue", "pillowd-squeeze")}
        own_wakes = {after[t]["comm"]: (after[t]["switches"] - before[t]["switches"])
                     / options.seconds for t in after if t in before
                     and after[t]["comm"] in ("pillowd-cue", "pillowd-squeeze")}
        print(label)
        print(f"  CPU        {m['cpu']:7.3f} % of one core")
        print(f"  wake-ups   {m['wakeups']:7.1f} /s")
        for name in sorted(own):
            print(f"  {name:<16} {own[name]:.3f} ms/s of CPU "
                  f"({own[name] / 10:.4f} % of a core), {own_wakes[name]:.1f} wake-ups/s")
        if base is None:
            base = m
        else:
            goal = FITTED_GOALS.get(label, {})
            cpu, wakes = m["cpu"] - base["cpu"], m["wakeups"] - base["wakeups"]
            print(f"  against the first: CPU {cpu:+.3f} % "
                  f"{verdict(round(cpu, 3), goal.get('cpu'))}, "
                  f"wake-ups {wakes:+.1f} /s {verdict(round(wakes, 1), goal.get('wakeups'))}")
        print()


if __name__ == "__main__":
    sys.exit(main())
