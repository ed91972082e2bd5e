"""A loopback HTTP/1.1 proxy that counts requests and can answer them with faults instead.

Put it between a client and a server (Azurite) to see what the client really sends,
from outside the client, and to make the server seem to throttle or fail:

    proxy = FaultProxy(azurite.port)          # listens on 127.0.0.1:proxy.port
    proxy.fail(503, "ServerBusy")             # every request now gets a 503
    proxy.fail(None)                          # back to passing requests through
    proxy.refuse(True)                        # new and open connections are dropped
    proxy.hang(True)                          # requests are read, never answered
    proxy.hold("DELETE", "10.0.0.2")          # that client's DELETEs taken, never passed on
    proxy.release()                           # ... and their connections dropped
    proxy.requests, proxy.times               # what was asked, and when (monotonic)
    proxy.lines, proxy.peers                  # "METHOD /path", and from which address
    proxy.close()

It understands just enough HTTP/1.1 to find where each request ends (headers, then
Content-Length bytes; chunked request bodies are not supported), which is all the
Azure SDK and requests need. Responses are relayed as raw bytes.
"""

from __future__ import annotations

import socket
import threading
import time

_REASONS = {400: "Bad Request", 403: "Forbidden", 429: "Too Many Requests",
            500: "Internal Server Error", 503: "Server Busy", 504: "Gateway Timeout"}


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1",
                 listen_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.requests = 0
        self.faulted = 0
        self.times: list[float] = []
        self.lines: list[str] = []       # "METHOD /path" of each request, no query
        self.peers: list[str] = []       # the address each request came from
        self._hold: tuple[str, str] | None = None  # (method, peer) taken, never passed on
        self.holding = threading.Event()  # set once such a request has been taken
        self._released = threading.Event()
        self._fault: tuple[int, str | None] | None = None
        self._refuse = False
        self._flowing = threading.Event()  # cleared while hanging; set again by close()
        self._flowing.set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._server = socket.create_server((listen_host, 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name="faultproxy").start()

    def endpoint(self, path: str = "") -> str:
        return f"http://{self.listen_host}:{self.port}{path}"

    # -- what the test controls ----------------------------------------------------

    def fail(self, status: int | None, code: str | None = None) -> None:
        """Answer every request with *status* (and x-ms-error-code *code*); None: pass."""
        self._fault = None if status is None else (status, code)

    def refuse(self, on: bool = True) -> None:
        """Drop every connection, open or new, as a dead network would."""
        self._refuse = on
        if on:
            self._drop_all()

    def hang(self, on: bool = True) -> None:
        """Take requests and answer none, as a server stuck behind a live socket would;
        held requests are passed on once the hang ends (if their client still waits)."""
        if on:
            self._flowing.clear()
        else:
            self._flowing.set()

    def hold(self, method: str, peer: str) -> None:
        """Take every *method* request from the client at address *peer* and answer
        none, as if it were still on its way (`holding` is set at the first), until
        release() drops their connections, as a client killed meanwhile would see."""
        self.holding.clear()
        self._released.clear()
        self._hold = (method, peer)

    def release(self) -> None:
        self._hold = None
        self._released.set()

    def reset_counts(self) -> None:
        with self._lock:
            self.requests = self.faulted = 0
            self.times.clear()
            self.lines.clear()
            self.peers.clear()

    def close(self) -> None:
        self._closed.set()
        self._flowing.set()  # held requests end with the proxy
        self._released.set()
        self._server.close()
        self._drop_all()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the plumbing ------------------------------------------------------------------

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _drop(self, *socks) -> None:
        for sock in socks:
            if sock is None:
                continue
            with self._lock:
                self._sockets.discard(sock)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _drop_all(self) -> None:
        with self._lock:
            socks = list(self._sockets)
        self._drop(*socks)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, address = self._server.accept()
            except OSError:
                return
            if self._refuse:
                client.close()
                continue
            self._track(client)
            threading.Thread(target=self._serve, args=(client, address[0]),
                             daemon=True).start()

    def _serve(self, client: socket.socket, peer: str) -> None:
        upstream = None
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, rest = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip() or 0)
                while len(rest) < length:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    rest += chunk
                request, buffer = head + b"\r\n\r\n" + rest[:length], rest[length:]
                method, _, target = head.split(b"\r\n", 1)[0].decode(
                    "latin-1").partition(" ")
                with self._lock:
                    self.requests += 1
                    self.times.append(time.monotonic())
                    self.lines.append(f"{method} {target.split('?')[0].split(' ')[0]}")
                    self.peers.append(peer)
                if self._refuse:
                    return
                if self._hold == (method, peer):
                    self.holding.set()
                    self._released.wait()
                    return
                self._flowing.wait()  # until the hang ends, or the proxy closes
                if self._closed.is_set():
                    return
                fault = self._fault
                if fault is not None:
                    with self._lock:
                        self.faulted += 1
                    client.sendall(self._answer(*fault))
                    continue
                if upstream is None:
                    upstream = socket.create_connection(self.target, timeout=10)
                    upstream.settimeout(None)
                    self._track(upstream)
                    threading.Thread(target=self._relay, args=(upstream, client),
                                     daemon=True).start()
                upstream.sendall(request)
        except OSError:
            pass
        finally:
            self._drop(client, upstream)

    def _relay(self, upstream: socket.socket, client: socket.socket) -> None:
        try:
            while True:
                chunk = upstream.recv(65536)
                if not chunk:
                    break
                client.sendall(chunk)
        except OSError:
            pass
        finally:
            self._drop(client, upstream)

    @staticmethod
    def _answer(status: int, code: str | None) -> bytes:
        body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code or status}'
                f"</Code><Message>injected by faultproxy</Message></Error>").encode()
        headers = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
                   "Content-Type: application/xml", f"Content-Length: {len(body)}",
                   "x-ms-request-id: faultproxy", "x-ms-version: 2021-02-12"]
        if code:
            headers.append(f"x-ms-error-code: {code}")
        return ("\r\n".join(headers) + "\r\n\r\n").encode() + body
