"""Pushes the pillow's state and LED frames to every open page over Flask-SocketIO."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from flask import request
from flask_socketio import ConnectionRefusedError, SocketIO

from .admission import (EVENT_BURST, EVENTS_PER_SECOND, JOIN_SECONDS, MAX_PACKET,
                        MAX_SESSIONS, TICKET, Allowance, Sessions)

log = logging.getLogger(__name__)

NAMESPACE = "/pillow"
# Frames a page may have unacknowledged before it is sent no more: a slow phone
# skips frames instead of growing a queue in the server's memory. Our page and
# python-socketio clients acknowledge each frame by themselves.
BACKLOG = 4


class Refused(Exception):
    """Why a page may not connect (told to the client as its connect_error)."""


class _Page:
    """One connected page: its frames in flight and its event allowance.

    A page is pushed to only once it has acknowledged its first frame: python-socketio
    sends the CONNECT packet after the connect handler returns, and a binary frame
    from a pusher (two Engine.IO packets) must never straddle it."""

    def __init__(self, ticket, version: int, clock, activated: Callable, heard: Callable):
        self.ticket = ticket
        self._heard = heard
        self.version = version            # of the state sent on connect
        self.in_flight = 0
        self.active = False
        self.flooded = False
        self.events = Allowance(EVENT_BURST, EVENTS_PER_SECOND, clock)
        self._activated = activated

    def acked(self, *_):
        self.in_flight = max(0, self.in_flight - 1)
        self._heard(self.ticket)  # alive: not the stalest session
        if not self.active:
            self.active = True
            self._activated(self)


class Broadcaster:
    """The Socket.IO side of the status page: who is connected, and what they are sent.

    *admit(environ, auth)* raises Refused when a page may not connect (its host,
    its token). The two pushers are loops the daemon runs and health watches.
    init_app(app) attaches it to the Flask app, as Flask extensions do.
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
        self._pages: dict[str, _Page] = {}   # Socket.IO sid -> its page
        self._lock = threading.Lock()        # _pages
        # A binary event goes out as two Engine.IO packets: one interleaved with
        # another thread's would corrupt the client's stream.
        self.emit_lock = threading.Lock()
        # threading: never eventlet/gevent even when installed; handlers run in the
        # thread that read the packet (no thread per event); the default
        # cors_allowed_origins admits only the page's own origin.
        self.socketio = SocketIO(async_mode="threading", async_handlers=False,
                                 logger=False, engineio_logger=False,
                                 max_http_buffer_size=MAX_PACKET)
        self.socketio.on("connect", namespace=NAMESPACE)(self._on_connect)
        self.socketio.on("disconnect", namespace=NAMESPACE)(self._on_disconnect)
        self.socketio.on("*", namespace=NAMESPACE)(self._on_event)
        self.sessions: Sessions | None = None
        self.states = StatePusher(self)
        self.frames = FramePusher(self, 1 / frames_per_second)
        pillow.on_state(self.states.changed)
        renderer.on_frame(self.frames.new_frame)

    def init_app(self, app) -> None:
        """Socket.IO for *app*, with the session rules in front of it."""
        self.socketio.init_app(app)
        self.sessions = Sessions(app.wsgi_app, self.connected,
                                 max_sessions=self._max_sessions,
                                 join_seconds=self._join_seconds, clock=self._clock)
        app.wsgi_app = self.sessions

    def connected(self) -> set[str]:
        """Socket.IO sids on /pillow now, as python-socketio's client manager has them."""
        if self.socketio.server is None:
            return set()
        return {sid for sid, _ in
                self.socketio.server.manager.get_participants(NAMESPACE, None)}

    def _live(self) -> dict[str, _Page]:
        """Pages still connected; those that left are forgotten here."""
        known = set(self._pages)  # before asking: a page joining meanwhile stays
        connected = self.connected()
        with self._lock:
            for sid in known - connected:
                self._pages.pop(sid, None)
            return dict(self._pages)

    @property
    def clients(self) -> int:
        """Pages connected now."""
        return len(self._live()) if self._pages else 0

    @property
    def watched(self) -> bool:
        """Whether a page may be watching: cheap enough for every rendered frame (a
        page that left is forgotten at the next push)."""
        return bool(self._pages)

    # -- sending ---------------------------------------------------------------------

    def _emit(self, event, data, sid, callback=None) -> None:
        with self.emit_lock:
            self.socketio.emit(event, data, to=sid, namespace=NAMESPACE, callback=callback)

    def send_state(self) -> None:
        snapshot = self.pillow.snapshot()
        for sid, page in self._live().items():
            if page.active:
                self._emit("state", snapshot, sid)

    def send_frame(self, frame: bytes) -> None:
        for sid, page in self._live().items():
            if not page.active or page.in_flight >= self._backlog:
                continue  # behind: this frame is skipped, the next may go
            page.in_flight += 1
            self._emit("frame", frame, sid, callback=page.acked)

    def _heard(self, ticket) -> None:
        if self.sessions is not None:
            self.sessions.heard(ticket)

    def _activated(self, sid: str, page: _Page) -> None:
        # Changes while the page was not yet pushed to: it gets the state now.
        if page.version != self.states.version:
            self._emit("state", self.pillow.snapshot(), sid)

    # -- Socket.IO handlers -------------------------------------------------------------

    def _on_connect(self, auth=None):
        sid = request.sid
        if sid in self._pages:
            # A client's own event named "connect": python-socketio hands it to this
            # handler too, but only once the real connect made the page.
            self._client_event(sid)
            return None
        ticket = request.environ.get(TICKET)
        if ticket is not None and ticket.ended:
            raise ConnectionRefusedError("this session has ended")
        try:
            self._admit(request.environ, auth)
        except Refused as err:
            raise ConnectionRefusedError(str(err)) from None
        page = _Page(ticket, self.states.version, self._clock,
                     lambda p, sid=sid: self._activated(sid, p), self._heard)
        with self._lock:
            self._pages[sid] = page
        if ticket is not None:
            ticket.pages.add(sid)
        self._emit("state", self.pillow.snapshot(), sid)
        page.in_flight += 1
        self._emit("frame", self.renderer.last_frame, sid, callback=page.acked)
        return None

    def _on_disconnect(self, *_):
        # The real one and a client's own event of that name look the same here:
        # both only count as an event. Who is connected is python-socketio's to say.
        self._client_event(request.sid)

    def _on_event(self, event, *_):
        # No event of a page is ours to handle.
        self._client_event(request.sid)

    def _client_event(self, sid: str) -> None:
        page = self._pages.get(sid)
        if page is None or page.flooded or page.events.spend():
            return
        page.flooded = True
        log.warning("a status page client sent events faster than a page does: "
                    "disconnected")
        self.socketio.server.disconnect(sid, namespace=NAMESPACE)
        # The whole session, not only /pillow: it could join again at once.
        if page.ticket is not None:
            page.ticket.end()


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
        self.version = 0  # changes so far: a page joining learns if it missed one

    def changed(self) -> None:
        self.version += 1
        self._wake.set()

    def run(self) -> None:
        while self._sleep():
            self._wake.clear()
            if self._b.watched:
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
        if self._b.watched:
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
            if self._b.watched and frame is not last:
                try:
                    self._b.send_frame(frame)
                except Exception:
                    log.exception("a frame could not be pushed to the pages")
                last, sent_at = frame, time.monotonic()
