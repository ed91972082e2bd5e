"""The status page's admission (pillowd.page.admission) against a real `pillowd run`: limits
an attacker on the LAN cannot walk around. Each loopback address 127.0.x.y is a
distinct client."""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time

import pytest
import requests
import websocket

from conftest import Watcher, wait_for
from test_hostile_lan import _closed_by_server as closed_by_server
from test_hostile_lan import (AUTH, HANDSHAKE, TOKEN, _SourceAdapter, address, get, metric,
                              page_or_none)


def session_from(source: str) -> requests.Session:
    session = requests.Session()
    session.mount("http://", _SourceAdapter(source))
    return session


def connect(p, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(address(p), timeout=60, source_address=(source, 0))


def http_threads(pid: int) -> int:
    """The daemon's threads serving a connection now (named so by pillowd.seams.threads)."""
    count = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as comm:
                count += comm.read().strip() == "pillowd-http"
        except OSError:
            pass
    return count


# -- one deadline per connection, first byte to last ----------------------------------------

def slow_post(p, length: int = 60_000, source: str = "127.0.0.1") -> socket.socket:
    """A control request with the right token whose body then trickles."""
    sock = connect(p, source)
    sock.sendall(b"POST /api/scene HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                 b"Content-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n{" % length)
    return sock


def test_slow_bodies_after_the_headers_never_keep_a_new_client_out(pillow):
    from pillowd.page.admission import MAX_CONNECTIONS
    p = pillow(env={"PILLOWD_CONTROL_TOKEN": TOKEN})
    held = [slow_post(p, source=f"127.0.4.{n % 200 + 1}") for n in range(MAX_CONNECTIONS + 10)]
    try:
        # Every one of them is past its headers: room is still made for a new client.
        assert get(p, "/api/state", source="127.0.5.1").status_code == 200
        assert get(p, "/", source="127.0.5.2").status_code == 200
        # and it was the slowest (the oldest, nearest its deadline) that made room
        wait_for(lambda: closed_by_server(held[0]), message="the oldest slow body dropped")
    finally:
        for s in held:
            s.close()


@pytest.mark.parametrize("body", ["content-length", "chunked"])
def test_a_body_trickled_after_the_headers_meets_the_connection_deadline(pillow, body):
    """One deadline from the first byte to the last: a body that never pauses for
    long is still cut off (the server allows 30 s; reads alone would wait 60 s each).
    A chunk that claims ffffffffffff bytes is no exception."""
    p = pillow(env={"PILLOWD_CONTROL_TOKEN": TOKEN})
    sock = connect(p)
    if body == "chunked":
        sock.sendall(b"POST /api/scene HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\nffffffffffff\r\n{")
    else:
        sock.close()
        sock = slow_post(p)  # under the body limit: it is read
    sent, ended = 0, False
    with sock:
        while sent < 60 and not ended:
            time.sleep(1.0)  # pacing of the trickle, not a measurement
            try:
                sock.sendall(b" ")
                sent += 1
            except OSError:
                ended = True
            ended = ended or closed_by_server(sock, answered_too=True)  # 413 ends it too
    assert ended and sent < 45, f"still open after {sent} s of trickled body"
    assert p.get("/healthz").status_code == 200


# -- handshakes and sessions -----------------------------------------------------------------

def test_a_page_from_a_fresh_address_gets_in_through_a_flood_of_handshakes(pillow):
    """Ten addresses handshake as fast as they are let, each within its own rate: a
    refused handshake spends nothing, and a new address is served first."""
    p = pillow()
    stop = threading.Event()
    counts = {"ok": 0, "refused": 0}

    def flood(n: int) -> None:
        session = session_from(f"127.0.7.{n + 1}")
        for _ in range(300):  # bounded
            if stop.is_set():
                return
            status = session.get(p.url + HANDSHAKE.lstrip("/"), timeout=10).status_code
            counts["ok" if status == 200 else "refused"] += 1

    flooders = [threading.Thread(target=flood, args=(n,), daemon=True) for n in range(10)]
    for t in flooders:
        t.start()
    try:
        wait_for(lambda: counts["refused"] >= 20, timeout=60,
                 message="the overall handshake allowance spent")
        watcher = Watcher(p.url)  # 127.0.0.1: no handshake from it lately
        try:
            watcher.wait_state(lambda s: True, message="a live page during the flood")
        finally:
            watcher.close()
    finally:
        stop.set()
        for t in flooders:
            t.join()


def test_sessions_that_joined_and_vanished_do_not_keep_a_page_out(pillow):
    from pillowd.page.admission import MAX_SESSIONS
    p = pillow()
    for n in range(MAX_SESSIONS):  # every one joins /pillow, then is never heard of
        session = session_from(f"127.0.8.{n + 1}")
        answer = session.get(p.url + HANDSHAKE.lstrip("/"), timeout=10)
        assert answer.status_code == 200
        sid = json.loads(answer.text[answer.text.index("{"):])["sid"]
        assert session.post(p.url + f"socket.io/?EIO=4&transport=polling&sid={sid}",
                            data=b"40/pillow,", timeout=10).status_code == 200
    wait_for(lambda: metric(p, "pillowd_web_clients") == MAX_SESSIONS,
             message="every vanished session joined")
    # They spent the overall handshake allowance too: a page tries again, as a
    # browser's does, while it refills (a 429 spends nothing). A 503 never ends.
    watcher = wait_for(lambda: page_or_none(p.url), timeout=20, interval=0.5,
                       message="a page let in")
    try:
        watcher.wait_state(lambda s: True, message="a live page past the vanished ones")
    finally:
        watcher.close()


def test_one_address_holds_at_most_its_share_of_sessions(pillow):
    from pillowd.page.admission import SESSIONS_PER_ADDRESS
    p = pillow()
    session = session_from("127.0.9.1")
    sids = []
    for _ in range(SESSIONS_PER_ADDRESS + 4):
        answer = session.get(p.url + HANDSHAKE.lstrip("/"), timeout=10)
        assert answer.status_code == 200  # a new page is never refused for the old
        sids.append(json.loads(answer.text[answer.text.index("{"):])["sid"])
    alive = [sid for sid in sids
             if session.post(p.url + f"socket.io/?EIO=4&transport=polling&sid={sid}",
                             data=b"1", timeout=10).status_code == 200]
    assert alive == sids[-SESSIONS_PER_ADDRESS:]


# -- control tokens ------------------------------------------------------------------------

def test_wrong_tokens_from_many_addresses_spend_one_budget_and_reading_stays_open(pillow):
    from pillowd.page.admission import FAILURES_ALLOWED, WRONG_TOKENS_PER_MINUTE
    p = pillow(env={"PILLOWD_CONTROL_TOKEN": TOKEN})
    each = FAILURES_ALLOWED - 1  # under every address's own limit
    statuses = []
    for n in range(WRONG_TOKENS_PER_MINUTE // each + 10):
        guesser = session_from(f"127.0.10.{n + 1}")
        for guess in range(each):
            statuses.append(guesser.post(p.url + "api/quiet", json={}, timeout=10, headers={
                "Authorization": f"Bearer guess-{n}-{guess}"}).status_code)
    compared = statuses.count(401)
    assert compared <= WRONG_TOKENS_PER_MINUTE, f"{compared} wrong tokens compared"
    assert statuses.count(429) >= 30
    # The controls pause for everyone, and say why; reading stays open.
    owner = session_from("127.0.11.1").post(p.url + "api/quiet", json={"quiet": True},
                                            headers=AUTH, timeout=10)
    assert owner.status_code == 429 and "too many wrong tokens" in owner.json()["error"]
    assert 1 <= int(owner.headers["Retry-After"]) <= 60
    assert get(p, "/api/state", source="127.0.11.2").status_code == 200
    assert p.state()["quiet"] is False


def test_ipv6_addresses_count_per_64():
    from pillowd.page.admission import address_key
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff:1:2:3")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("192.0.2.7") != address_key("192.0.2.8")


# -- WebSocket messages, closed tabs --------------------------------------------------------

def test_a_websocket_message_past_the_packet_limit_is_refused_as_it_arrives(pillow):
    p = pillow()
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{address(p)[1]}/socket.io/?EIO=4&transport=websocket", timeout=30)
    size = 50_000_000
    sent = 0
    try:
        assert ws.recv().startswith("0{")
        # One binary frame, masked as a client's must be, claiming 50 MB.
        ws.sock.sendall(b"\x82\xff" + struct.pack(">Q", size) + b"\x00\x00\x00\x00")
        chunk = b"x" * 1_000_000
        with pytest.raises(OSError):  # reset or broken pipe: nobody reads the rest
            while sent < size:
                ws.sock.sendall(chunk)
                sent += len(chunk)
    finally:
        ws.sock.close()
    assert sent < size // 2, f"{sent} bytes of an oversized message were taken"
    wait_for(lambda: any("WebSocket message longer than" in line for line in p.output),
             message="the refusal in the log")
    assert p.get("/healthz").status_code == 200


def test_a_closed_tab_is_ordinary_and_prints_no_traceback(pillow):
    p = pillow()
    for _ in range(3):  # as a browser tab does: a live page, then the tab closed
        ws = websocket.create_connection(
            f"ws://127.0.0.1:{address(p)[1]}/socket.io/?EIO=4&transport=websocket",
            timeout=30)
        assert ws.recv().startswith("0{")
        ws.send("40/pillow,")
        while not ws.recv().startswith('42/pillow,["state"'):
            pass
        ws.sock.close()  # no close frame: the tab is gone
    wait_for(lambda: metric(p, "pillowd_web_clients") == 0, timeout=60,
             message="the closed tabs forgotten")
    # Each connection's thread has ended: whatever it printed is printed.
    wait_for(lambda: http_threads(p.pid) == 0, timeout=60, message="their threads ended")
    text = "".join(p.output)
    assert "Traceback" not in text and "Bad file descriptor" not in text, text[-2000:]
