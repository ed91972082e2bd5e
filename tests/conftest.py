"""Shared fixtures: a real `pillowd run` in a subprocess, its CLI, and live clients."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest
import socketio

from pillowd.testing import PillowProcess  # noqa: F401  (tests import it from here)
from pillowd.testing import run_cli as _run_cli
from pillowd.testing.azurite import Azurite
from pillowd.testing.wait import wait_for  # noqa: F401  (tests import it from here)

ROOT = Path(__file__).resolve().parent.parent

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


def family_credentials(folder: Path):
    """A family key as a pillow on the embedded queue gets it: the systemd credential
    azure-queue-sas holding only `family_key`. Returns (key, env for the pillow)."""
    from pillowd.family import FamilyKey
    key = FamilyKey.generate()
    folder.mkdir(exist_ok=True)
    (folder / "azure-queue-sas").write_text(f'family_key = "{key.text()}"\n')
    return key, {"CREDENTIALS_DIRECTORY": str(folder)}


def run_cli(*args, env=None, check=True, input=None) -> subprocess.CompletedProcess:
    return _run_cli(*args, env=env, check=check, input=input, cwd=ROOT)


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


@pytest.fixture(scope="session")
def azurite():
    """A running Azurite for the whole session (tests use their own queue names)."""
    location = Path(tempfile.mkdtemp(prefix="azurite-"))
    try:
        server = Azurite(location).start()
    except FileNotFoundError as e:
        pytest.fail(str(e))
    yield server
    server.stop()
    shutil.rmtree(location, ignore_errors=True)


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
        from pillowd.queues.configured import open_queues
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
        process = PillowProcess(make_config(extra), {**pillow_env, **(env or {})}, args,
                                cwd=ROOT)
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


@pytest.fixture
def small_disk(tmp_path):
    """A real 4 MB file system (tmpfs) to be the pillow's state_dir; needs root."""
    mount = tmp_path / "state"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs",
                           str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def fill(disk) -> None:
    """Fill *disk* to the last byte, as a busy SD card ends up."""
    with open(disk / "filler", "wb", buffering=0) as f:
        chunk = b"\0" * 65536
        while True:
            try:
                f.write(chunk)
            except OSError as err:
                assert err.errno == errno.ENOSPC
                if len(chunk) == 1:
                    return
                chunk = chunk[: len(chunk) // 2]
