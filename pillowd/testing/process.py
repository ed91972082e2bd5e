"""A real `pillowd run` in a subprocess, found by the status page address it prints."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

PILLOWD = [sys.executable, "-m", "pillowd"]


class NotStarted(AssertionError):
    """pillowd exited, or printed no status page address in time.

    An AssertionError so that pytest reports it as the test's failure, with the
    daemon's output, rather than as an error in the harness."""


class PillowProcess:
    """A `pillowd run` subprocess on *config*: start() waits for its page, stop() ends it.

    Its output is read all the time by a thread (kept in .output), so a full pipe
    never blocks the daemon, however long it runs."""

    def __init__(self, config: Path, env: dict | None = None, args=(), cwd: Path | None = None):
        self.config = Path(config)
        self.env = {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"}
        self.args = list(args)
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None
        self.output: list[str] = []

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self, timeout: float = 20) -> "PillowProcess":
        self.url = None
        seen = threading.Event()  # one per start: a previous run's reader may still drain
        self.proc = subprocess.Popen(
            [*PILLOWD, "run", "--config", str(self.config), *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env,
            cwd=self.cwd)
        threading.Thread(target=self._read, args=(self.proc, seen), daemon=True,
                         name="pillowd-output").start()
        if not seen.wait(timeout) or self.url is None:
            self.stop()
            raise NotStarted("pillowd did not start:\n" + "".join(self.output[-40:]))
        return self

    def _read(self, proc, seen: threading.Event) -> None:
        for line in proc.stdout:
            self.output.append(line)
            m = re.search(r"status page at (http://\S+/)", line)
            if m and line.startswith("pillowd:") and not seen.is_set():
                self.url = m.group(1)
                seen.set()
        seen.set()  # it exited: start() need not wait out its timeout
        proc.stdout.close()

    def stop(self, sig=signal.SIGTERM, timeout: float = 10) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self, timeout: float = 20) -> "PillowProcess":
        """Stop and start again on the same port, as after a crash or an upgrade:
        a page left open must find the daemon where it was."""
        port = int(self.url.rstrip("/").rsplit(":", 1)[1])
        self.stop()
        text = self.config.read_text()
        self.config.write_text(re.sub(r"(?m)^port = \d+$", f"port = {port}", text))
        return self.start(timeout)

    # requests is imported on use: benchmarks that only need the process don't pay for it.
    def get(self, path: str, **kw):
        import requests
        return requests.get(self.url + path.lstrip("/"), timeout=5, **kw)

    def post(self, path: str, **kw):
        import requests
        return requests.post(self.url + path.lstrip("/"), timeout=5, **kw)

    def state(self) -> dict:
        return self.get("/api/state").json()

    def cli(self, *args, check=True) -> subprocess.CompletedProcess:
        return run_cli(*args, "--config", str(self.config), env=self.env, check=check,
                       cwd=self.cwd)

    def __enter__(self) -> "PillowProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def run_cli(*args, env=None, check=True, input=None, cwd=None) -> subprocess.CompletedProcess:
    """Runs `pillowd ARGS...`; with *check*, a non-zero exit fails with its output."""
    result = subprocess.run([*PILLOWD, *args], capture_output=True, text=True,
                            env=env, cwd=cwd, timeout=60, input=input)
    if check and result.returncode != 0:
        raise AssertionError(f"pillowd {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result
