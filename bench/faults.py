"""The faults a bedroom Pi meets, on two paired pillows: what each showed, how long it took to recover, and what was lost.

Starts Azurite (node_modules, `make test-deps`), pairs alice and bob with `pillowd
pair`, runs both as real `pillowd run` processes on their own SAS tokens (no account
key; the default poll settings, 0.1 to 5 s), and injects, one after another:

- 10 LED write errors in a row (alice's mock strip fails its next 10 writes: a
  `sitecustomize` in alice's PYTHONPATH lets this benchmark arm MockStrip.fail());
- the state disk full for 60 s (alice's state_dir is a 16 MB tmpfs, filled to the
  last byte; needs root, else the row says so), with 3 messages sent meanwhile;
- a token revoked (`pillowd revoke alice` for 30 s, then the owner puts the policies
  back by hand), with a hug pressed on alice meanwhile;
- the partner's queue deleted (bob's, for 30 s, then `pillowd pair alice bob` again
  makes it), with a hug pressed on alice meanwhile;
- a 65,400-byte message from an invite (`pillowd invite carol`, POSTed to the invite
  URL as the friend's page does), followed by three hugs;
- Azurite down for 60 s, with a hug pressed on alice meanwhile;
- SIGKILL under load: 150 messages at ~15/s to alice, killed 3 times (restarted at once);
- a reboot: the `system` check (CI under systemd-nspawn) covers it.

For each it prints what the pillow showed (/healthz, the snapshot's queue, hardware
and, when the snapshot has one, outbox sections), how long until it recovered, and
whether anything was lost, then the table for docs/reliability.md. Asserts nothing.

    .venv/bin/python bench/faults.py            # about 4 minutes
    .venv/bin/python bench/faults.py --quick    # outages of 15 s: about 2 minutes
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import requests

from pillowd.testing import PillowProcess
from pillowd.testing.azurite import Azurite
from pillowd.testing.config import toml
from pillowd.testing.wait import wait_for as _wait_for

TOKEN = "bench-token-0123456789"

REST_OF_CONFIG = toml({
    "hardware": {"backend": "mock"},
    "leds": {"count": 30},
    "web": {"host": "127.0.0.1", "port": 0},
    "scenes.idle": {"effect": "solid", "color": "#000010"},
    "scenes.hug": {"effect": "solid", "color": "#ff0000", "duration": 2},
    "scenes.glow": {"effect": "solid", "color": "#00ff00", "duration": 2},
    "scenes.hugged": {"effect": "solid", "color": "#ffb347", "duration": 1},
})

# Loaded by alice's interpreter at start (PYTHONPATH): writing a number N to the file
# $PILLOWD_BENCH_LED_FAULTS makes her mock strip fail its next N writes.
SITECUSTOMIZE = '''
import os
from pillowd.hardware import mock

_control = os.environ.get("PILLOWD_BENCH_LED_FAULTS")
if _control:
    _show = mock.MockStrip.show

    def show(self, pixels):
        try:
            with open(_control) as f:
                writes = int(f.read())
            os.unlink(_control)
        except (OSError, ValueError):
            pass
        else:
            self.fail(writes)
        _show(self, pixels)

    mock.MockStrip.show = show
'''


# A bench waits longer than a test, and through a daemon's restarts.
wait_for = partial(_wait_for, timeout=60.0, interval=0.05, error=TimeoutError,
                   ignore=(requests.RequestException,))


class Pillow(PillowProcess):
    """A `pillowd run` (pillowd.testing's harness) with what this benchmark reads."""

    def hug(self) -> str:
        answer = requests.post(self.url + "api/hug", timeout=5,
                               headers={"Authorization": f"Bearer {TOKEN}"})
        answer.raise_for_status()
        return answer.json()["id"]

    def outcomes(self) -> dict[str, str]:
        items = self.get("/api/history", params={"limit": 1000}).json()["items"]
        found: dict[str, str] = {}
        for item in reversed(items):  # oldest first: the newest outcome of an id wins
            found[item["id"]] = item["outcome"]
        return found

    def healthy(self) -> bool:
        return self.get("/healthz").status_code == 200

    def showed(self) -> str:
        """What the pillow says now, in one line: health, queue, hardware, outbox."""
        health = self.get("/healthz")
        state = self.state()
        parts = [f"healthz {health.status_code}"]
        if health.status_code != 200:
            parts[0] += f" ({'; '.join(health.json().get('reasons', []))})"
        q = state["queue"]
        parts.append("queue online" if q["online"] else f"queue offline ({q['reason']})")
        hardware = state.get("hardware") or {}
        if not hardware.get("ok", True):
            parts.append(f"hardware: {hardware.get('error')}")
        outbox = state.get("outbox")  # the `hugs` work adds it; read it when there
        if outbox is not None:
            parts.append(f"outbox {json.dumps(outbox, separators=(',', ':'))}")
        return "; ".join(parts)


class Watch:
    """Samples what a pillow shows while a fault lasts; keeps each different line."""

    def __init__(self, pillow: Pillow, every: float = 0.5):
        self.pillow, self.every = pillow, every
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                line = self.pillow.showed()
            except requests.RequestException as err:
                line = f"no answer ({type(err).__name__})"
            if line not in self.lines:
                self.lines.append(line)
            self._stop.wait(self.every)

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join()
        return self.lines


def both(alice_lines: list[str], bob_lines: list[str]) -> str:
    return f"alice: {worst(alice_lines)}. bob: {worst(bob_lines)}"


def worst(lines: list[str]) -> str:
    """The most telling thing shown: an unhealthy line, else an offline one, else the first."""
    for needle in ("healthz 503", "offline", "outbox", "hardware"):
        for line in lines:
            if needle in line:
                return line
    return lines[0] if lines else "(nothing sampled)"


class Bench:
    def __init__(self, work: Path, outage: float, quick: bool):
        self.work = work
        self.outage = outage
        self.quick = quick
        self.rows: list[tuple[str, str, str, str]] = []
        self.azurite: Azurite | None = None
        self.alice: Pillow | None = None
        self.bob: Pillow | None = None
        self.disk: Path | None = None
        self.owner: dict[str, str] = {}

    # -- set-up -----------------------------------------------------------------

    def start(self) -> None:
        self.azurite = Azurite(self.work / "azurite").start()
        self.owner = {k: v for k, v in os.environ.items()
                      if not k.startswith(("AZURE_", "PILLOWD_"))}
        self.owner["AZURE_STORAGE_CONNECTION_STRING"] = self.azurite.connection_string()
        self.cli("pair", "alice", "bob", "--out", str(self.work / "pair"))
        env = {k: v for k, v in self.owner.items() if not k.startswith("AZURE_")}
        env.update(PILLOWD_CONTROL_TOKEN=TOKEN, PYTHONUNBUFFERED="1")
        site = self.work / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        self.led_control = self.work / "led-faults"
        alice_env = {**env, "PYTHONPATH": str(site),
                     "PILLOWD_BENCH_LED_FAULTS": str(self.led_control)}
        self.disk = self.mount_small_disk(self.work / "alice-state")
        self.alice = Pillow(self.config("alice", self.work / "alice-state"), alice_env)
        self.bob = Pillow(self.config("bob", self.work / "bob-state"), env)
        self.alice.start(timeout=30)
        self.bob.start(timeout=30)
        for pillow in (self.alice, self.bob):
            wait_for(lambda p=pillow: p.state()["queue"]["online"], message="online")

    def config(self, name: str, state_dir: Path) -> Path:
        config = self.work / "pair" / name / "queue.toml"
        text = config.read_text().replace("[pillow]\n",
                                          f'[pillow]\nstate_dir = "{state_dir}"\n')
        config.write_text(text + REST_OF_CONFIG)
        return config

    def mount_small_disk(self, path: Path) -> Path | None:
        path.mkdir()
        if os.geteuid() != 0:
            return None
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs",
                               str(path)], capture_output=True, text=True)
        return path if done.returncode == 0 else None

    def cli(self, *args, env=None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pillowd", *args],
                              env=env or self.owner, check=True, capture_output=True,
                              text=True, timeout=120)

    def close(self) -> None:
        for pillow in (self.alice, self.bob):
            if pillow is not None:
                pillow.stop()
        if self.disk is not None:
            subprocess.run(["umount", "-l", str(self.disk)], check=False)
        if self.azurite is not None:
            self.azurite.stop()

    def row(self, fault: str, showed: str, recovered: str, lost: str) -> None:
        self.rows.append((fault, showed, recovered, lost))
        print(f"\n== {fault}\n   showed:    {showed}\n   recovered: {recovered}\n"
              f"   lost:      {lost}", flush=True)

    def outage_for(self, seconds: float) -> str:
        return f"{seconds:.0f} s"

    def delivered(self, pillow: Pillow, ids: list[str]) -> tuple[int, list[str]]:
        outcomes = pillow.outcomes()
        missing = [i for i in ids if outcomes.get(i) not in ("applied", "superseded")]
        return len(ids) - len(missing), missing

    def send(self, queue: str, **fields) -> str:
        """A message on *queue* with the account key, as another sender would."""
        from azure.storage.queue import QueueClient
        ident = fields.setdefault("id", f"bench-{time.monotonic_ns()}")
        client = QueueClient.from_connection_string(self.azurite.connection_string(), queue)
        client.send_message(json.dumps(fields))
        client.close()
        return ident

    # -- the faults ---------------------------------------------------------------

    def leds(self) -> None:
        alice = self.alice
        watch = Watch(alice, every=0.2)
        before = alice.state()["queue"]["applied"]
        self.led_control.write_text("10")
        start = time.monotonic()
        alice.hug()   # a scene change: the next frame is written, and fails
        wait_for(lambda: not alice.state()["hardware"]["ok"], timeout=10,
                 message="the strip failing")
        wait_for(lambda: alice.state()["hardware"]["ok"], timeout=60,
                 message="the strip back")
        took = time.monotonic() - start
        lines = watch.stop()
        played = alice.state()["queue"]["applied"] - before
        self.row("10 LED write errors in a row", worst(lines),
                 f"LEDs lit again {took:.1f} s after the first failed write "
                 "(retries 0.1 s doubling to 2 s)",
                 f"nothing: the press meanwhile played ({played} applied); render loop "
                 f"alive, healthz {alice.get('/healthz').status_code} after")

    def disk_full(self) -> None:
        if self.disk is None:
            self.row("the state disk full", "(not run: mounting a tmpfs needs root)",
                     "-", "-")
            return
        alice = self.alice
        watch = Watch(alice)
        filler = self.disk / "filler"
        with open(filler, "wb", buffering=0) as f:
            chunk = b"\0" * 65536
            while chunk:
                try:
                    f.write(chunk)
                except OSError:
                    chunk = chunk[: len(chunk) // 2]
        ids = [self.send("pillow-alice", scene="glow", id=f"disk-{n}", **{"from": "bob"})
               for n in range(3)]
        wait_for(lambda: not alice.healthy(), timeout=30, message="alice unhealthy")
        time.sleep(self.outage)  # the fault's length is what is being measured
        filler.unlink()
        freed = time.monotonic()
        wait_for(lambda: self.delivered(alice, ids)[0] == len(ids) and alice.healthy(),
                 timeout=120, message="the messages sent during the full disk")
        took = time.monotonic() - freed
        lines = watch.stop()
        rejected = alice.state()["queue"]["rejected"]
        count, missing = self.delivered(alice, ids)
        self.row(f"the state disk full for {self.outage_for(self.outage)}", worst(lines),
                 f"{took:.1f} s after the disk was freed, all {count} messages sent "
                 "meanwhile had played",
                 f"{'nothing' if not missing else missing}; rejected in all: {rejected}")

    def token_revoked(self) -> None:
        from azure.storage.queue import QueueServiceClient
        alice, bob = self.alice, self.bob
        service = QueueServiceClient.from_connection_string(self.azurite.connection_string())
        queues = ("pillow-alice", "pillow-alice-poison", "pillow-bob")
        saved = {q: (service.get_queue_client(q).get_queue_access_policy(),
                     service.get_queue_client(q).get_queue_properties().metadata)
                 for q in queues}
        watch, watch_bob = Watch(alice), Watch(bob)
        self.cli("revoke", "alice")
        wait_for(lambda: not alice.state()["queue"]["online"], timeout=60,
                 message="alice refused")
        start = time.monotonic()
        pressed = alice.hug()
        time.sleep(max(0.0, self.outage / 2 - (time.monotonic() - start)))
        for queue, (policies, metadata) in saved.items():  # the owner, by hand
            service.get_queue_client(queue).set_queue_metadata(metadata)
            service.get_queue_client(queue).set_queue_access_policy(policies)
        restored = time.monotonic()
        wait_for(lambda: self.delivered(bob, [pressed])[0] == 1
                 and alice.state()["queue"]["online"], timeout=120,
                 message="alice back, her hug on bob")
        took = time.monotonic() - restored
        lines = watch.stop()
        self.row(f"a token revoked ({self.outage / 2:.0f} s, then put back)",
                 both(lines, watch_bob.stop()),
                 f"{took:.1f} s after the policies were back: alice online and her hug "
                 "pressed meanwhile played on bob",
                 "nothing (the hug waited in alice's outbox)")

    def queue_deleted(self) -> None:
        from azure.storage.queue import QueueServiceClient
        alice, bob = self.alice, self.bob
        service = QueueServiceClient.from_connection_string(self.azurite.connection_string())
        watch, watch_bob = Watch(alice), Watch(bob)
        service.delete_queue("pillow-bob")
        pressed = alice.hug()
        wait_for(lambda: not bob.state()["queue"]["online"], timeout=60,
                 message="bob offline")
        time.sleep(self.outage / 2)
        # Azure keeps a deleted queue's name for a while; Azurite frees it at once.
        self.cli("pair", "alice", "bob", "--out", str(self.work / "pair-again"))
        remade = time.monotonic()
        wait_for(lambda: self.delivered(bob, [pressed])[0] == 1, timeout=120,
                 message="alice's hug on bob")
        took = time.monotonic() - remade
        lines = watch.stop()
        # The SAS tokens, not the family key (a new --out folder makes a new one).
        same = _tokens(self.work / "pair") == _tokens(self.work / "pair-again")
        self.row(f"the partner's queue deleted ({self.outage / 2:.0f} s, then `pair` "
                 "again)", both(lines, watch_bob.stop()),
                 f"{took:.1f} s after pair made it again, alice's hug pressed meanwhile "
                 f"played on bob (tokens unchanged: {same})",
                 "the hug: nothing; messages on the deleted queue went with it")

    def big_message(self) -> None:
        from azure.storage.queue import QueueClient, QueueServiceClient
        alice = self.alice
        printed = self.cli("invite", "carol", "--to", "alice").stdout.split()
        url = next(u for u in printed if u.startswith("http") and "/pillow-alice/" in u)
        head = json.dumps({"scene": "hug", "from": "carol", "id": "big-one", "text": ""})
        big = head[:-2] + "x" * (65_400 - len(head)) + '"}'
        watch = Watch(alice, every=0.2)
        start = time.monotonic()
        # The SDK wants the queue's URL; invite prints its /messages endpoint.
        friend = QueueClient.from_queue_url(url.replace("/messages?", "?"))
        friend.send_message(big)
        ids = [f"after-big-{n}" for n in range(3)]
        for ident in ids:
            friend.send_message(json.dumps({"scene": "hug", "from": "carol", "id": ident}))
        wait_for(lambda: all(i in alice.outcomes() for i in [*ids, "big-one"]),
                 timeout=120, message="outcomes for the big one and the three hugs")
        took = time.monotonic() - start
        lines = watch.stop()
        outcomes = alice.outcomes()
        service = QueueServiceClient.from_connection_string(self.azurite.connection_string())
        copies = [json.loads(m.content) for m in
                  service.get_queue_client("pillow-alice-poison").peek_messages(32)]
        cut = [c for c in copies if c.get("original_sha256")]
        self.row("a 65,400-byte message from an invite, then three hugs", worst(lines),
                 f"{took:.1f} s from sending until all four had outcomes "
                 f"(big one {outcomes['big-one']}; hugs "
                 f"{', '.join(outcomes[i] for i in ids)})",
                 f"nothing: poison copy cut to {len(cut[0]['original']) if cut else '?'} "
                 f"characters with original_bytes "
                 f"{cut[0]['original_bytes'] if cut else '?'} and its sha256")

    def azurite_down(self) -> None:
        alice, bob = self.alice, self.bob
        watch, watch_bob = Watch(alice), Watch(bob)
        self.azurite.stop()
        wait_for(lambda: not alice.state()["queue"]["online"], timeout=60,
                 message="alice offline")
        pressed = alice.hug()
        time.sleep(self.outage)
        self.azurite.start()
        back = time.monotonic()
        wait_for(lambda: alice.state()["queue"]["online"], timeout=120,
                 message="alice online")
        online = time.monotonic() - back
        wait_for(lambda: self.delivered(bob, [pressed])[0] == 1, timeout=120,
                 message="the hug pressed during the outage on bob")
        played = time.monotonic() - back
        lines = watch.stop()
        self.row(f"Azurite down {self.outage_for(self.outage)}",
                 both(lines, watch_bob.stop()),
                 f"alice online {online:.1f} s after Azurite was back; the hug pressed "
                 f"meanwhile played on bob after {played:.1f} s",
                 "nothing (the hug waited in the outbox)")

    def sigkill(self, messages: int = 150, rate: float = 15.0, kills: int = 3) -> None:
        from azure.storage.queue import QueueClient
        alice = self.alice
        client = QueueClient.from_connection_string(self.azurite.connection_string(),
                                                    "pillow-alice")
        ids = [f"load-{n}" for n in range(messages)]
        done = threading.Event()

        def send() -> None:
            for ident in ids:
                client.send_message(json.dumps({"scene": "glow", "id": ident,
                                                "from": "load"}))
                if done.wait(1 / rate):
                    break
            done.set()

        sender = threading.Thread(target=send, name="bench-sender")
        sender.start()
        restarts, recoveries, health, given_back = [], [], [], []
        try:
            for _ in range(kills):
                time.sleep(messages / rate / (kills + 1))
                alice.kill()
                killed = time.monotonic()
                alice.start(timeout=30)
                restarts.append(time.monotonic() - killed)
                health.append(alice.get("/healthz").status_code)
                before = alice.state()["queue"]["applied"]
                wait_for(lambda: alice.state()["queue"]["applied"] > before, timeout=60,
                         message="a message played after the restart")
                recoveries.append(time.monotonic() - killed)
                back = [line for line in alice.output if "taken before a crash" in line]
                given_back.append(back[-1].split("pillowd.consumer: ")[-1].split(" ")[0]
                                  if back else "0")
                alice.output.clear()
        finally:
            sender.join()
            client.close()
        wait_for(lambda: all(i in alice.outcomes() for i in ids), timeout=180,
                 message="every message of the load settled")
        outcomes = alice.outcomes()
        history = alice.get("/api/history", params={"limit": 1000}).json()["items"]
        applied = [i["id"] for i in history if i["outcome"] == "applied"
                   and i["id"].startswith("load-")]
        twice = len(applied) - len(set(applied))
        lost = [i for i in ids if i not in outcomes]
        by = {o: sum(1 for i in ids if outcomes.get(i) == o)
              for o in ("applied", "superseded", "rejected", "duplicate", "expired")}
        self.row(f"SIGKILL under load ({kills} kills, {messages} messages at "
                 f"~{rate:.0f}/s)",
                 "no page while down; after each restart healthz "
                 + ", ".join(map(str, health)) + "; held messages given back at start: "
                 + ", ".join(given_back),
                 "kill to page up: " + ", ".join(f"{r:.1f} s" for r in restarts)
                 + "; kill to the next message played: "
                 + ", ".join(f"{r:.1f} s" for r in recoveries),
                 f"{len(lost)} lost, {twice} played twice; outcomes "
                 + ", ".join(f"{k} {v}" for k, v in by.items() if v))

    def reboot(self) -> None:
        self.row("a reboot", "see the system check (`system` branch: CI under "
                 "systemd-nspawn, `systemctl reboot` in the container)", "-", "-")


def _tokens(folder: Path) -> dict:
    import tomllib
    found = tomllib.loads((folder / "alice" / "queue-sas.toml").read_text())
    return {q: t for q, t in found.items() if q != "family_key"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="outages of 15 s instead of 60 (about 2 minutes in all)")
    parser.add_argument("--only", nargs="*", metavar="FAULT",
                        choices=["leds", "disk", "revoked", "deleted", "big", "azurite",
                                 "sigkill"], help="run only these faults")
    options = parser.parse_args(argv)
    outage = 15.0 if options.quick else 60.0
    work = Path(tempfile.mkdtemp(prefix="faults-bench-"))
    bench = Bench(work, outage, options.quick)
    began = time.monotonic()
    try:
        bench.start()
        print(f"bench: alice and bob paired on Azurite, on their own tokens; outages "
              f"of {outage:.0f} s", flush=True)
        steps = {"leds": bench.leds, "disk": bench.disk_full,
                 "revoked": bench.token_revoked, "deleted": bench.queue_deleted,
                 "big": bench.big_message, "azurite": bench.azurite_down,
                 "sigkill": bench.sigkill}
        for name, step in steps.items():
            if options.only and name not in options.only:
                continue
            try:
                step()
            except TimeoutError as err:
                bench.row(name, f"(did not recover: {err})", "-", "-")
            except subprocess.CalledProcessError as err:
                bench.row(name, f"(a command failed: {' '.join(err.cmd[2:])}: "
                          f"{(err.stderr or '').strip()})", "-", "-")
        if not options.only:
            bench.reboot()
    finally:
        bench.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nbench: {time.monotonic() - began:.0f} s in all\n")
    print("| fault | what the pillow showed | recovered | lost |")
    print("|---|---|---|---|")
    for row in bench.rows:
        print("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
