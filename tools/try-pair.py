#!/usr/bin/env python3
"""Two paired pillows on one machine: Azurite, `pillowd pair alice bob`, and a
`pillowd run` for each on what pair wrote, side by side. Prints the two pages'
addresses; Ctrl-C stops all three.

    make try-pair                      # or, after make test-deps:
    .venv/bin/python tools/try-pair.py [--port 8081] [--dir DIR]

Each pillow runs on the checkout's config.toml with pair's queue.toml as its
drop-in config.d/50-pair.toml (as `pillowd join` installs it on a Pi), its
queue-sas.toml beside it, mock hardware, and a drop-in 60-try-pair.toml for its
port and state. No account key is in the pillows' environment: they run on their
own tokens. docs/pairing.md, "Try it on one machine".
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pillowd.testing.azurite import Azurite
from pillowd.testing.services import await_listening

ROOT = Path(__file__).resolve().parent.parent

NAMES = ("alice", "bob")
PILLOWD = [sys.executable, "-m", "pillowd"]
START_SECONDS = 120


class _Azurite(Azurite):
    """Azurite in a session of its own: Ctrl-C reaches this tool alone, which
    stops the pillows first and Azurite last."""

    def start(self, timeout: float = 30) -> "_Azurite":
        if self.binary is None or not Path(self.binary).exists():
            raise SystemExit("try-pair: Azurite is not installed here: run make test-deps "
                             "first (or make try-pair, which does)")
        self.location.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [str(self.binary), "--queueHost", "127.0.0.1", "--queuePort", str(self.port),
             "--location", str(self.location), "--skipApiVersionCheck", "--silent"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        await_listening(self.proc, self.port, "azurite", timeout)
        return self


class Pillow:
    """One `pillowd run`; its output goes to DIR/NAME/pillowd.log."""

    def __init__(self, name: str, folder: Path, port: int, env: dict):
        self.name, self.folder = name, folder
        self.token = secrets.token_urlsafe(16)
        self.url: str | None = None
        self.log = (folder / "pillowd.log").open("wb")
        self._partial = b""
        config = folder / "config.toml"
        shutil.copyfile(ROOT / "config.toml", config)   # the shipped config, as installed
        drop_ins = folder / "config.d"
        drop_ins.mkdir(exist_ok=True)
        shutil.copyfile(folder / "queue.toml", drop_ins / "50-pair.toml")  # as join does
        (drop_ins / "60-try-pair.toml").write_text(
            f'[pillow]\nstate_dir = "{folder / "state"}"\n\n'
            '[hardware]\nbackend = "mock"\n\n'
            f'[web]\nhost = "127.0.0.1"\nport = {port}\n')
        self.proc = subprocess.Popen(
            [*PILLOWD, "run", "--config", str(config)], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True,
            env={**env, "PILLOWD_CONTROL_TOKEN": self.token, "PYTHONUNBUFFERED": "1"})

    def read(self) -> bool:
        """Takes what the pillow printed; False once its output has ended."""
        chunk = os.read(self.proc.stdout.fileno(), 65536)
        if not chunk:
            return False
        self.log.write(chunk)
        self.log.flush()
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            found = re.match(rb"pillowd: status page at (http://\S+/)", line)
            if found and self.url is None:
                self.url = found.group(1).decode()
        return True

    def tail(self) -> str:
        text = (self.folder / "pillowd.log").read_text(errors="replace")
        return "\n".join(f"  {self.name}| {line}" for line in text.splitlines()[-15:])

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            code = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc.stdout.close()
        self.log.close()
        return code


def _interrupted(signum, frame):
    raise KeyboardInterrupt


def _clean_env() -> dict:
    """This environment without credentials or settings meant for another pillow."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("AZURE_", "PILLOWD_", "NOTIFY_SOCKET", "WATCHDOG_",
                                 "CREDENTIALS_DIRECTORY"))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="tools/try-pair.py",
        description="Azurite and two paired pillows (alice, bob) on this machine, until "
                    "Ctrl-C.")
    parser.add_argument("--port", type=int, default=8081, metavar="N",
                        help="alice's page on port N, bob's on N+1 (default 8081; 0: any "
                             "free ports)")
    parser.add_argument("--dir", metavar="DIR",
                        help="keep Azurite's data, pair's folders and the logs here (kept "
                             "afterwards; default: a temporary folder, removed at the end)")
    options = parser.parse_args(argv)
    # SIGINT too: a shell that starts this in the background ignores it otherwise.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupted)

    keep = options.dir is not None
    work = Path(options.dir or tempfile.mkdtemp(prefix="pillowd-try-pair-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    azurite = _Azurite(work / "azurite")
    pillows: list[Pillow] = []
    code = 0
    try:
        azurite.start()
        owner = {**_clean_env(), "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string()}
        out = work / "pillows"
        paired = subprocess.run([*PILLOWD, "pair", *NAMES, "--out", str(out)], env=owner,
                                capture_output=True, text=True)
        if paired.returncode != 0:
            print(f"try-pair: pillowd pair failed:\n{paired.stderr}", file=sys.stderr)
            return 1
        print(f"try-pair: Azurite on 127.0.0.1:{azurite.port}; pillowd pair {' '.join(NAMES)} "
              f"wrote {out}/", flush=True)
        for offset, name in enumerate(NAMES):
            port = options.port + offset if options.port else 0
            pillows.append(Pillow(name, out / name, port, _clean_env()))
        code = _serve(pillows, work, keep)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # a second Ctrl-C: still tidy
        stopped = [(p.name, p.stop()) for p in pillows]
        azurite.stop()
        if pillows and code == 0:
            print("try-pair: stopped " + ", ".join(
                f"{name} (exit {rc})" for name, rc in stopped) + " and Azurite", flush=True)
        if keep:
            print(f"try-pair: pair's folders and the logs are in {work}/", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return code


def _serve(pillows: list[Pillow], work: Path, keep: bool) -> int:
    """Prints the addresses once both pages answer, then relays until a pillow
    ends (1) or Ctrl-C (KeyboardInterrupt)."""
    selector = selectors.DefaultSelector()
    for pillow in pillows:
        selector.register(pillow.proc.stdout, selectors.EVENT_READ, pillow)
    deadline = time.monotonic() + START_SECONDS
    announced = False
    while True:
        left = None if announced else deadline - time.monotonic()
        if left is not None and left <= 0:
            print("try-pair: the pillows did not start within "
                  f"{START_SECONDS} s:\n" + "\n".join(p.tail() for p in pillows),
                  file=sys.stderr)
            return 1
        for key, _ in selector.select(left):
            pillow = key.data
            if not pillow.read():
                print(f"try-pair: {pillow.name}'s pillowd exited "
                      f"({pillow.proc.wait()}):\n{pillow.tail()}", file=sys.stderr)
                return 1
        if not announced and all(p.url for p in pillows):
            announced = True
            width = max(len(p.name) for p in pillows)
            for pillow in pillows:
                print(f"{pillow.name + ':':<{width + 1}} {pillow.url}?token={pillow.token}",
                      flush=True)
            first = pillows[0]
            print("try-pair: open both pages and press the hug button on one: the other "
                  "glows. Or:\n"
                  f"  curl -X POST -H 'Authorization: Bearer {first.token}' "
                  f"{first.url}api/hug\n"
                  f"try-pair: logs in {work}/pillows/NAME/pillowd.log"
                  f"{'' if keep else ' (removed at the end)'}; Ctrl-C stops all three",
                  flush=True)


if __name__ == "__main__":
    sys.exit(main())
