"""Shared fixtures: a real `pillowd run` in a subprocess, its CLI, and live clients."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import requests
import socketio

from azurite import azurite  # noqa: F401  (the session's Azurite, started on first use)

ROOT = Path(__file__).resolve().parent.parent
PILLOWD = [sys.executable, "-m", "pillowd"]

BASE_CONFIG = """
[pillow]
name = "test-pillow"
state_dir = "{state_dir}"

[queue]
backend = "local"
name = "pillow"
poll_min_seconds = 0.05
poll_max_seconds = 0.5
max_dequeue_count = 3

[hardware]
backend = "mock"

[leds]
count = 12
brightness = 1.0

[web]
host = "127.0.0.1"
port = 0

[scenes.idle]
effect = "solid"
color = "#000010"

[scenes.hug]
effect = "solid"
color = "#ff0000"
duration = 1.5
aliases = ["HUGGING"]

[scenes.glow]
effect = "breathe"
color = "#00ff00"
duration = 0
"""


def wait_for(predicate, timeout=10.0, interval=0.02, message="condition"):
    """Poll *predicate* until it returns something truthy; fail after *timeout*."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


class PillowProcess:
    """A `pillowd run` subprocess on a temp config, with helpers to talk to it."""

    def __init__(self, config: Path, env: dict, args=()):
        self.config = config
        self.env = env
        self.args = list(args)
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None
        self.output: list[str] = []
        self._url_seen = threading.Event()

    def start(self, timeout: float = 20) -> "PillowProcess":
        self._url_seen.clear()
        self.proc = subprocess.Popen(
            [*PILLOWD, "run", "--config", str(self.config), *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env,
            cwd=ROOT)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        if not self._url_seen.wait(timeout):
            self.stop()
            raise AssertionError("pillowd did not start:\n" + "".join(self.output))
        return self

    def _read(self, proc) -> None:
        for line in proc.stdout:
            self.output.append(line)
            m = re.search(r"status page at (http://\S+/)", line)
            if m and line.startswith("pillowd:"):
                self.url = m.group(1)
                self._url_seen.set()

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

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.url + path.lstrip("/"), timeout=5, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return requests.post(self.url + path.lstrip("/"), timeout=5, **kw)

    def state(self) -> dict:
        return self.get("/api/state").json()

    def cli(self, *args, check=True) -> subprocess.CompletedProcess:
        return run_cli(*args, "--config", str(self.config), env=self.env, check=check)


def run_cli(*args, env=None, check=True, input=None) -> subprocess.CompletedProcess:
    result = subprocess.run([*PILLOWD, *args], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=60, input=input)
    if check and result.returncode != 0:
        raise AssertionError(f"pillowd {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def pillow_env(tmp_path, backend, request):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PILLOWD_", "AZURE_", "NOTIFY_SOCKET", "WATCHDOG_"))}
    env["PYTHONUNBUFFERED"] = "1"
    if backend == "azure":
        env["AZURE_STORAGE_CONNECTION_STRING"] = \
            request.getfixturevalue("azurite").connection_string()
    return env


@pytest.fixture
def make_config(tmp_path, backend, queue_name):
    """Writes a config from BASE_CONFIG plus *extra* TOML; returns its path."""
    def make(extra: str = "", base: str = BASE_CONFIG, name="config.toml") -> Path:
        state = tmp_path / "state"
        path = tmp_path / name
        text = base.format(state_dir=state)
        if backend == "azure":  # Azurite is shared by the session: a queue of its own
            text = text.replace('backend = "local"\nname = "pillow"',
                                f'backend = "azure"\nname = "{queue_name}"')
        path.write_text(text + textwrap.dedent(extra))
        return path
    return make


# -- queue backends ------------------------------------------------------------
# A test marked @both_backends runs on the embedded queue and on Azurite; the rest
# run on the embedded one. Tests reach the queue through `queues`, never a backend.

both_backends = pytest.mark.parametrize("backend", ["local", "azure"], indirect=True)


@pytest.fixture
def backend(request):
    return getattr(request, "param", "local")


@pytest.fixture
def queue_name(backend, request):
    if backend != "azure":
        return "pillow"
    import hashlib
    return "t" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:16]


@pytest.fixture
def queues(pillow_env):
    """Opens the queues of a config the way pillowd does: queues(config).main.put(...)."""
    opened = []

    def open_for(config: Path):
        from pillowd.config import load
        from pillowd.daemon import open_queues
        found = open_queues(load(config), pillow_env)
        opened.append(found)
        return found

    yield open_for
    for found in opened:
        found.close()


@pytest.fixture
def pillow(make_config, pillow_env):
    """A running pillowd on the test config; stopped (SIGTERM) at the end."""
    started = []

    def start(extra: str = "", args=(), env=None) -> PillowProcess:
        process = PillowProcess(make_config(extra), {**pillow_env, **(env or {})}, args)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


class Watcher:
    """A real python-socketio client on /pillow, recording every event."""

    def __init__(self, url: str):
        self.states: list[dict] = []
        self.frames: list[bytes] = []
        self.client = socketio.Client(reconnection=False)
        self.client.on("state", self.states.append, namespace="/pillow")
        self.client.on("frame", self.frames.append, namespace="/pillow")
        self.client.connect(url, namespaces=["/pillow"], transports=["websocket"],
                            wait_timeout=10)

    def wait_state(self, predicate, timeout=10.0, message="a state event"):
        def find():
            for state in reversed(list(self.states)):
                if predicate(state):
                    return state
            return None
        return wait_for(find, timeout, message=message)

    def close(self):
        self.client.disconnect()


@pytest.fixture
def watch():
    watchers = []

    def connect(url: str) -> Watcher:
        watcher = Watcher(url)
        watchers.append(watcher)
        return watcher

    yield connect
    for watcher in watchers:
        watcher.close()
