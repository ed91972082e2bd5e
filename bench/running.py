"""Starts a real `pillowd run` for a benchmark and finds its status page."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class NotStarted(RuntimeError):
    """pillowd exited before it printed its status page's address."""


class RunningPillowd:
    """A `pillowd run` subprocess: start() returns its page's URL, stop() ends it."""

    def __init__(self, config: Path, env: dict | None = None):
        self.config = config
        self.env = {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"}
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self) -> str:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pillowd", "run", "--config", str(self.config)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env,
            cwd=ROOT)
        seen = []
        for line in self.process.stdout:
            seen.append(line)
            m = re.match(r"pillowd: status page at (http://\S+/)", line)
            if m:
                # Keep draining its output so a full pipe never blocks the daemon.
                threading.Thread(target=lambda: [None for _ in self.process.stdout],
                                 daemon=True).start()
                return m.group(1)
        self.stop()
        raise NotStarted("pillowd did not start:\n" + "".join(seen[-20:]))

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def __enter__(self) -> "RunningPillowd":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
