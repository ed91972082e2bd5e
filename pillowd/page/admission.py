"""Who the status page lets in, and how much: every limit on connections, Engine.IO
sessions, handshakes and control tokens, in one place.

docs/architecture.md ("Admission") has these figures in one table with their reasons;
a limit changed here is changed there. The server (pillowd.page.server), the token
check (pillowd.page.auth) and the pages (pillowd.page.broadcast) only apply what is decided
here.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
import time
from collections import OrderedDict, deque
from urllib.parse import parse_qs

log = logging.getLogger(__name__)

# -- the limits ------------------------------------------------------------------------

# Connections served at once (each holds a thread; a page's WebSocket is one).
MAX_CONNECTIONS = 96
# Seconds from a connection's first byte to its last: headers, body, answer and the
# read-out after it together. Longer than Engine.IO's 25 s long poll. A WebSocket,
# once upgraded, has no deadline: its reads may block WEBSOCKET_IDLE_SECONDS.
CONNECTION_SECONDS = 30.0
WEBSOCKET_IDLE_SECONDS = 60.0
# Answers after which the rest of the request is not read at all.
REFUSED = {401, 403, 413, 421, 429}
# Bytes of an accepted request left unread that are read out after the answer, so
# the client sees it rather than a reset (werkzeug would read up to 10 GB).
DRAIN_BYTES = 1 << 20

# Engine.IO sessions at once (a page is one; 50 pages is bench/fanout.py's load), and
# from one address (a /64 for IPv6): past either, the stalest session makes room.
MAX_SESSIONS = 64
SESSIONS_PER_ADDRESS = 8
# Seconds a session may take from its handshake to joining /pillow.
JOIN_SECONDS = 5.0
# Handshakes one address may make in a burst, and per second after it; all addresses
# together; and the part of the overall burst kept for addresses that have not
# handshaken for FRESH_SECONDS (a new page is served before a reconnecting flood).
# A refused handshake spends nothing. Each session costs Engine.IO a ping thread for
# 25 s even when let go at once: at most 64 + 25 × 1 of them, under the thread goal.
HANDSHAKE_BURST, HANDSHAKES_PER_SECOND = 16, 1.0
ALL_HANDSHAKE_BURST, ALL_HANDSHAKES_PER_SECOND = MAX_SESSIONS, 1.0
FRESH_RESERVE, FRESH_SECONDS = 16, 10.0
# Events a page may send in a burst, and per second after it (our page sends none).
EVENT_BURST, EVENTS_PER_SECOND = 20, 2.0
# Largest Engine.IO packet, and WebSocket message, a client may send: refused as its
# header arrives, before any of it is kept.
MAX_PACKET = 64 * 1024

# A shorter control token falls to guessing on a LAN (a 4-digit one did in 15 s).
MIN_TOKEN_LENGTH = 16
# Wrong tokens from one address (a /64 for IPv6) before it is refused, and how long.
FAILURES_ALLOWED = 5
LOCKOUT_SECONDS = 60.0
# Wrong tokens the whole pillow compares a minute, from however many addresses: past
# it every control answers 429 until the budget refills; reading stays open.
WRONG_TOKENS_PER_MINUTE = 100
# Addresses remembered (for failures, handshakes): a bounded table.
REMEMBERED = 1024
# At most one log line this often about wrong tokens (plus a count of the rest).
LOG_EVERY_SECONDS = 10.0


def address_key(address: str) -> str:
    """Who a remote address is for the limits: itself, or its /64 for IPv6 (one
    home gets a /64, and picks any address in it)."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return address
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class Allowance:
    """A token bucket: *burst* at once, then *rate* a second."""

    def __init__(self, burst: float, rate: float, clock):
        self._burst, self._rate, self._clock = burst, rate, clock
        self._left, self._at = float(burst), clock()
        self.spent_at: float | None = None

    def _refill(self) -> float:
        now = self._clock()
        self._left = min(self._burst, self._left + (now - self._at) * self._rate)
        self._at = now
        return self._left

    def has(self, reserve: float = 0) -> bool:
        """Whether one can be spent leaving at least *reserve*; spends nothing."""
        return self._refill() >= 1 + reserve

    def take(self) -> None:
        self._refill()
        self._left -= 1
        self.spent_at = self._at

    def spend(self) -> bool:
        if not self.has():
            return False
        self.take()
        return True


def _remember(table: OrderedDict, key, make):
    value = table.pop(key, None) or make()
    table[key] = value
    while len(table) > REMEMBERED:
        table.popitem(last=False)
    return value


# -- control tokens ------------------------------------------------------------------------

class TokenGate:
    """Wrong control tokens: per address a lockout, for the whole pillow a budget.

    check(matches, tried, address) -> None, or the status and the reason to refuse;
    *matches* compares the token, and is only called when the budget allows."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        # when each of the last WRONG_TOKENS_PER_MINUTE wrong tokens was compared
        self._compared: deque[float] = deque(maxlen=WRONG_TOKENS_PER_MINUTE)
        self._failures: OrderedDict[str, list[float]] = OrderedDict()  # key -> times
        self._locked: OrderedDict[str, float] = OrderedDict()  # key -> refused until
        self._logged_at = -LOG_EVERY_SECONDS
        self._unlogged = 0

    def check(self, matches, tried: bool, address: str) -> tuple[int, str] | None:
        key, now = address_key(address), self._clock()
        with self._lock:
            until = self._locked.get(key)
            if until is not None and now >= until:
                del self._locked[key]
                until = None
            if until is not None:
                return 429, "too many wrong tokens from this address: try again later"
            if not tried:  # no token at all is a page that has none yet, not a guess
                return 401, "a valid 'Authorization: Bearer <token>' is needed"
            if not self._budget_left(now):
                return 429, ("the pillow has refused too many wrong tokens in the last "
                             "minute: controls are paused until it is over (reading "
                             "stays open)")
            # compared under the lock: never more than the budget, however many at once
            if matches():
                return None
            self._compared.append(now)
        self._failed(key, now)
        return 401, "a valid 'Authorization: Bearer <token>' is needed"

    def _budget_left(self, now: float) -> bool:
        """Whether fewer than WRONG_TOKENS_PER_MINUTE were compared in the last 60 s."""
        return (len(self._compared) < WRONG_TOKENS_PER_MINUTE
                or now - self._compared[0] >= 60.0)

    def retry_after(self, address: str) -> int:
        with self._lock:
            until = self._locked.get(address_key(address))
            if until is not None:
                return max(1, round(until - self._clock()))
            if self._budget_left(self._clock()):
                return 1
            return max(1, round(self._compared[0] + 60.0 - self._clock()))

    def _failed(self, key: str, now: float) -> None:
        with self._lock:
            times = self._failures.pop(key, [])
            times = [t for t in times if now - t < LOCKOUT_SECONDS] + [now]
            self._failures[key] = times
            while len(self._failures) > REMEMBERED:
                self._failures.popitem(last=False)
            locked = len(times) >= FAILURES_ALLOWED
            if locked:
                del self._failures[key]
                _remember(self._locked, key, lambda: now + LOCKOUT_SECONDS)
            say = locked or now - self._logged_at >= LOG_EVERY_SECONDS
            if say:
                unlogged, self._unlogged, self._logged_at = self._unlogged, 0, now
            else:
                self._unlogged += 1
        if say:
            more = f" ({unlogged} more since the last report)" if unlogged else ""
            if locked:
                log.warning("%d wrong control tokens from %s: refused for %.0f s%s",
                            FAILURES_ALLOWED, key, LOCKOUT_SECONDS, more)
            else:
                log.warning("a wrong control token from %s%s", key, more)


# -- connections ---------------------------------------------------------------------------

class _Connection:
    __slots__ = ("deadline", "websocket", "dropped")

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.websocket = False  # upgraded: no deadline, never dropped for room
        self.dropped = False    # chosen to make room: its deadline has passed


class Connections:
    """The server's open connections, each with its deadline; at the cap, the one
    nearest its deadline makes room (a WebSocket never: the session caps bound those)."""

    def __init__(self, cap: int, seconds: float = CONNECTION_SECONDS, clock=time.monotonic):
        self.cap = cap
        self.seconds = seconds
        self._clock = clock
        self._open: dict[object, _Connection] = {}
        self.changed = threading.Condition()

    def __len__(self) -> int:
        return len(self._open)

    def add(self, sock) -> None:
        with self.changed:
            self._open[sock] = _Connection(self._clock() + self.seconds)

    def deadline(self, sock) -> float | None:
        """When *sock*'s reads and writes must be done; None for a WebSocket."""
        entry = self._open.get(sock)
        if entry is None or entry.dropped:
            return float("-inf")
        return None if entry.websocket else entry.deadline

    def upgraded(self, sock) -> None:
        with self.changed:
            entry = self._open.get(sock)
            if entry is not None:
                entry.websocket = True

    def remove(self, sock) -> None:
        with self.changed:
            self._open.pop(sock, None)
            self.changed.notify_all()

    def victim(self):
        """The connection that makes room (nearest its deadline), marked so; None
        when every one is a WebSocket."""
        with self.changed:
            chosen = min(((e.deadline, sock) for sock, e in self._open.items()
                          if not e.websocket and not e.dropped),
                         key=lambda pair: pair[0], default=None)
            if chosen is None:
                return None
            self._open[chosen[1]].dropped = True
            return chosen[1]


def connection_cap(wanted: int = MAX_CONNECTIONS) -> int:
    """*wanted*, or less when the file limit would be reached first."""
    import resource
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(8, min(wanted, (soft - 64) // 2))


class WebSocketWire:
    """The socket a WebSocket runs on (werkzeug.socket), watching the frames a client
    sends: a message longer than *limit* closes the connection as its frame header
    arrives, before any of it is kept. Its first use marks the connection upgraded."""

    def __init__(self, sock, upgraded, limit: int = MAX_PACKET):
        self._sock = sock
        self._upgraded = upgraded
        self._limit = limit
        self._marked = False
        self._head = b""        # a frame header still arriving
        self._payload = 0       # payload bytes of the current frame still to come
        self._message = 0       # bytes of the current message so far
        self.refused = False

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def _mark(self) -> None:
        if not self._marked:
            self._marked = True
            self._upgraded()  # no deadline from now: a live page may stay for hours
            self._sock.settimeout(WEBSOCKET_IDLE_SECONDS)

    def send(self, data, *args):
        self._mark()
        return self._sock.send(data, *args)

    def sendall(self, data, *args):
        self._mark()
        return self._sock.sendall(data, *args)

    def recv(self, size, *args):
        self._mark()
        data = self._sock.recv(size, *args)
        if data and not self._watch(data):
            self.refused = True
            log.warning("a WebSocket message longer than %d bytes: closed unread",
                        self._limit)
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return b""
        return data

    def _watch(self, data: bytes) -> bool:
        """Follow the frames in *data*; False when a message is past the limit."""
        i, n = 0, len(data)
        while i < n:
            if self._payload:  # payload passes through, only counted
                step = min(self._payload, n - i)
                self._payload -= step
                i += step
                continue
            self._head += data[i:i + 1]  # a header is at most 14 bytes
            i += 1
            head = self._head
            if len(head) < 2:
                continue
            length7 = head[1] & 0x7F
            need = (2 + (2 if length7 == 126 else 8 if length7 == 127 else 0)
                    + (4 if head[1] & 0x80 else 0))
            if len(head) < need:
                continue
            self._head = b""
            if length7 == 126:
                length = int.from_bytes(head[2:4], "big")
            elif length7 == 127:
                length = int.from_bytes(head[2:10], "big")
            else:
                length = length7
            opcode = head[0] & 0x0F
            if opcode in (1, 2):  # a new message
                self._message = length
            elif opcode == 0:  # its continuation
                self._message += length
            if self._message > self._limit or length > max(self._limit, 125):
                return False
            self._payload = length
        return True


# -- Engine.IO sessions --------------------------------------------------------------------

class Ticket:
    """One Engine.IO session as the WSGI side sees it: when it began and was last
    heard from, its sid once known, the pages it joined /pillow with, and its
    connection while a WebSocket."""

    def __init__(self, opened: float, address: str, connection):
        self.opened = opened
        self.heard = opened               # its last request or acknowledgement
        self.address = address            # address_key of its handshake
        self.sid: str | None = None
        self.pages: set[str] = set()       # Socket.IO sids on /pillow
        self.connection = connection      # the WebSocket's socket; None while polling
        self.ended = False                # let go: nothing more of it is served

    def end(self) -> None:
        self.ended = True
        if self.connection is not None:
            try:  # the WebSocket's reads end now, and Engine.IO closes the session
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Sessions:
    """WSGI middleware in front of Socket.IO: Engine.IO sessions as the HTTP side
    sees them.

    A handshake (a /socket.io/ request without `sid`) is rated per address and
    overall, and a refused one spends nothing; an address that has not handshaken
    for FRESH_SECONDS may use a reserve of the overall allowance the others may not.
    At most *max_sessions* sessions are served, and SESSIONS_PER_ADDRESS from one
    address: past either, the stalest session (never joined, or heard from longest
    ago) is let go for the new one. A session not on /pillow *join_seconds* after its
    handshake is let go: a polling one by refusing its requests (Engine.IO then ends
    it at its next missed ping), a WebSocket by closing its connection.

    *connected()* gives the Socket.IO sids on /pillow now."""

    def __init__(self, app, connected, *, max_sessions: int = MAX_SESSIONS,
                 join_seconds: float = JOIN_SECONDS, clock=time.monotonic):
        self.app = app
        self._connected = connected
        self._max = max_sessions
        self._join_seconds = join_seconds
        self._clock = clock
        self._tickets: list[Ticket] = []            # oldest first
        self._by_sid: dict[str, Ticket] = {}        # polling sessions by Engine.IO sid
        self._handshakes: OrderedDict[str, Allowance] = OrderedDict()  # per address
        self._all = Allowance(ALL_HANDSHAKE_BURST, ALL_HANDSHAKES_PER_SECOND, clock)
        self._lock = threading.Lock()

    @property
    def open(self) -> int:
        """Sessions served now."""
        return sum(not t.ended for t in self._tickets)

    def heard(self, ticket: Ticket | None) -> None:
        """*ticket*'s page acknowledged something: it is alive."""
        if ticket is not None:
            ticket.heard = self._clock()

    def __call__(self, environ, start_response):
        if not environ.get("PATH_INFO", "").startswith("/socket.io"):
            return self.app(environ, start_response)
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if "sid" in query:
            return self._request(query["sid"][0], environ, start_response)
        return self._handshake(query.get("transport", ["polling"])[0], environ,
                               start_response)

    # -- one session's requests --------------------------------------------------------

    def _usable(self, ticket: Ticket, now: float, connected: set[str]) -> bool:
        return not ticket.ended and (now - ticket.opened < self._join_seconds
                                     or bool(ticket.pages & connected))

    def _request(self, sid, environ, start_response):
        now, connected = self._clock(), self._connected()
        upgrade = environ.get("HTTP_UPGRADE", "").lower() == "websocket"
        with self._lock:
            ticket = self._by_sid.get(sid)
            usable = ticket is not None and self._usable(ticket, now, connected)
            if ticket is not None and not usable:
                self._forget(ticket)
            if usable:
                ticket.heard = now
                if upgrade:
                    ticket.connection = environ.get("werkzeug.socket")
        if not usable:
            return _answer(start_response, "400 Bad Request",
                           "this session has ended: connect again")
        if not upgrade:
            return self.app(environ, start_response)
        try:  # the upgraded WebSocket runs within this request: the session with it
            return self.app(environ, start_response)
        finally:
            with self._lock:
                self._forget(ticket)

    # -- handshakes --------------------------------------------------------------------

    def _stalest(self, tickets, connected: set[str]) -> Ticket | None:
        """Of *tickets*, the one to let go: never joined first, then heard from
        longest ago."""
        live = [t for t in tickets if not t.ended]
        return min(live, key=lambda t: (bool(t.pages & connected), t.heard), default=None)

    def _handshake(self, transport, environ, start_response):
        now = self._clock()
        address = address_key(environ.get("REMOTE_ADDR", ""))
        connected = self._connected()
        with self._lock:
            mine = _remember(self._handshakes, address, lambda: Allowance(
                HANDSHAKE_BURST, HANDSHAKES_PER_SECOND, self._clock))
            fresh = mine.spent_at is None or now - mine.spent_at >= FRESH_SECONDS
            if not mine.has() or not self._all.has(0 if fresh else FRESH_RESERVE):
                # a page reconnects now and then, not this often; nothing is spent
                return _answer(start_response, "429 Too Many Requests",
                               "too many Socket.IO handshakes: try again later",
                               [("Retry-After", "5")])
            mine.take()
            self._all.take()
            for ticket in list(self._tickets):  # abandoned, or never joined
                if not self._usable(ticket, now, connected):
                    self._let_go(ticket)
            own = [t for t in self._tickets if t.address == address and not t.ended]
            if len(own) >= SESSIONS_PER_ADDRESS:
                self._let_go(self._stalest(own, connected))
            if self.open >= self._max:
                spare = self._stalest(self._tickets, connected)
                if spare is None:
                    return _answer(start_response, "503 Service Unavailable",
                                   "the pillow has as many pages open as it serves",
                                   [("Retry-After", "5")])
                self._let_go(spare)
            websocket = transport == "websocket"
            ticket = Ticket(now, address,
                            environ.get("werkzeug.socket") if websocket else None)
            self._tickets.append(ticket)
        environ[TICKET] = ticket
        if websocket:
            try:  # the whole session runs within this request
                return self.app(environ, start_response)
            finally:
                with self._lock:
                    self._forget(ticket)
        status = []

        def start(code, headers, exc_info=None):
            status.append(code)
            return start_response(code, headers, exc_info)

        body = b"".join(self.app(environ, start))
        with self._lock:
            # The OPEN packet names the session: its later requests carry that sid.
            try:
                if not status[0].startswith("200") or not body.startswith(b"0{"):
                    raise ValueError
                ticket.sid = json.loads(body[1:])["sid"]
            except (ValueError, KeyError, IndexError, TypeError):
                self._forget(ticket)
            else:
                if not ticket.ended:
                    self._by_sid[ticket.sid] = ticket
        return [body]

    def _let_go(self, ticket: Ticket) -> None:
        ticket.end()
        if ticket.connection is None:  # polling: its requests are refused from now on
            self._forget(ticket)

    def _forget(self, ticket: Ticket) -> None:
        ticket.ended = True
        if ticket in self._tickets:
            self._tickets.remove(ticket)
        if ticket.sid is not None:
            self._by_sid.pop(ticket.sid, None)


# Where the handshake's environ carries its session's Ticket to the connect handler
# (Flask-SocketIO runs every handler in a request context of that environ).
TICKET = "pillowd.session"


def _answer(start_response, status: str, why: str, headers=()):
    body = json.dumps({"error": why}).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body))), *headers])
    return [body]
