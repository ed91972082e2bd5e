"""werkzeug's threaded WSGI server with the limits a hostile LAN cannot exhaust."""

from __future__ import annotations

import errno
import io
import logging
import resource
import socket
import threading
import time
from collections import OrderedDict

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

log = logging.getLogger(__name__)

# Connections served at once (each holds a thread; a page's WebSocket is one).
# Past it, the oldest connection still sending its headers makes room.
MAX_CONNECTIONS = 96
# Seconds from a connection's first byte wait to the end of its headers: a client
# that sends half a request (slowloris) is dropped then, or sooner if room is needed.
HEADER_SECONDS = 10.0
# Seconds any later read or write may block (a body, a WebSocket): longer than
# Engine.IO's 25 s ping interval, so a live page never trips it.
IO_SECONDS = 60.0
# Answers after which the rest of the request is not read: the connection is
# closed at once, whatever the client was still sending (e.g. a 50 MB body).
REFUSED = {401, 403, 413, 421, 429}
# Bytes of an accepted request left unread that are still read out after the answer,
# so the client sees it rather than a reset (werkzeug would read up to 10 GB).
DRAIN_BYTES = 1 << 20

_BUSY_BODY = b'{"error": "the pillow is serving as many connections as it can"}'
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nServer: pillowd\r\n"
         b"Content-Type: application/json\r\nContent-Length: %d\r\n"
         b"Retry-After: 5\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY))


def connection_cap(wanted: int = MAX_CONNECTIONS) -> int:
    """*wanted*, or less when the file limit would be reached first."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(8, min(wanted, (soft - 64) // 2))


class _Wire(io.RawIOBase):
    """A connection's reading side, with the header deadline and the read budget."""

    def __init__(self, sock: socket.socket, deadline: float):
        self._sock = sock
        self.deadline: float | None = deadline
        self.budget: int | None = None  # bytes still to be read; None: no limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.budget is not None:
            if self.budget <= 0:
                return 0
            buffer = memoryview(buffer)[:self.budget]
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the request's headers came too slowly")
            self._sock.settimeout(left)
        count = self._sock.recv_into(buffer)
        if self.budget is not None:
            self.budget -= count
        return count


class _Handler(WSGIRequestHandler):
    """One connection: headers by a deadline, then reads that may block IO_SECONDS."""

    server: "PillowServer"

    def setup(self) -> None:
        super().setup()
        self._wire = _Wire(self.connection, time.monotonic() + self.server.header_seconds)
        self.rfile = io.BufferedReader(self._wire)

    def parse_request(self) -> bool:
        ok = super().parse_request()
        # The headers are in: no more deadline, and no longer a connection to evict.
        self._wire.deadline = None
        self.connection.settimeout(self.server.io_seconds)
        self.server.headers_done(self.connection)
        return ok

    def make_environ(self):
        environ = super().make_environ()
        environ["pillowd.wire"] = self._wire
        return environ

    def version_string(self) -> str:
        return "pillowd"  # no versions of werkzeug or Python for a scanner

    def log_error(self, format, *args) -> None:  # the access log stays off
        pass


class PillowServer(ThreadedWSGIServer):
    """A thread per connection, as werkzeug's, but: at most *max_connections*, the
    oldest one still sending its headers dropped to make room, a header deadline,
    a refused request closed unread, and no busy loop at the file limit."""

    daemon_threads = True

    def __init__(self, host: str, port: int, app, *, fd: int,
                 max_connections: int | None = None,
                 header_seconds: float = HEADER_SECONDS, io_seconds: float = IO_SECONDS):
        self.max_connections = max_connections or connection_cap()
        self.header_seconds = header_seconds
        self.io_seconds = io_seconds
        # socket -> True while it is still sending its headers; oldest first.
        self._open: OrderedDict[socket.socket, bool] = OrderedDict()
        self._changed = threading.Condition()
        super().__init__(host, port, _Refusing(app), _Handler, fd=fd)

    @property
    def connections(self) -> int:
        return len(self._open)

    def headers_done(self, sock: socket.socket) -> None:
        with self._changed:
            if sock in self._open:
                self._open[sock] = False

    def _evict_one(self) -> bool:
        """Drop the oldest connection still sending its headers; False if none is."""
        with self._changed:
            victim = next((s for s, waiting in self._open.items() if waiting), None)
            if victim is None:
                return False
            self._open[victim] = False  # not picked twice
        try:  # its thread's read ends now, and the thread closes it
            victim.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return True

    def get_request(self):
        try:
            return super().get_request()
        except OSError as err:
            if err.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                raise
            # Out of descriptors: the pending connection stays in the backlog, so
            # select() would wake again at once. Make room, then wait for it.
            log.warning("out of file descriptors for the status page: %s", err.strerror)
            with self._changed:
                count = len(self._open)
            self._evict_one()
            with self._changed:
                self._changed.wait_for(lambda: len(self._open) < count, timeout=1.0)
            raise

    def verify_request(self, request, client_address) -> bool:
        if len(self._open) >= self.max_connections and not self._evict_one():
            try:  # everyone is busy being served: say so, without a thread
                request.setblocking(False)
                request.send(_BUSY)
            except OSError:
                pass
            return False
        return True

    def process_request(self, request, client_address) -> None:
        with self._changed:
            self._open[request] = True
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread: never served
            self._forget(request)
            raise

    def shutdown_request(self, request) -> None:
        try:
            super().shutdown_request(request)
        finally:
            self._forget(request)

    def _forget(self, request) -> None:
        with self._changed:
            self._open.pop(request, None)
            self._changed.notify_all()


class _Refusing:
    """WSGI middleware: a refused answer stops the request's reading; an accepted
    one may have at most DRAIN_BYTES left unread read out after it."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        wire = environ.get("pillowd.wire")

        def start(status, headers, exc_info=None):
            if wire is not None:
                wire.budget = 0 if int(status[:3]) in REFUSED else DRAIN_BYTES
            return start_response(status, headers, exc_info)

        return self.app(environ, start)
