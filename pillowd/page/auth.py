"""Who the status page answers: its own names, the control token, and the headers on every answer."""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import socket
import time
from typing import Callable

from .admission import MIN_TOKEN_LENGTH, TokenGate

log = logging.getLogger(__name__)

SECURITY_HEADERS = [
    # Scripts, styles and connections from the pillow only; no plugins, no frames.
    ("Content-Security-Policy",
     "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
     "frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
]


def _host_name(host: str) -> str:
    """The name in a Host header, without port, brackets or trailing dot, lowercased."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8080
        return host[1:host.find("]")] if "]" in host else host[1:]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def is_local_address(name: str) -> bool:
    """Whether *name* is an IP address of this machine: only then can it be bound."""
    try:
        address = ipaddress.ip_address(name.partition("%")[0])
    except ValueError:
        return False
    if address.is_loopback:
        return True
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((name, 0))
        return True
    except OSError:
        return False


def machine_names() -> set[str]:
    name = socket.gethostname().lower().rstrip(".")
    short = name.split(".")[0]
    return {"localhost", name, short, f"{short}.local"}


class Policy:
    """The pillow's rules for a request: its Host, its token, its address's failures."""

    def __init__(self, token: str | None, *, allowed_hosts=(), private: bool = False,
                 names: Callable[[], set[str]] = machine_names,
                 is_local: Callable[[str], bool] = is_local_address, clock=time.monotonic):
        self.token_problem = None
        self._refused = None  # a token too short to accept: its holder is told why
        if token is not None and len(token) < MIN_TOKEN_LENGTH:
            self.token_problem = (f"the control token is too short ({len(token)} characters; "
                                  f"at least {MIN_TOKEN_LENGTH}): controls are off until it "
                                  "is replaced")
            log.error("%s", self.token_problem)
            self._refused, token = token, None
        self.token = token
        self.private = private
        self._allowed = {_host_name(h) for h in allowed_hosts}
        self._names = names
        self._is_local = is_local
        self._tokens = TokenGate(clock)

    # -- the Host ------------------------------------------------------------------

    def foreign_host(self, host: str | None) -> str | None:
        """Why a request for *host* is not for this pillow (421), or None."""
        name = _host_name(host or "")
        if name and (name in self._allowed or name in self._names()
                     or self._is_local(name)):
            return None
        shown = (host or "")[:100].encode("ascii", "replace").decode()
        return (f"this pillow does not answer to the name {shown!r}: open it by its "
                "address or host name, or add the name to [web] allowed_hosts")

    # -- the token -----------------------------------------------------------------

    def check_token(self, given: str | None, address: str) -> tuple[int, str] | None:
        """None when *given* is the control token; else the status and the reason
        (pillowd.page.admission.TokenGate decides how many wrong ones are compared)."""
        if self.token is None:
            return 403, self.token_problem or "controls are off: no control token is configured"
        return self._tokens.check(
            lambda: hmac.compare_digest(given.encode(), self.token.encode()),
            given is not None, address)

    def holds_refused_token(self, given: str | None, address: str) -> bool:
        """Whether *given* is the token refused as too short: only its holder is told
        why controls are off. It is compared under the same budget and lockout as the
        control token, and a wrong one counts as a wrong token."""
        if self._refused is None or not given:
            return False
        refused = self._refused
        return self._tokens.check(
            lambda: hmac.compare_digest(given.encode(), refused.encode()),
            True, address) is None

    def retry_after(self, address: str) -> int:
        return self._tokens.retry_after(address)

    def admit(self, environ: dict, auth) -> None:
        """A page may join Socket.IO: raises broadcast.Refused when it may not."""
        if not self.private:
            return
        from .broadcast import Refused

        given = auth.get("token") if isinstance(auth, dict) else None
        found = self.check_token(given if isinstance(given, str) else None,
                                 environ.get("REMOTE_ADDR", ""))
        if found is not None:
            raise Refused(found[1])


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, given = (header or "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else None


def foreign_origin(origin: str | None, fetch_site: str | None, own: str) -> str | None:
    """Why a control request comes from another site's page, or None.

    Browsers send Origin (and Sec-Fetch-Site) on a cross-site POST; scripts such as
    curl send neither and are judged by their token alone."""
    if origin is not None and origin != own:
        return f"controls only accept requests from this page ({own}), not {origin[:100]}"
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return f"controls only accept same-origin requests, not {fetch_site[:40]}"
    return None


class Guard:
    """WSGI middleware in front of everything (Socket.IO included): 421 for a Host
    that is not the pillow's, and the security headers on every answer."""

    def __init__(self, app, policy: Policy):
        self.app = app
        self.policy = policy

    def __call__(self, environ, start_response):
        def start(status, headers, exc_info=None):
            have = {name.lower() for name, _ in headers}
            headers = list(headers) + [h for h in SECURITY_HEADERS if h[0].lower() not in have]
            return start_response(status, headers, exc_info)

        why = self.policy.foreign_host(environ.get("HTTP_HOST"))
        if why is not None:
            body = json.dumps({"error": why}).encode()
            start("421 Misdirected Request", [("Content-Type", "application/json"),
                                              ("Content-Length", str(len(body)))])
            return [body]
        return self.app(environ, start)
