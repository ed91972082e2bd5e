"""The systemd side of pillowd: notify protocol, watchdog, journal, the unit file."""

import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from pillowd.seams import systemd as pillow_systemd
from pillowd.seams.systemd import SystemdNotifier, Watchdog, journal_handler

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "pillowd.service"
PWM_ROOT = REPO / "systemd" / "pillowd-pwm-root.conf"

HAVE_SYSTEMD_PYTHON = pillow_systemd._sd_daemon is not None


class NotifySocket:
    """What systemd listens on: a Unix datagram socket, bound for real."""

    def __init__(self, address, sock):
        self.address = address
        self.sock = sock

    def receive(self, timeout=5.0):
        """The next message as a dict, or None if none came within timeout."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return None
        return dict(line.split("=", 1) for line in data.decode().splitlines())

    def receive_until(self, key, timeout=5.0):
        """Messages up to and including the first one carrying key."""
        deadline = time.monotonic() + timeout
        seen = []
        while (left := deadline - time.monotonic()) > 0:
            message = self.receive(left)
            if message is None:
                break
            seen.append(message)
            if key in message:
                return seen
        raise AssertionError(f"no {key} within {timeout}s; got {seen}")


@pytest.fixture
def notify_socket():
    # Not tmp_path: a socket path must fit in sun_path (108 bytes).
    with tempfile.TemporaryDirectory(prefix="pillowd-notify-") as tmp:
        address = os.path.join(tmp, "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(address)
            yield NotifySocket(address, sock)


BACKENDS = [
    "socket",
    pytest.param("libsystemd", marks=pytest.mark.skipif(
        not HAVE_SYSTEMD_PYTHON, reason="systemd-python not installed")),
]


@pytest.fixture(params=BACKENDS)
def notifier_for(request, monkeypatch):
    """Build a notifier talking to a socket, through each backend we have."""
    def make(address, **env):
        environ = {"NOTIFY_SOCKET": address, **env}
        if request.param == "libsystemd":
            # sd_notify() reads the real process environment.
            for key, value in environ.items():
                monkeypatch.setenv(key, value)
            notifier = SystemdNotifier(os.environ)
        else:
            notifier = SystemdNotifier(environ, libsystemd=False)
        assert notifier.backend == request.param
        return notifier
    return make


def test_ready_reaches_systemd_with_status(notify_socket, notifier_for):
    notifier = notifier_for(notify_socket.address)
    assert notifier.enabled
    notifier.ready("idle; queue local online; 0 applied")
    assert notify_socket.receive() == {
        "READY": "1",
        "STATUS": "idle; queue local online; 0 applied",
    }


def test_status_and_stopping(notify_socket, notifier_for):
    notifier = notifier_for(notify_socket.address)
    # Escaped, never raw: a newline would start another assignment, an ESC sequence
    # would reach the terminal of whoever runs `systemctl status`.
    notifier.status("hug from Alice\nWATCHDOG=1 \x1b]0;owned\x07\u202e")
    assert notify_socket.receive() == {
        "STATUS": "hug from Alice\\nWATCHDOG=1 \\x1b]0;owned\\x07\\u202e"}
    notifier.stopping()
    assert notify_socket.receive()["STOPPING"] == "1"


def test_abstract_notify_socket():
    name = f"pillowd-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        listener = NotifySocket("@" + name, sock)
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "@" + name}, libsystemd=False)
        notifier.ready("up")
        assert listener.receive()["READY"] == "1"


def test_without_systemd_everything_is_a_no_op():
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    assert notifier.watchdog_interval() is None
    notifier.ready("up")
    notifier.status("still up")
    notifier.stopping()
    assert notifier.notify("WATCHDOG=1") is False


def test_gone_socket_is_logged_not_raised(caplog):
    notifier = SystemdNotifier({"NOTIFY_SOCKET": "/nonexistent/notify"}, libsystemd=False)
    with caplog.at_level(logging.WARNING, logger="pillowd.seams.systemd"):
        assert notifier.notify("WATCHDOG=1") is False
        assert notifier.notify("WATCHDOG=1") is False
    assert len(caplog.records) == 1  # once, not every ping


def test_watchdog_interval_is_half_of_watchdog_usec(notify_socket):
    environ = {"NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": "60000000"}
    assert SystemdNotifier(environ).watchdog_interval() == 30.0
    mine = dict(environ, WATCHDOG_PID=str(os.getpid()))
    assert SystemdNotifier(mine).watchdog_interval() == 30.0
    # Set for another process (we inherited it): not ours to ping.
    theirs = dict(environ, WATCHDOG_PID=str(os.getpid() + 1))
    assert SystemdNotifier(theirs).watchdog_interval() is None
    assert SystemdNotifier({"NOTIFY_SOCKET": notify_socket.address}).watchdog_interval() is None


class Loop:
    """A stand-in for the queue or render loop: beats until frozen."""

    def __init__(self, timeout):
        self.timeout = timeout
        self.last_beat = time.monotonic()
        self.running = threading.Event()
        self.running.set()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done.is_set():
            self.running.wait()  # freeze: the loop stops making progress
            self.last_beat = time.monotonic()
            self.done.wait(0.005)

    def heartbeat(self) -> bool:
        """The liveness check a Watchdog is given: True while it makes progress."""
        return time.monotonic() - self.last_beat < self.timeout

    def freeze(self):
        self.running.clear()

    def thaw(self):
        self.running.set()

    def close(self):
        self.done.set()
        self.running.set()
        self.thread.join()


@pytest.fixture
def loops():
    made = {}
    yield lambda name, timeout: made.setdefault(name, Loop(timeout))
    for loop in made.values():
        loop.close()


def test_watchdog_pings_while_loops_progress_and_stops_when_one_freezes(
        notify_socket, notifier_for, loops):
    interval = 0.05
    notifier = notifier_for(notify_socket.address, WATCHDOG_USEC=str(int(2 * interval * 1e6)))
    assert notifier.watchdog_interval() == pytest.approx(interval)
    queue_loop = loops("queue loop", 3 * interval)
    render_loop = loops("render loop", 3 * interval)
    watchdog = Watchdog(notifier, {"queue loop": queue_loop.heartbeat,
                                   "render loop": render_loop.heartbeat},
                        notifier.watchdog_interval(), status=lambda: "idle")
    watchdog.start()
    try:
        pings = []
        for _ in range(4):
            message = notify_socket.receive()
            assert message is not None and message["WATCHDOG"] == "1"
            pings.append(time.monotonic())
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        assert all(gap > interval / 2 for gap in gaps), gaps

        render_loop.freeze()
        stalled = notify_socket.receive_until("STATUS")
        assert stalled[-1] == {"STATUS": "Stalled: render loop"}
        # Frozen: many intervals pass and systemd hears nothing.
        assert notify_socket.receive(timeout=10 * interval) is None

        render_loop.thaw()
        resumed = notify_socket.receive_until("WATCHDOG")
        assert resumed[-1] == {"WATCHDOG": "1", "STATUS": "idle"}
    finally:
        watchdog.stop()


def test_watchdog_status_line_sent_only_when_it_changes(notify_socket):
    notifier = SystemdNotifier({"NOTIFY_SOCKET": notify_socket.address}, libsystemd=False)
    lines = iter(["idle", "idle", "hug from Alice"])
    watchdog = Watchdog(notifier, {}, 60, status=lambda: next(lines))
    assert watchdog.check()
    assert notify_socket.receive() == {"WATCHDOG": "1", "STATUS": "idle"}
    assert watchdog.check()
    assert notify_socket.receive() == {"WATCHDOG": "1"}
    assert watchdog.check()
    assert notify_socket.receive() == {"WATCHDOG": "1", "STATUS": "hug from Alice"}


def test_a_check_that_raises_counts_as_frozen(notify_socket):
    notifier = SystemdNotifier({"NOTIFY_SOCKET": notify_socket.address}, libsystemd=False)

    def broken():
        raise RuntimeError("render loop object gone")

    watchdog = Watchdog(notifier, {"render loop": broken}, 60)
    assert not watchdog.check()
    assert notify_socket.receive() == {"STATUS": "Stalled: render loop"}


def test_watchdog_stop_is_immediate(notify_socket):
    notifier = SystemdNotifier({"NOTIFY_SOCKET": notify_socket.address}, libsystemd=False)
    watchdog = Watchdog(notifier, {"always": lambda: True}, interval=3600)
    watchdog.start()
    assert notify_socket.receive()["WATCHDOG"] == "1"  # first ping at once
    started = time.monotonic()
    watchdog.stop()
    assert time.monotonic() - started < 1
    watchdog.stop()  # safe twice


def test_no_journal_handler_outside_systemd():
    assert journal_handler(logging.INFO, {}) is None


@pytest.mark.skipif(not HAVE_SYSTEMD_PYTHON, reason="systemd-python not installed")
def test_journal_handler_under_systemd_forwards_extra_fields(tmp_path, monkeypatch):
    # Under systemd, stderr is the journal stream JOURNAL_STREAM names.
    stderr = open(tmp_path / "stderr", "w")
    monkeypatch.setattr(sys, "stderr", stderr)
    st = os.fstat(stderr.fileno())
    handler = journal_handler(logging.INFO, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    assert handler is not None
    # Inherited but no longer ours (stderr redirected): not under systemd.
    assert journal_handler(logging.INFO, {"JOURNAL_STREAM": "1:2"}) is None

    sent = []
    # Same signature as systemd.journal.send, which writes to journald.
    handler.send = lambda MESSAGE, **fields: sent.append((MESSAGE, fields))
    log = logging.getLogger("pillowd.test.journal")
    log.addHandler(handler)
    try:
        log.warning("message %s rejected: unknown scene", "x\nERROR pillowd: FORGED", extra={
            "PILLOW_OUTCOME": "rejected", "PILLOW_SCENE": "hugg",
            "PILLOW_MESSAGE_ID": "client-chosen-id"})
    finally:
        log.removeHandler(handler)
        stderr.close()
    (message, fields), = sent
    # One entry, one line: the id's newline cannot pass for another entry.
    assert message == "message x\\nERROR pillowd: FORGED rejected: unknown scene"
    assert fields["PILLOW_OUTCOME"] == "rejected"
    assert fields["PILLOW_SCENE"] == "hugg"
    assert fields["PILLOW_MESSAGE_ID"] == "client-chosen-id"
    assert fields["SYSLOG_IDENTIFIER"] == "pillowd"
    assert fields["PRIORITY"] == "4"


# The unit file, checked by systemd's own tools.

def _staged_unit(tmp_path, with_pwm_root=False):
    """The unit with ExecStart pointed at a binary that exists here.

    systemd-analyze verify fails a unit whose ExecStart binary is missing;
    everything else stays as shipped.
    """
    text = UNIT.read_text()
    shipped = "ExecStart=/opt/pillowd/bin/pillowd run --config /etc/pillowd/config.toml"
    assert shipped in text.splitlines()
    unit = tmp_path / "pillowd.service"
    unit.write_text(text.replace(
        "ExecStart=/opt/pillowd/bin/pillowd", f"ExecStart={sys.executable} -m pillowd"))
    if with_pwm_root:
        dropins = tmp_path / "pillowd.service.d"
        dropins.mkdir()
        shutil.copy(PWM_ROOT, dropins / "pwm-root.conf")
    return unit


def _systemd_analyze(*args):
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze not found: apt-get install systemd")
    return subprocess.run(["systemd-analyze", "--no-pager", *args],
                          capture_output=True, text=True, timeout=120)


def _complaints(result, tmp_path):
    # verify exits 0 on unknown keys and bad values; those lines name our files.
    return [line for line in result.stderr.splitlines() if str(tmp_path) in line]


@pytest.mark.parametrize("with_pwm_root", [False, True], ids=["unit", "unit+pwm-root"])
def test_systemd_analyze_verify_passes(tmp_path, with_pwm_root):
    unit = _staged_unit(tmp_path, with_pwm_root)
    result = _systemd_analyze("verify", str(unit))
    assert result.returncode == 0, result.stderr
    assert _complaints(result, tmp_path) == []


def test_verify_would_catch_a_broken_unit(tmp_path):
    unit = _staged_unit(tmp_path)
    unit.write_text(unit.read_text().replace("Type=notify", "Type=notfy"))
    result = _systemd_analyze("verify", str(unit))
    assert result.returncode != 0 or _complaints(result, tmp_path)


def test_unit_has_the_promised_directives():
    directives = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            directives.setdefault(key, []).append(value)
    expected = {
        "Type": ["notify"], "NotifyAccess": ["main"], "Restart": ["on-failure"],
        "User": ["pillowd"], "Group": ["pillowd"], "SupplementaryGroups": ["gpio spi"],
        "StateDirectory": ["pillowd"],
        "ProtectSystem": ["strict"], "ProtectHome": ["yes"], "PrivateTmp": ["yes"],
        "NoNewPrivileges": ["yes"], "DevicePolicy": ["closed"],
    }
    for key, value in expected.items():
        assert directives.get(key) == value, key
    assert directives["WatchdogSec"]
    assert "/dev/mem rw" not in directives["DeviceAllow"]  # root drop-in only
    # ProtectSystem=strict leaves /etc read-only unless a directive opens it again.
    assert "ConfigurationDirectory" not in directives
    assert not any("/etc" in path for key in ("ReadWritePaths", "BindPaths")
                   for path in directives.get(key, []))


def test_the_unit_loads_every_credential_the_daemon_reads():
    # Bug 1: the daemon reads the pillow's tokens as azure-queue-sas, but the unit did
    # not load it, so it fell back to the root-only sas_file and was refused forever.
    from pillowd.daemon import TOKEN_CREDENTIAL
    from pillowd.homeassistant import transport
    from pillowd.queues import azure
    loads, defaults = {}, []
    for line in UNIT.read_text().splitlines():
        if line.startswith("LoadCredential="):
            name, path = line.removeprefix("LoadCredential=").split(":", 1)
            loads[name] = path
        elif line.startswith("SetCredential="):
            defaults.append(line.removeprefix("SetCredential=").split(":", 1)[0])
    for name in (azure.CONNECTION_STRING_CREDENTIAL, azure.SAS_CREDENTIAL,
                 transport.CREDENTIAL, TOKEN_CREDENTIAL):
        assert name in loads, f"the unit does not load the credential {name}"
        assert loads[name].startswith("/etc/pillowd/"), loads[name]
    # Each may be absent: a default keeps a missing file from failing the unit.
    assert sorted(defaults) == sorted(loads)
    assert loads[azure.SAS_CREDENTIAL] == "/etc/pillowd/queue-sas.toml"


def _exposure(result):
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1)), match.group(2)


@pytest.mark.parametrize("with_pwm_root", [False, True], ids=["unit", "unit+pwm-root"])
def test_security_exposure(tmp_path, with_pwm_root, record_property):
    unit = _staged_unit(tmp_path, with_pwm_root)
    result = _systemd_analyze("security", "--offline=yes", str(unit))
    exposure, verdict = _exposure(result)
    name = "pwm-root" if with_pwm_root else "unit"
    print(f"systemd-analyze security --offline=yes ({name}): {exposure} {verdict}")
    record_property(f"security_exposure_{name.replace('-', '_')}", exposure)
    assert 0 <= exposure <= 10
    if not with_pwm_root:
        assert exposure <= 3.5 and verdict == "OK"  # issue 7's target


def test_the_unit_pins_gpiozero_to_lgpio_so_nothing_falls_back_to_sysfs():
    # Left to choose, gpiozero tries lgpio, RPi.GPIO, pigpio, then its native
    # factory, which exports pins through /sys/class/gpio: read-only in this unit.
    environment = dict(line.split("=", 2)[1:] for line in UNIT.read_text().splitlines()
                       if line.startswith("Environment=GPIOZERO_"))
    assert environment == {"GPIOZERO_PIN_FACTORY": "lgpio"}
    code = "from gpiozero import Device; Device._default_pin_factory()"
    chosen = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, **environment}, timeout=60)
    free = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items()
                               if k != "GPIOZERO_PIN_FACTORY"}, timeout=60)
    # Not a Pi here: both fail, but only the free choice went on to the others.
    assert "Falling back from lgpio" in free.stderr and "native" in free.stderr
    assert chosen.returncode != 0
    assert "Falling back" not in chosen.stderr and "native" not in chosen.stderr
