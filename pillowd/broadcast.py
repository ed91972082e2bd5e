"""Pushes the pillow's state and LED frames to every open page over Socket.IO."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Callable

import engineio
import socketio

log = logging.getLogger(__name__)

NAMESPACE = "/pillow"
# Frames a page may have unacknowledged before it is sent no more: a slow phone
# skips frames instead of growing a queue in the server's memory. Our page and
# python-socketio clients acknowledge each frame by themselves.
BACKLOG = 4
# Engine.IO sessions at once (a page is one; 50 pages is bench/fanout.py's load);
# a handshake past it first ends sessions that never joined the namespace.
MAX_SESSIONS = 64
# Seconds a session may take from its handshake to joining /pillow: past that it
# is abandoned, and ended at the next handshake.
JOIN_SECONDS = 5.0
# Handshakes one address may make in a burst, and per second after it, and all
# addresses together: each session costs Engine.IO a thread until its first ping
# (25 s), even one ended at once, so at most 128 + 25 × 2 such threads.
HANDSHAKE_BURST, HANDSHAKES_PER_SECOND = MAX_SESSIONS, 1.0
ALL_HANDSHAKE_BURST, ALL_HANDSHAKES_PER_SECOND = 2 * MAX_SESSIONS, 2.0
# Events a page may send in a burst, and per second after it: a page sends none of
# its own (only acknowledgements, which are not events), so a client past this is
# not our page, and is disconnected.
EVENT_BURST, EVENTS_PER_SECOND = 20, 2.0
# Largest Engine.IO packet a client may send: our page sends only its connect.
MAX_PACKET = 64 * 1024


class Refused(Exception):
    """Why a page may not connect (told to the client as its connect_error)."""


class Allowance:
    """A token bucket: *burst* at once, then *rate* a second."""

    def __init__(self, burst: float, rate: float, clock):
        self._burst, self._rate, self._clock = burst, rate, clock
        self._left, self._at = float(burst), clock()

    def spend(self) -> bool:
        now = self._clock()
        self._left = min(self._burst, self._left + (now - self._at) * self._rate)
        self._at = now
        if self._left < 1:
            return False
        self._left -= 1
        return True


class _Page:
    """One connected page: its frames in flight and its event allowance."""

    def __init__(self, clock):
        self.in_flight = 0
        self.events = Allowance(EVENT_BURST, EVENTS_PER_SECOND, clock)

    def acked(self, *_):
        self.in_flight = max(0, self.in_flight - 1)


class Broadcaster:
    """The Socket.IO side of the status page: who is connected, and what they are sent.

    *admit(environ, auth)* raises Refused when a page may not connect (its host,
    its token). The two pushers are loops the daemon runs and health watches.
    """

    def __init__(self, pillow, renderer, *, admit: Callable[[dict, object], None],
                 frames_per_second: float = 20, max_sessions: int = MAX_SESSIONS,
                 backlog: int = BACKLOG, join_seconds: float = JOIN_SECONDS,
                 clock=time.monotonic):
        self.pillow = pillow
        self.renderer = renderer
        self._admit = admit
        self._backlog = backlog
        self._max_sessions = max_sessions
        self._join_seconds = join_seconds
        self._clock = clock
        self._pages: dict[str, _Page] = {}       # Socket.IO sid -> its page
        self._sessions: dict[str, float] = {}    # Engine.IO sid -> handshake time, until it joins
        self._joined: set[str] = set()           # Engine.IO sids that joined /pillow
        self._handshakes: OrderedDict[str, Allowance] = OrderedDict()  # per address
        self._all_handshakes = Allowance(ALL_HANDSHAKE_BURST, ALL_HANDSHAKES_PER_SECOND,
                                        clock)
        self._lock = threading.Lock()            # the three above
        # A binary event goes out as two Engine.IO packets: one interleaved with
        # another thread's would corrupt the client's stream. Held across a whole
        # connect too, whose CONNECT packet python-socketio sends itself.
        self.emit_lock = threading.RLock()
        self.server = _Server(self, async_mode="threading", async_handlers=False,
                              logger=False, engineio_logger=False,
                              max_http_buffer_size=MAX_PACKET)
        self.server.register_namespace(_Namespace(self))
        self.states = StatePusher(self)
        self.frames = FramePusher(self, 1 / frames_per_second)
        pillow.on_state(self.states.changed)
        renderer.on_frame(self.frames.new_frame)

    @property
    def clients(self) -> int:
        """Pages connected now."""
        return len(self._pages)

    @property
    def sessions(self) -> int:
        """Engine.IO sessions open now, joined or not."""
        return len(self._sessions) + len(self._joined)

    # -- sending ---------------------------------------------------------------------

    def _emit(self, event, data, sid, callback=None) -> None:
        with self.emit_lock:
            self.server.emit(event, data, to=sid, namespace=NAMESPACE, callback=callback)

    def send_state(self) -> None:
        snapshot = self.pillow.snapshot()
        for sid in list(self._pages):
            self._emit("state", snapshot, sid)

    def send_frame(self, frame: bytes) -> None:
        for sid, page in list(self._pages.items()):
            if page.in_flight >= self._backlog:
                continue  # behind: this frame is skipped, the next may go
            page.in_flight += 1
            self._emit("frame", frame, sid, callback=page.acked)

    # -- sessions and pages ------------------------------------------------------------

    def _session_opened(self, eio_sid: str, address: str) -> bool:
        now = self._clock()
        with self._lock:
            allowance = self._handshakes.pop(address, None) or Allowance(
                HANDSHAKE_BURST, HANDSHAKES_PER_SECOND, self._clock)
            self._handshakes[address] = allowance
            while len(self._handshakes) > 1024:
                self._handshakes.popitem(last=False)
            if not allowance.spend() or not self._all_handshakes.spend():
                return False  # a page reconnects now and then, not this often
            stale = [s for s, at in self._sessions.items() if now - at > self._join_seconds]
            if self.sessions - len(stale) >= self._max_sessions and self._sessions:
                stale.append(min(self._sessions, key=self._sessions.get))
            for sid in stale:
                self._sessions.pop(sid, None)
            full = self.sessions >= self._max_sessions
            if not full:
                self._sessions[eio_sid] = now
        for sid in stale:  # never joined: abandoned, or one too many
            self.server.eio.end(sid)
        return not full

    def _session_closed(self, eio_sid: str) -> None:
        with self._lock:
            self._sessions.pop(eio_sid, None)
            self._joined.discard(eio_sid)

    def _connect(self, sid: str, environ: dict, auth) -> None:
        self._admit(environ, auth)  # raises Refused
        eio_sid = self.server.manager.eio_sid_from_sid(sid, NAMESPACE)
        with self._lock:
            if self._sessions.pop(eio_sid, None) is not None:
                self._joined.add(eio_sid)
            self._pages[sid] = _Page(self._clock)
        self._emit("state", self.pillow.snapshot(), sid)
        page = self._pages[sid]
        page.in_flight += 1
        self._emit("frame", self.renderer.last_frame, sid, callback=page.acked)

    def _disconnect(self, sid: str) -> None:
        with self._lock:
            self._pages.pop(sid, None)

    def _client_event(self, sid: str, event) -> None:
        # No event of a page is ours to handle, reserved names included.
        page = self._pages.get(sid)
        if page is not None and not page.events.spend():
            log.warning("a status page client sent events faster than a page does: "
                        "disconnected")
            self._pages.pop(sid, None)
            # The whole session, not only /pillow: it could join again at once.
            self.server.eio.end(self.server.manager.eio_sid_from_sid(sid, NAMESPACE))


class _Engine(engineio.Server):
    """Engine.IO's server, able to end a session whose client never comes back."""

    def end(self, sid: str) -> None:
        # disconnect() would wait for the client to fetch its CLOSE packet, which an
        # abandoned polling session never does: the session is dropped unsent.
        session = self.sockets.pop(sid, None)
        if session is not None:
            session.close(wait=False, abort=True)


class _Server(socketio.Server):
    """python-socketio's server, telling the broadcaster when Engine.IO sessions
    open and close (the session cap)."""

    def __init__(self, broadcaster: Broadcaster, **options):
        self._broadcaster = broadcaster
        super().__init__(**options)

    def _engineio_server_class(self):
        return _Engine

    def _handle_eio_connect(self, eio_sid, environ):
        if not self._broadcaster._session_opened(eio_sid, environ.get("REMOTE_ADDR", "")):
            return False  # Engine.IO answers the handshake 401
        return super()._handle_eio_connect(eio_sid, environ)

    def _handle_connect(self, eio_sid, namespace, data):
        with self._broadcaster.emit_lock:
            return super()._handle_connect(eio_sid, namespace, data)

    def _handle_eio_disconnect(self, eio_sid, reason):
        try:
            return super()._handle_eio_disconnect(eio_sid, reason)
        finally:
            self._broadcaster._session_closed(eio_sid)


class _Namespace(socketio.Namespace):
    """/pillow: the real connect and disconnect reach the broadcaster; every event a
    client sends, `connect` and `disconnect` included, is only counted."""

    def __init__(self, broadcaster: Broadcaster):
        super().__init__(NAMESPACE)
        self._broadcaster = broadcaster

    def trigger_event(self, event, *args):
        b = self._broadcaster
        sid = args[0] if args else None
        if event == "connect" and len(args) >= 2 and \
                args[1] is self.server.get_environ(sid, NAMESPACE):
            # The server's own call carries the very environ it keeps; an event a
            # client names "connect" carries only what it sent.
            try:
                b._connect(sid, args[1], args[2] if len(args) > 2 else None)
            except Refused as err:
                raise socketio.exceptions.ConnectionRefusedError(str(err)) from None
            return True
        if event == "disconnect" and not self.server.manager.is_connected(sid, NAMESPACE):
            b._disconnect(sid)  # the server's own: the client is leaving
            return None
        b._client_event(sid, event)
        return None


class _Pusher:
    """A loop that sleeps until there is something to push; health sees its beat."""

    def __init__(self):
        self.heartbeat = time.monotonic()
        self.resting = True
        self._wake = threading.Event()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _sleep(self) -> bool:
        """Wait for a wake-up; False once stopped."""
        self.resting = True
        self._wake.wait()
        self.resting = False
        self.heartbeat = time.monotonic()
        return not self._stop.is_set()


class StatePusher(_Pusher):
    """Sends the snapshot to every page when it changes: a burst of changes costs one."""

    def __init__(self, broadcaster: Broadcaster):
        super().__init__()
        self._b = broadcaster

    def changed(self) -> None:
        self._wake.set()

    def run(self) -> None:
        while self._sleep():
            self._wake.clear()
            if self._b.clients:
                try:
                    self._b.send_state()
                except Exception:  # one bad push must not end the loop
                    log.exception("the state could not be pushed to the pages")


class FramePusher(_Pusher):
    """Sends what the LEDs show to every page, at most frames_per_second."""

    def __init__(self, broadcaster: Broadcaster, interval: float):
        super().__init__()
        self._b = broadcaster
        self._interval = interval

    def new_frame(self, frame: bytes) -> None:
        # In the render thread: only a flag, and only while someone watches.
        if self._b.clients:
            self._wake.set()

    def run(self) -> None:
        last, sent_at = None, -self._interval
        while self._sleep():
            # A frame due sooner than the interval waits out the rest of it (frames
            # shown meanwhile are skipped); one after a pause goes at once.
            early = sent_at + self._interval - time.monotonic()
            if early > 0 and self._stop.wait(early):
                return
            self._wake.clear()
            frame = self._b.renderer.last_frame
            if self._b.clients and frame is not last:
                try:
                    self._b.send_frame(frame)
                except Exception:
                    log.exception("a frame could not be pushed to the pages")
                last, sent_at = frame, time.monotonic()
