"""werkzeug's threaded WSGI server, applying pillowd.page.admission's connection limits."""

from __future__ import annotations

import errno
import functools
import io
import logging
import socket
import sys
import time

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from . import admission

log = logging.getLogger(__name__)

_BUSY_BODY = b'{"error": "the pillow is serving as many connections as it can"}'
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nServer: pillowd\r\n"
         b"Content-Type: application/json\r\nContent-Length: %d\r\n"
         b"Retry-After: 5\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY))


class _Wire(io.RawIOBase):
    """A connection's reading side, with its deadline and the read budget."""

    def __init__(self, sock: socket.socket, deadline):
        self._sock = sock
        self._deadline = deadline  # () -> the connection's deadline; None: a WebSocket
        self.budget: int | None = None  # bytes still to be read; None: no limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.budget is not None:
            if self.budget <= 0:
                return 0
            buffer = memoryview(buffer)[:self.budget]
        _time_left(self._sock, self._deadline())
        try:
            count = self._sock.recv_into(buffer)
        except OSError as err:
            if err.errno == errno.EBADF:  # closed under it (a WebSocket that ended)
                return 0
            raise
        if self.budget is not None:
            self.budget -= count
        return count


class _Writer(io.RawIOBase):
    """A connection's writing side: an answer is sent by the same deadline."""

    def __init__(self, sock: socket.socket, deadline):
        self._sock = sock
        self._deadline = deadline

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        _time_left(self._sock, self._deadline())
        self._sock.sendall(data)
        return len(data)


def _time_left(sock: socket.socket, deadline: float | None) -> None:
    if deadline is None:
        sock.settimeout(admission.WEBSOCKET_IDLE_SECONDS)
        return
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the connection's deadline passed")
    sock.settimeout(left)


class _Handler(WSGIRequestHandler):
    """One connection, with one deadline from its first byte to its last."""

    server: "PillowServer"

    def setup(self) -> None:
        super().setup()
        deadline = functools.partial(self.server.connections.deadline, self.connection)
        self._wire = _Wire(self.connection, deadline)
        self.rfile = io.BufferedReader(self._wire)
        self.wfile = _Writer(self.connection, deadline)

    def make_environ(self):
        environ = super().make_environ()
        environ["pillowd.wire"] = self._wire
        connections, sock = self.server.connections, self.connection
        environ["werkzeug.socket"] = admission.WebSocketWire(
            sock, lambda: connections.upgraded(sock))
        return environ

    def connection_dropped(self, error, environ=None) -> None:
        self.close_connection = True  # nothing more is read from it

    def version_string(self) -> str:
        return "pillowd"  # no versions of werkzeug or Python for a scanner

    def log_error(self, format, *args) -> None:  # the access log stays off
        pass


class PillowServer(ThreadedWSGIServer):
    """A thread per connection, as werkzeug's, but: at most *max_connections*, one
    deadline per connection, the one nearest its deadline dropped to make room, a
    refused request closed unread, and no busy loop at the file limit."""

    daemon_threads = True

    def __init__(self, host: str, port: int, app, *, fd: int,
                 max_connections: int | None = None,
                 connection_seconds: float = admission.CONNECTION_SECONDS):
        self.connections = admission.Connections(
            max_connections or admission.connection_cap(), connection_seconds)
        self.max_connections = self.connections.cap
        super().__init__(host, port, _Refusing(app), _Handler, fd=fd)

    def _evict_one(self) -> bool:
        """Drop the connection nearest its deadline; False if all are WebSockets."""
        victim = self.connections.victim()
        if victim is None:
            return False
        try:  # its thread's read or write ends now, and the thread closes it
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
            changed = self.connections.changed
            with changed:
                count = len(self.connections)
            self._evict_one()
            with changed:
                changed.wait_for(lambda: len(self.connections) < count, timeout=1.0)
            raise

    def verify_request(self, request, client_address) -> bool:
        if len(self.connections) >= self.max_connections and not self._evict_one():
            try:  # every connection is a page's WebSocket: say so, without a thread
                request.setblocking(False)
                request.send(_BUSY)
            except OSError:
                pass
            return False
        return True

    def process_request(self, request, client_address) -> None:
        self.connections.add(request)
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread: never served
            self.connections.remove(request)
            raise

    def shutdown_request(self, request) -> None:
        try:
            super().shutdown_request(request)
        finally:
            self.connections.remove(request)

    def handle_error(self, request, client_address) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # a closed connection is ordinary
            log.debug("a status page connection ended: %s", error)
            return
        log.exception("the status page failed serving a connection")


class _Refusing:
    """WSGI middleware: a refused answer stops the request's reading; an accepted
    one may have at most DRAIN_BYTES left unread read out after it."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        wire = environ.get("pillowd.wire")

        def start(status, headers, exc_info=None):
            if wire is not None:
                wire.budget = (0 if int(status[:3]) in admission.REFUSED
                               else admission.DRAIN_BYTES)
            return start_response(status, headers, exc_info)

        return self.app(environ, start)
