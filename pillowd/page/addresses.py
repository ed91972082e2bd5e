"""What `pillowd run` tells the person who started it: every address the page opens
at, and whether its controls are on (and how to turn them on)."""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from urllib.parse import urlsplit

_SIOCGIFADDR = 0x8915  # Linux: an interface's (first) IPv4 address


def lan_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback, one per interface that
    has one, in interface order."""
    found = []
    try:
        interfaces = socket.if_nameindex()
    except OSError:
        return found
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in interfaces:
            try:
                packed = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR,
                                     struct.pack("256s", name.encode()[:15]))
            except OSError:  # no IPv4 address on it (or it went away)
                continue
            address = socket.inet_ntoa(packed[20:24])
            if not ipaddress.ip_address(address).is_loopback and address not in found:
                found.append(address)
    return found


# A [web] host that means every address, and the loopback each is opened at here.
WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def local_url(host: str, port: int) -> str:
    """The page's address on this machine: the address it is bound to ([web] host),
    or, bound to every address, the loopback of that family."""
    host = WILDCARDS.get(host, host)
    if ":" in host:  # an IPv6 address, its zone (fe80::1%eth0) escaped as a URL wants
        host = f"[{host.replace('%', '%25')}]"
    return f"http://{host}:{port}/"


def page_urls(host: str, url: str, addresses=lan_addresses) -> list[str]:
    """The page's address *url* and, when it listens on every address (*host*
    0.0.0.0 or ::), the same page at each LAN address and at the machine's .local
    name (both answer: they are the pillow's own names)."""
    if host not in WILDCARDS:
        return [url]
    port = urlsplit(url).port
    name = socket.gethostname().split(".")[0]
    return [url, *(f"http://{a}:{port}/" for a in addresses()),
            f"http://{name}.local:{port}/"]


def controls_line(token: str | None, problem: str | None, env_name: str,
                  under_systemd: bool) -> str:
    """Whether the page's controls are on, and if not, how to turn them on."""
    if token is not None:
        return ("controls are on: the page asks once for the control token "
                f"(${env_name}, or the systemd credential control-token)")
    if under_systemd:
        how = ("put a random token of 16 or more characters in /etc/pillowd/control-token "
               "(sudo ./install.sh makes one) and restart pillowd")
    else:
        how = (f"start it with a token of 16 or more characters in ${env_name}, e.g. "
               f"{env_name}=$(python3 -c 'import secrets; print(secrets.token_urlsafe(16))') "
               "make run")
    why = problem.split(":")[0] if problem else "no control token is set"
    return f"controls are off ({why}): the page is read-only; to turn them on, {how}"


def page_url_for_others(host: str, url: str) -> str:
    """The status page's address as another machine (Home Assistant) can open it:
    a wildcard bind is reached by the Pi's mDNS name, as raspberrypi.local."""
    if host not in ("0.0.0.0", "::", ""):
        return url
    name = socket.gethostname()
    port = urlsplit(url).port
    return f"http://{name if '.' in name else name + '.local'}:{port}/"
