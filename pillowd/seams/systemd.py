"""The daemon's side of systemd: readiness and status, the watchdog, the journal."""

# This module knows the systemd protocol and nothing of pillowd's config: the
# wiring module decides when the daemon is ready, what its status line says and
# which loops the watchdog watches. systemd-python is an optional extra (the
# "systemd" extra), so the notify protocol is also spoken here directly: it is
# one datagram to the socket named by $NOTIFY_SOCKET (sd_notify(3)).

import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping

from .printable import EscapingFormatter, escape

try:
    from systemd import daemon as _sd_daemon
except ImportError:
    _sd_daemon = None

try:
    from systemd import journal as _sd_journal
except ImportError:
    _sd_journal = None


__all__ = ["SystemdNotifier", "Watchdog", "journal_handler"]

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Tells the service manager about the daemon's state (sd_notify(3)).

    Reads ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` from
    *environ*. Without ``NOTIFY_SOCKET`` (run from a shell, in tests) it is
    disabled and every call does nothing, so callers never need to check.

    Messages go through ``systemd.daemon.notify`` when systemd-python is
    installed and *environ* names the same socket as the process environment
    (libsystemd only reads the latter); otherwise this module sends the
    datagram itself. *libsystemd* forces one way or the other.
    """

    def __init__(self, environ: Mapping[str, str] = os.environ, *,
                 libsystemd: bool | None = None):
        self._address = environ.get("NOTIFY_SOCKET", "")
        if libsystemd is None:
            libsystemd = (
                _sd_daemon is not None
                and self._address == os.environ.get("NOTIFY_SOCKET", ""))
        elif libsystemd and _sd_daemon is None:
            raise ImportError("systemd-python is not installed")
        self.backend = "libsystemd" if libsystemd else "socket"
        # Our own sender handles file-system and abstract sockets; libsystemd
        # also knows newer kinds (vsock:) that we leave to it.
        self.enabled = bool(self._address) and (
            libsystemd or self._address[0] in "/@")
        self._watchdog_usec = _watchdog_usec(environ)
        self._lock = threading.Lock()
        self._failing = False

    def ready(self, status: str) -> None:
        """Say the daemon can serve now; systemd then finishes starting it."""
        self.notify("READY=1", "STATUS=" + _one_line(status))

    def status(self, text: str) -> None:
        """Set the line ``systemctl status pillowd`` shows."""
        self.notify("STATUS=" + _one_line(text))

    def stopping(self) -> None:
        """Say the daemon has begun shutting down."""
        self.notify("STOPPING=1", "STATUS=Stopping")

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings, or None when systemd wants none.

        Half of ``WatchdogSec=``, as sd_watchdog_enabled(3) advises, so one
        late ping does not get the daemon killed.
        """
        if not self.enabled or self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` *fields* in one message; True if it was sent.

        A failure to reach systemd is logged once and never raised: the
        pillow keeps running, and a missing watchdog ping is what restarts it
        if it truly hangs.
        """
        if not self.enabled:
            return False
        message = "\n".join(fields)
        with self._lock:
            try:
                if self.backend == "libsystemd":
                    sent = _sd_daemon.notify(message)
                else:
                    _send_datagram(self._address, message)
                    sent = True
            except OSError as err:
                sent = False
                if not self._failing:
                    log.warning("cannot notify systemd at %s: %s",
                                self._address, err)
            else:
                if self._failing and sent:
                    log.info("notifying systemd again")
            self._failing = not sent
            return sent


class Watchdog:
    """Pings systemd's watchdog while every liveness check passes, and keeps the
    ``STATUS=`` line ``systemctl status`` shows up to date.

    *checks* maps a name (used in the log and in ``STATUS=``) to a function
    returning True while the part it watches makes progress; a check that
    raises counts as failed. Every *interval* seconds the watchdog runs all
    checks: if all pass it sends ``WATCHDOG=1`` (with the *status* line when
    that changed); if any fails it sends no ping, so systemd kills and restarts
    the daemon once ``WatchdogSec=`` has passed since the last one. With
    *interval* None (no ``WatchdogSec=``) it only keeps the status line.

    changed() says the status may have changed: the same thread, which waits
    for that or the next ping, sends the new line at once. Changes that come
    while it sends collapse into one look at the line, and an unchanged line is
    never sent again.
    """

    def __init__(self, notifier: SystemdNotifier,
                 checks: Mapping[str, Callable[[], bool]], interval: float | None,
                 status: Callable[[], str] | None = None, *,
                 sent_status: str | None = None, clock=time.monotonic):
        if interval is not None and interval <= 0:
            raise ValueError("watchdog interval must be positive")
        self.notifier = notifier
        self.checks = dict(checks)
        self.interval = interval
        self._status = status
        # The line systemd has already (READY=1 carries one): not sent again.
        self._last_status = None if sent_status is None else _one_line(sent_status)
        self._failing = ()
        self._clock = clock
        self._stopping = False
        self._wake = threading.Event()   # changed(), or stop()
        self._thread = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("watchdog already started")
        self._thread = threading.Thread(
            target=self._run, name="pillowd-systemd", daemon=True)
        self._thread.start()

    def changed(self) -> None:
        """The status line may read differently now (called from any thread)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop pinging; returns at once (the thread waits on an Event)."""
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def _run(self):
        # First ping at once: systemd's clock starts when READY=1 arrives.
        due = self._clock()
        while not self._stopping:
            self._wake.clear()  # before reading the line: a change meanwhile is seen
            if self.interval is not None and self._clock() >= due:
                self.check()
                due = self._clock() + self.interval
            else:
                self.update_status()
            timeout = None if self.interval is None else max(0.0, due - self._clock())
            self._wake.wait(timeout)

    def update_status(self) -> bool:
        """Send the status line if it changed (not while stalled: that line stays
        until the loops move again); True if it was sent."""
        if self._status is None or self._failing:
            return False
        text = self._status_line()
        if text is None or text == self._last_status:
            return False
        self._last_status = text
        return self.notifier.notify("STATUS=" + text)

    def _status_line(self) -> str | None:
        try:
            return _one_line(self._status())
        except Exception:
            log.exception("watchdog: status line failed")
            return None

    def check(self) -> bool:
        """Run the checks once and ping if all pass; True if it pinged."""
        failing = tuple(
            name for name, check in self.checks.items() if not _passes(name, check))
        if failing:
            if failing != self._failing:
                log.warning("watchdog: no progress in %s; not pinging systemd",
                            ", ".join(failing))
                self.notifier.status("Stalled: " + ", ".join(failing))
                self._last_status = None
            self._failing = failing
            return False
        if self._failing:
            log.info("watchdog: %s making progress again", ", ".join(self._failing))
            self._failing = ()
        fields = ["WATCHDOG=1"]
        if self._status is not None:
            text = self._status_line()
            if text is not None and text != self._last_status:
                fields.append("STATUS=" + text)
                self._last_status = text
        return self.notifier.notify(*fields)


def journal_handler(level=logging.NOTSET, environ: Mapping[str, str] = os.environ,
                    *, identifier: str = "pillowd") -> logging.Handler | None:
    """A handler writing to the journal, or None when that is not the place.

    Returns systemd-python's ``JournalHandler`` when the process runs under
    systemd (stderr is the journal stream named by ``JOURNAL_STREAM``, or
    ``INVOCATION_ID`` is set and stderr is not a terminal) and systemd-python
    is installed; otherwise None, and the caller logs to stderr as usual.

    Messages are escaped (pillowd.seams.printable): one record, one line. Every
    ``extra=`` key of a log record becomes a journal field, so
    ``log.info(..., extra={"PILLOW_OUTCOME": "rejected"})`` can be found with
    ``journalctl -u pillowd PILLOW_OUTCOME=rejected``. Journal field names
    are upper case letters, digits and underscores; ``MESSAGE_ID`` is
    reserved for 128-bit catalog ids, hence ``PILLOW_MESSAGE_ID``.
    """
    if _sd_journal is None or not _under_systemd(environ, sys.stderr):
        return None
    handler = _sd_journal.JournalHandler(level=level, SYSLOG_IDENTIFIER=identifier)
    # journalctl prints a newline in MESSAGE as a new line: escaped, a message's
    # text can never pass for another entry, nor steer the reader's terminal.
    handler.setFormatter(EscapingFormatter())
    return handler


def _under_systemd(environ, stream) -> bool:
    stream_id = environ.get("JOURNAL_STREAM", "")
    if stream_id:
        # systemd.exec(5): JOURNAL_STREAM is "DEVICE:INODE" of the stream;
        # it is inherited, so it counts only if stderr still is that stream.
        try:
            st = os.fstat(stream.fileno())
        except (AttributeError, OSError, ValueError):
            return False
        return stream_id == f"{st.st_dev}:{st.st_ino}"
    if not environ.get("INVOCATION_ID"):
        return False
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):
        return True


def _watchdog_usec(environ) -> int | None:
    pid = environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (sd_watchdog_enabled(3))
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec if usec > 0 else None


def _send_datagram(address: str, message: str) -> None:
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall(message.encode("utf-8"))


def _one_line(text: str) -> str:
    # A newline would start a new KEY=VALUE assignment in the message, and any other
    # control character would reach the terminal of whoever runs `systemctl status`.
    return escape(text)


def _passes(name, check) -> bool:
    try:
        return bool(check())
    except Exception:
        log.exception("watchdog: check %s failed", name)
        return False
