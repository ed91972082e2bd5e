"""The status page and its API: Flask for HTTP, Flask-SocketIO for live state and frames."""

from __future__ import annotations

import functools
import hmac
import json
import logging
import socket
import threading
import time
from pathlib import Path

from flask import Flask, Response, jsonify, render_template, request
from flask_socketio import SocketIO
from werkzeug.exceptions import HTTPException
from werkzeug.serving import make_server

from .errors import PillowError
from .history import HistoryError
from .messages import MAX_BODY, Rejection
from . import threads

log = logging.getLogger(__name__)
NAMESPACE = "/pillow"
# Packets a client may have waiting before it is sent no more frames: a slow phone
# skips frames instead of growing an unbounded queue in the server's memory.
FRAME_BACKLOG = 4


def page_files() -> Path:
    """The page's templates and static files: web/ in a checkout, pillowd/_page installed."""
    installed = Path(__file__).with_name("_page")
    return installed if installed.is_dir() else Path(__file__).parent.parent / "web"


class PortInUse(PillowError, OSError):
    """The status page's address is taken or not ours to bind."""


class StatusPage:
    """The web view of one pillow: pushes state on change and frames while watched."""

    def __init__(self, pillow, *, controls, health, renderer, metrics,
                 token: str | None, hugs=None, frames_per_second: float = 20):
        self.pillow = pillow
        self.controls = controls
        self.hugs = hugs  # pressed(source) -> the hug event's id
        self.health = health
        self.renderer = renderer
        self.token = token
        self.frame_interval = 1 / frames_per_second
        self._sids: dict[str, str] = {}  # Socket.IO sid -> Engine.IO sid
        self._emit_lock = threading.Lock()
        self._dirty = threading.Event()        # the snapshot changed, or close()
        self._frame_ready = threading.Event()  # a new frame while pages watch, or close()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server = None
        self.url = None

        files = page_files()
        app = Flask(__name__, static_folder=str(files / "static"),
                    template_folder=str(files / "templates"))
        app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
        self.app = app
        # threading: never eventlet/gevent even when installed; the default
        # cors_allowed_origins only admits the page's own origin.
        self.socketio = SocketIO(app, async_mode="threading", logger=False,
                                 engineio_logger=False)
        self._metrics = metrics(lambda: self.clients)
        self._routes()
        pillow.on_state(self._dirty.set)
        renderer.on_frame(self._new_frame)

    # -- HTTP ----------------------------------------------------------------------

    def _routes(self) -> None:
        app, pillow, controls = self.app, self.pillow, self.controls

        @app.get("/")
        def index():
            return render_template("index.html", name=pillow.name,
                                   controls=self.token is not None)

        @app.get("/api/state")
        def state():
            return jsonify(pillow.snapshot())

        @app.get("/api/history")
        def history():
            try:
                limit = int(request.args.get("limit", 50))
                before = request.args.get("before")
                before = int(before) if before not in (None, "") else None
            except ValueError:
                return _error(400, "limit and before must be whole numbers")
            if not 1 <= limit <= 1000:
                return _error(400, "limit must be between 1 and 1000")
            if before is not None and not 0 <= before < 2 ** 62:
                return _error(400, "before must be a cursor from an earlier page")
            return jsonify(pillow.history_page(limit, before))

        @app.get("/healthz")
        def healthz():
            reasons = self.health.reasons()
            notes = self.health.notes()
            if reasons:
                return jsonify({"status": "unhealthy", "reasons": reasons,
                                **({"notes": notes} if notes else {})}), 503
            # Troubles no restart would mend (a partner's queue refusing): said, not 503.
            return jsonify({"status": "ok", **({"notes": notes} if notes else {})})

        @app.get("/metrics")
        def metrics():
            body, content_type = self._metrics.exposition()
            return Response(body, mimetype=content_type)

        @app.post("/api/scene")
        @self._control
        def scene():
            data = _json_object()
            if data is None:
                return _error(400, "body must be a JSON object like {\"scene\": \"hug\"}")
            try:
                outcome = controls.play(data)
            except Rejection as err:
                return _error(400, str(err))
            except HistoryError as err:  # not recorded, so not played: try again later
                return _error(503, str(err))
            return jsonify(outcome.as_json())

        @app.post("/api/hug")
        @self._control
        def hug():
            if self.hugs is None:
                return _error(404, "this pillow sends no hugs")
            try:
                event_id = self.hugs.pressed(source="web")
            except PillowError as err:  # the event could not be kept: not sent
                return _error(503, str(err))
            # Accepted: it plays here now; the partners get it once their queues take it.
            return jsonify({"id": event_id}), 202

        @app.post("/api/seen")
        @self._control
        def seen():
            if self.hugs is None:
                return _error(404, "this pillow keeps no messages from quiet hours")
            self.hugs.seen()
            return jsonify({"while_quiet": []})

        @app.post("/api/brightness")
        @self._control
        def brightness():
            data = _json_object()
            value = data.get("brightness") if data else None
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 <= value <= 1:
                return _error(400, 'body must be like {"brightness": 0.5} (0..1)')
            controls.set_brightness(value)
            return jsonify({"brightness": controls.brightness})

        @app.post("/api/off")
        @self._control
        def off():
            controls.off()
            return jsonify({"brightness": controls.brightness})

        @app.post("/api/quiet")
        @self._control
        def quiet():
            data = _json_object()
            value = data.get("quiet", True) if data is not None else None
            if not isinstance(value, bool):
                return _error(400, 'body must be like {"quiet": true}')
            controls.set_quiet(value)
            return jsonify({"quiet": controls.quiet})

        @app.errorhandler(413)
        def too_large(err):
            return _error(413, f"body is larger than {MAX_BODY} bytes")

        @app.errorhandler(404)
        def not_found(err):
            return _error(404, "no such page")

        @app.errorhandler(405)
        def not_allowed(err):
            return _error(405, "method not allowed here")

        @app.errorhandler(Exception)
        def unexpected(err):
            if isinstance(err, HTTPException):  # 400s and the like: their own words
                return _error(err.code or 500, err.description or err.name)
            # A bug: logged with its traceback, answered in JSON like every other
            # error (never werkzeug's HTML page, never the exception's text).
            log.exception("unexpected error in %s %s", request.method, request.path)
            return _error(500, "internal error; the pillow's log has the details")

        sio = self.socketio

        @sio.on("connect", namespace=NAMESPACE)
        def connect(auth=None):
            self._sids[request.sid] = sio.server.manager.eio_sid_from_sid(
                request.sid, NAMESPACE)
            # Under the emit lock: a binary event goes out as two websocket messages,
            # and one interleaved with the frame pusher's corrupts the client's stream.
            with self._emit_lock:
                sio.emit("state", pillow.snapshot(), to=request.sid, namespace=NAMESPACE)
                sio.emit("frame", self.renderer.last_frame, to=request.sid,
                         namespace=NAMESPACE)

        @sio.on("disconnect", namespace=NAMESPACE)
        def disconnect(reason=None):
            self._sids.pop(request.sid, None)

    @property
    def clients(self) -> int:
        """Pages connected now (one dict entry each: no counter to drift)."""
        return len(self._sids)

    def _control(self, view):
        """*view* as a control endpoint: the token and the origin are checked first."""
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            return self._check_token() or view(*args, **kwargs)
        return guarded

    def _check_token(self):
        foreign = _foreign_origin()
        if foreign:
            return _error(403, foreign)
        if self.token is None:
            return _error(403, "controls are off: no control token is configured")
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), self.token.encode()):
            return _error(401, "a valid 'Authorization: Bearer <token>' is needed")
        return None

    # -- pushing -----------------------------------------------------------------

    def _emit(self, event, data, skip=None) -> None:
        with self._emit_lock:  # emits come from several threads
            self.socketio.emit(event, data, namespace=NAMESPACE, skip_sid=skip)

    def _behind(self) -> list[str]:
        """Clients whose unsent packets pile up: they skip this frame."""
        sockets = self.socketio.server.eio.sockets
        behind = []
        for sid, eio_sid in list(self._sids.items()):
            socket_ = sockets.get(eio_sid)
            if socket_ is not None and socket_.queue.qsize() > FRAME_BACKLOG:
                behind.append(sid)
        return behind

    def _new_frame(self, frame: bytes) -> None:
        # In the render thread: only a flag, and only while someone watches.
        if self._sids:
            self._frame_ready.set()

    def _push_state(self) -> None:
        # One snapshot per wake-up: a burst of changes costs one emit, not one each.
        while True:
            self._dirty.wait()
            if self._stop.is_set():
                return
            self._dirty.clear()
            if self.clients:
                self._emit("state", self.pillow.snapshot())

    def _push_frames(self) -> None:
        last, sent_at = None, -self.frame_interval
        while True:
            self._frame_ready.wait()
            # At most frames_per_second: a frame due sooner waits out the rest of
            # the interval (frames shown meanwhile are skipped); one after a pause
            # goes at once, without a second wake-up.
            early = sent_at + self.frame_interval - time.monotonic()
            if early > 0 and self._stop.wait(early):
                return
            if self._stop.is_set():
                return
            self._frame_ready.clear()
            frame = self.renderer.last_frame
            if self.clients and frame is not last:
                # Sending only queues per client (engineio's writer threads do the
                # rest), so neither the render loop nor other clients wait on a slow one.
                self._emit("frame", frame, skip=self._behind() or None)
                last, sent_at = frame, time.monotonic()

    # -- serving -------------------------------------------------------------------

    def bind(self, host: str, port: int) -> str:
        """Take the address now, so a clash is an error before anything starts."""
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        # Bound here rather than by werkzeug, which prints and exits on a clash.
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
            listener = socket.create_server((host, port), family=family, backlog=64)
        except OSError as err:
            raise PortInUse(f"cannot serve the status page on {host}:{port}: "
                            f"{err.strerror or err}") from None
        with listener:
            self._server = make_server(host, port, self.app, threaded=True,
                                       fd=listener.fileno())
        bound = self._server.socket.getsockname()[1]
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        self.url = f"http://{shown}:{bound}/"
        return self.url

    def start(self) -> None:
        # serve_forever's select() sleeps until a request comes (no 0.5 s poll):
        # close() wakes it with a connection of its own.
        for name, target, args in (("pillowd-web", self._server.serve_forever, (None,)),
                                   ("pillowd-state", self._push_state, ()),
                                   ("pillowd-frames", self._push_frames, ())):
            self._threads.append(threads.start(name, target, *args))

    def close(self) -> None:
        self._stop.set()
        self._dirty.set()
        self._frame_ready.set()
        server, self._server = self._server, None
        if server is None:
            return
        if self._threads:  # shutdown() waits for serve_forever, so only if it runs
            stopper = threads.start("pillowd-web-end", server.shutdown)
            address = server.socket.getsockname()[:2]
            while stopper.is_alive():
                try:  # wake select(); after the shutdown flag it serves no request
                    socket.create_connection(address, timeout=0.2).close()
                except OSError:
                    pass
                stopper.join(0.05)
        server.server_close()


def _json_object() -> dict | None:
    """The request's JSON object (an empty body is {}), or None; 413 past the limit."""
    try:
        data = json.loads(request.get_data() or b"{}")
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _foreign_origin() -> str | None:
    """Why a control request comes from another site's page, or None.

    Browsers send Origin (and Sec-Fetch-Site) on a cross-site POST; scripts such as
    curl send neither and are judged by their token alone."""
    origin = request.headers.get("Origin")
    own = f"{request.scheme}://{request.host}"
    if origin is not None and origin != own:
        return f"controls only accept requests from this page ({own}), not {origin[:100]}"
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return f"controls only accept same-origin requests, not {site[:40]}"
    return None


def _error(status: int, message: str):
    return jsonify({"error": message}), status
