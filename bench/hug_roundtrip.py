"""Hug round trips between two paired pillows on Azurite, at the default poll settings.

Starts Azurite (node_modules, `make test-deps`), pairs alice and bob with
`pillowd pair` (the account key is Azurite's well-known one), runs two real
`pillowd run` daemons on what pair wrote (each on its own SAS tokens, no account
key), with poll_min_seconds 0.1 and poll_max_seconds 5 (the defaults), and prints:

- idle requests: queue receives per hour per idle pillow, from /metrics
  `pillowd_queue_requests_total` over BENCH_IDLE_SECONDS (180) once both are backed
  off; and while a pillow waits for a hug back (polling at poll_min for
  reply_window_seconds after sending), over BENCH_HURRY_SECONDS (30);
- press -> partner: POST /api/hug on alice until bob's /api/state shows the event,
  bob idle (backed off to poll_max, and the press at a random point of his poll
  cycle), over BENCH_ROUNDS (20) rounds. Goal: p99 <= 5.5 s;
- press -> "delivered": the same presses, until alice's /api/state shows bob's
  receipt (last_sent.partners.bob.delivered). Goal: p99 <= poll_max + 1.5 s;
- hug back -> sender: alice hugs, bob plays it, then POST /api/hug on bob until
  alice's /api/state shows it as a reply. Goal: p50 <= 1 s, p99 <= 1.5 s;
- queue requests per hug, receipts included: alice's receives while she waits for
  an answer (measured rate, over the window counted from when her hug played on
  bob: reply_window_seconds plus the measured press -> play delay), less the idle
  polls they replace, plus the receipt's add (bob) and delete (alice). Goal:
  <= 1.05 x 5,460 (the figure before receipts).

- press-and-hold -> partner plays (`--hold`, alone): a hug held h seconds (random,
  0.1..30) is sent on its release, as the page's button sends it (POST /api/hug
  {"hold": h, "strength": x}); timed from the release until bob's /api/state shows
  it playing with its hold, for max(2, h x 2) seconds at its strength, bob idle as
  above, over BENCH_ROUNDS rounds. Goal: the same p99 <= 5.5 s as a tap.

The pillows share a family key (in queue-sas.toml, where `pair` keeps it), so the
hugs are signed and answered with receipts.

Prints figures with their goals, asserts nothing:
`.venv/bin/python bench/hug_roundtrip.py [--hold]` from the repository root.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import requests

from pillowd.family import TOKENS_ENTRY, FamilyKey
from pillowd.testing import PillowProcess
from pillowd.testing.azurite import Azurite
from pillowd.testing.config import toml
from pillowd.testing.measure import percentile
from pillowd.testing.wait import wait_for as _wait_for

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 20))
IDLE_SECONDS = float(os.environ.get("BENCH_IDLE_SECONDS", 180))
HURRY_SECONDS = float(os.environ.get("BENCH_HURRY_SECONDS", 30))
TOKEN = "bench-token-bench-token"
POLL_MAX = 5.0
WINDOW = 600.0           # [button] reply_window_seconds, shipped
BEFORE_RECEIPTS = 5460   # queue requests per hug before receipts (docs/pairing.md)

REST_OF_CONFIG = toml({
    "hardware": {"backend": "mock"},
    "web": {"host": "127.0.0.1", "port": 0},
    "scenes.idle": {"effect": "solid", "color": "#000010"},
    "scenes.hug": {"effect": "solid", "color": "#ff0000", "duration": 2},
    "scenes.hugged": {"effect": "solid", "color": "#ffb347", "duration": 1},
})


wait_for = partial(_wait_for, timeout=30.0, interval=0.01, error=SystemExit)


class Daemon(PillowProcess):
    """A `pillowd run` (pillowd.testing's harness) with what this benchmark reads."""

    def metric(self, name: str) -> float:
        text = requests.get(self.url + "metrics", timeout=5).text
        return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))

    def hug(self, **felt) -> str:
        answer = requests.post(self.url + "api/hug", timeout=5, json=felt,
                               headers={"Authorization": f"Bearer {TOKEN}"})
        answer.raise_for_status()
        return answer.json()["id"]


def shows(daemon: Daemon, ident: str, reply: bool | None = None) -> bool:
    message = daemon.state()["message"]
    return bool(message and message["id"] == ident
                and (reply is None or message["reply"] is reply))


def delivered(daemon: Daemon, ident: str) -> bool:
    sent = daemon.state().get("last_sent")
    return bool(sent and sent["id"] == ident and sent["partners"]["bob"]["delivered"])


def seconds(at: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


def backed_off(daemon: Daemon) -> bool:
    # The back-off's jitter is clipped at the ceiling: exactly poll_max once idle.
    return daemon.metric("pillowd_poll_interval_seconds") >= POLL_MAX


def requests_per_hour(daemons, seconds: float) -> list[float]:
    before = [d.metric("pillowd_queue_requests_total") for d in daemons]
    start = time.monotonic()
    time.sleep(seconds)  # the measurement is of elapsed time
    elapsed = time.monotonic() - start
    after = [d.metric("pillowd_queue_requests_total") for d in daemons]
    return [(a - b) / elapsed * 3600 for a, b in zip(after, before)]


def plays_held(daemon: Daemon, ident: str, hold: float, strength: float) -> bool:
    state = daemon.state()
    message = state["message"]
    if not (message and message["id"] == ident):
        return False
    length = seconds(state["until"]) - seconds(state["since"])
    return (message.get("hold"), message.get("strength")) == (hold, strength) and \
        abs(length - max(2.0, hold * 2)) < 0.01


def held_hugs(alice: Daemon, bob: Daemon) -> int:
    """Release of a held hug -> the partner plays it, held (see the docstring)."""
    release = []
    for _ in range(ROUNDS):
        wait_for(lambda: backed_off(bob), timeout=60, interval=0.2, message="bob idle")
        time.sleep(random.uniform(0, POLL_MAX))
        hold, strength = round(random.uniform(0.1, 30), 2), round(random.uniform(0.1, 1), 2)
        start = time.monotonic()
        ident = alice.hug(hold=hold, strength=strength)
        wait_for(lambda: plays_held(bob, ident, hold, strength), interval=0.005,
                 message="alice's held hug playing on bob")
        release.append(time.monotonic() - start)
    print(f"press-and-hold (released) -> partner plays it held, partner idle "
          f"({ROUNDS} rounds): p50 {statistics.median(release):.2f} s, "
          f"p99 {percentile(release, 99):.2f} s, max {max(release):.2f} s "
          f"(goal p99 <= 5.5 s)", flush=True)
    return 0


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="hug-bench-"))
    try:
        azurite = Azurite(work / "azurite").start()
    except (FileNotFoundError, RuntimeError) as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    daemons: list[Daemon] = []
    try:
        owner = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_",
                                                                          "PILLOWD_"))}
        owner["AZURE_STORAGE_CONNECTION_STRING"] = azurite.connection_string()
        subprocess.run([sys.executable, "-m", "pillowd", "pair", "alice", "bob", "--out",
                        str(work / "pair")], env=owner, check=True, capture_output=True)
        pillow_env = {k: v for k, v in owner.items() if not k.startswith("AZURE_")}
        pillow_env.update(PILLOWD_CONTROL_TOKEN=TOKEN, PYTHONUNBUFFERED="1")
        key = FamilyKey.generate().text()
        for name in ("alice", "bob"):
            tokens = work / "pair" / name / "queue-sas.toml"
            if f"{TOKENS_ENTRY} =" not in tokens.read_text():  # `pair` writes none yet
                tokens.write_text(tokens.read_text() + f'{TOKENS_ENTRY} = "{key}"\n')
        for name in ("alice", "bob"):
            config = work / "pair" / name / "queue.toml"
            text = config.read_text().replace(
                "[pillow]\n", f'[pillow]\nstate_dir = "{work / name}"\n')
            config.write_text(text + REST_OF_CONFIG)
            daemons.append(Daemon(config, pillow_env).start(timeout=30))
        alice, bob = daemons

        print(f"bench: two pillows on Azurite, poll_min 0.1 s, poll_max {POLL_MAX} s, "
              f"reply window 600 s (defaults)", flush=True)
        if "--hold" in sys.argv[1:]:
            return held_hugs(alice, bob)
        wait_for(lambda: all(map(backed_off, daemons)), timeout=60, message="idle")
        idle = requests_per_hour(daemons, IDLE_SECONDS)
        per_pillow = statistics.mean(idle)
        print(f"idle queue requests per hour per pillow: {per_pillow:.0f} "
              f"(alice {idle[0]:.0f}, bob {idle[1]:.0f}; over {IDLE_SECONDS:.0f} s; "
              f"goal <= 720, one receive per poll_max)", flush=True)

        press, receipt, played_after = [], [], []
        for _ in range(ROUNDS):
            # bob idle: backed off to poll_max, and the press at a random point of his
            # poll cycle (he never sends here, so he never hurries).
            wait_for(lambda: backed_off(bob), timeout=60, interval=0.2,
                     message="bob idle")
            time.sleep(random.uniform(0, POLL_MAX))
            start = time.monotonic()
            ident = alice.hug()
            wait_for(lambda: shows(bob, ident), message="alice's hug on bob")
            press.append(time.monotonic() - start)
            wait_for(lambda: delivered(alice, ident), message="bob's receipt on alice")
            receipt.append(time.monotonic() - start)
            sent = alice.state()["last_sent"]
            played_after.append(seconds(sent["partners"]["bob"]["delivered"])
                                - seconds(sent["at"]))
        print(f"press -> partner's snapshot, partner idle ({ROUNDS} rounds): "
              f"p50 {statistics.median(press):.2f} s, p99 {percentile(press, 99):.2f} s "
              f"(goal p99 <= 5.5 s)", flush=True)
        print(f"press -> \"delivered\" on the sender's snapshot ({ROUNDS} rounds): "
              f"p50 {statistics.median(receipt):.2f} s, p99 {percentile(receipt, 99):.2f} s "
              f"(goal p99 <= poll_max + 1.5 = {POLL_MAX + 1.5:.1f} s)", flush=True)

        back = []
        for _ in range(ROUNDS):
            ident = alice.hug()
            wait_for(lambda: shows(bob, ident), message="alice's hug on bob")
            time.sleep(random.uniform(0, 0.1))  # anywhere in alice's fast poll cycle
            start = time.monotonic()
            answer = bob.hug()
            wait_for(lambda: shows(alice, answer, reply=True), message="the hug back")
            back.append(time.monotonic() - start)
        print(f"hug back -> sender's snapshot ({ROUNDS} rounds): "
              f"p50 {statistics.median(back):.2f} s, p99 {percentile(back, 99):.2f} s "
              f"(goal p50 <= 1 s, p99 <= 1.5 s)", flush=True)

        # Both sent hugs just now: each polls at poll_min until 600 s after its last.
        (hurry,) = requests_per_hour([alice], HURRY_SECONDS)
        print(f"queue requests per hour while waiting for a hug back: {hurry:.0f} "
              f"(over {HURRY_SECONDS:.0f} s; {hurry / 6:.0f} per 600 s reply window)",
              flush=True)
        # The window is counted from when the hug played on bob (his receipt says
        # when), so alice waits that much longer than the window after the press.
        waited = WINDOW + statistics.mean(played_after)
        per_idle = statistics.mean(idle)
        per_hug = (hurry - per_idle) / 3600 * waited + 2   # + the receipt's add, delete
        print(f"queue requests per hug, receipts included: {per_hug:.0f} "
              f"(fast polling for {waited:.1f} s: the window plus a mean press -> play "
              f"of {statistics.mean(played_after):.2f} s, less the idle polls it "
              f"replaces, plus the receipt's add and delete; goal <= 1.05 x "
              f"{BEFORE_RECEIPTS} = {1.05 * BEFORE_RECEIPTS:.0f})", flush=True)
        return 0
    finally:
        for daemon in daemons:
            daemon.stop()
        azurite.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
