"""The status page: the Flask app with Flask-SocketIO, the host rules in front, and the server that runs them."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path

from flask import Flask

from ..errors import PillowError
from ..messages import MAX_BODY
from ..seams import threads
from .addresses import local_url
from .auth import Guard, Policy
from .routes import bp
from .server import PillowServer

log = logging.getLogger(__name__)


def page_files() -> Path:
    """The page's templates and static files: web/ in a checkout, pillowd/_page installed."""
    installed = Path(__file__).parent.parent / "_page"
    return installed if installed.is_dir() else Path(__file__).parents[2] / "web"


class PortInUse(PillowError, OSError):
    """The status page's address is taken or not ours to bind."""


@dataclass(frozen=True)
class Parts:
    """What the routes work with, kept in the app as app.extensions["pillowd"]."""

    pillow: object
    controls: object
    hugs: object      # pressed(source) -> the hug event's id; None: no hugs
    health: object
    metrics: object
    policy: Policy


class StatusPage:
    """The web view of one pillow: the Flask app, Socket.IO in front of it, and the
    server that runs them."""

    def __init__(self, pillow, *, controls, health, broadcaster, metrics, policy: Policy,
                 hugs=None):
        self.pillow = pillow
        self.policy = policy
        self.broadcaster = broadcaster
        self._server = None
        self._thread = None
        self.url = None

        files = page_files()
        app = Flask(__name__, static_folder=str(files / "static"),
                    template_folder=str(files / "templates"))
        app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
        app.extensions["pillowd"] = Parts(pillow, controls, hugs, health,
                                          metrics(lambda: broadcaster.clients), policy)
        app.register_blueprint(bp)
        broadcaster.init_app(app)  # Flask-SocketIO, and the session rules before it
        self.app = app
        self.wsgi = Guard(app, policy)

    @property
    def token(self) -> str | None:
        return self.policy.token

    @property
    def clients(self) -> int:
        return self.broadcaster.clients

    # -- serving -------------------------------------------------------------------

    def bind(self, host: str, port: int) -> str:
        """Take the address now, so a clash is an error before anything starts."""
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        # Bound here rather than by werkzeug, which prints and exits on a clash.
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
            # "::" is every address, IPv4 too (as werkzeug binds it): create_server
            # would make it IPv6 only, and the LAN's IPv4 addresses would not answer.
            listener = socket.create_server(
                (host, port), family=family, backlog=64,
                dualstack_ipv6=host == "::" and socket.has_dualstack_ipv6())
        except OSError as err:
            raise PortInUse(f"cannot serve the status page on {host}:{port}: "
                            f"{err.strerror or err}") from None
        with listener:
            self._server = PillowServer(host, port, self.wsgi, fd=listener.fileno())
        bound = self._server.socket.getsockname()[1]
        self.url = local_url(host, bound)
        return self.url

    def start(self) -> None:
        # serve_forever's select() sleeps until a request comes (no 0.5 s poll):
        # close() wakes it with a connection of its own.
        self._thread = threads.start("pillowd-web", self._server.serve_forever, None)

    def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        if self._thread is not None:  # shutdown() waits for serve_forever, so only if it runs
            stopper = threads.start("pillowd-web-end", server.shutdown)
            address = server.socket.getsockname()[:2]
            while stopper.is_alive():
                try:  # wake select(); after the shutdown flag it serves no request
                    socket.create_connection(address, timeout=0.2).close()
                except OSError:
                    pass
                stopper.join(0.05)
        server.server_close()
