"""A hostile home network: foreign Host names, guessed and short tokens, big bodies,
half-sent requests, abandoned sessions and impostor events, against a real `pillowd run`."""

from __future__ import annotations

import json
import socket
import subprocess
from urllib.parse import urlsplit

import pytest
import requests
import socketio
import websocket

from pillowd.testing.sources import SourceAdapter as _SourceAdapter

from conftest import Watcher, wait_for

TOKEN = "a-long-enough-control-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def address(p) -> tuple[str, int]:
    parts = urlsplit(p.url)
    return parts.hostname, parts.port


def get(p, path, host=None, headers=None, source="127.0.0.1", **options):
    """A GET with the Host header we choose, from a loopback address we choose."""
    headers = dict(headers or {})
    if host is not None:
        headers["Host"] = host
    session = requests.Session()
    session.mount("http://", _SourceAdapter(source))
    return session.get(p.url.rstrip("/") + path, headers=headers, timeout=10, **options)


def page_or_none(url: str):
    """A live page (conftest.Watcher), or None when its connect is refused (a 429
    while the handshake allowance refills: a browser's page tries again too)."""
    try:
        return Watcher(url)
    except socketio.exceptions.ConnectionError:
        return None


def metric(p, name) -> float:
    for line in p.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


# -- the pillow's own names ----------------------------------------------------------

HANDSHAKE = "/socket.io/?EIO=4&transport=polling"


def test_a_foreign_host_gets_421_on_every_path_and_the_socketio_handshake(pillow):
    p = pillow()
    port = address(p)[1]
    for host in ("evil.example", f"evil.example:{port}", "pillow.evil.example", "192.0.2.1",
                 "[2001:db8::1]:80", ""):
        for path in ("/", "/api/state", "/api/history", "/metrics", "/healthz", HANDSHAKE,
                     "/static/app.js"):
            answer = get(p, path, host=host, headers={"Origin": f"http://{host}"})
            assert answer.status_code == 421, (host, path, answer.status_code)
            assert "Access-Control-Allow-Origin" not in answer.headers
            assert "state" not in answer.text and "test-pillow" not in answer.text
    # The WebSocket way in is refused the same way.
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(
            f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket",
            host="evil.example", origin="http://evil.example", timeout=10)
    assert refused.value.status_code == 421


def test_the_pillow_answers_to_its_addresses_and_names(pillow):
    p = pillow()
    port = address(p)[1]
    name = socket.gethostname().split(".")[0]
    for host in ("127.0.0.1", f"127.0.0.1:{port}", "localhost", f"LOCALHOST:{port}",
                 name, f"{name}.local:{port}", f"[::1]:{port}"):
        assert get(p, "/api/state", host=host).status_code == 200, host
    handshake = get(p, HANDSHAKE, host=f"localhost:{port}")
    assert handshake.status_code == 200 and '"sid"' in handshake.text


def web_config(make_config, keys: str):
    """The test config with *keys* added to its [web] table."""
    path = make_config()
    path.write_text(path.read_text().replace('host = "127.0.0.1"',
                                             'host = "127.0.0.1"\n' + keys))
    return path


def test_allowed_hosts_adds_names(make_config, pillow_env):
    from conftest import PillowProcess, ROOT
    cfg = web_config(make_config, 'allowed_hosts = ["pillow.example.net"]')
    p = PillowProcess(cfg, pillow_env, cwd=ROOT).start()
    try:
        assert get(p, "/api/state", host="pillow.example.net:8443").status_code == 200
        assert get(p, "/api/state", host="pillow.example.org").status_code == 421
    finally:
        p.stop()


# -- headers ---------------------------------------------------------------------------

def test_every_answer_carries_the_security_headers_and_no_versions(pillow):
    p = pillow(env={"PILLOWD_CONTROL_TOKEN": TOKEN})
    answers = [get(p, path) for path in ("/", "/api/state", "/healthz", "/metrics",
                                         "/static/app.js", "/no-such-page", HANDSHAKE)]
    answers.append(p.post("/api/quiet", json={}))                       # 401
    answers.append(get(p, "/", host="evil.example"))                    # 421
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 200, 404, 200, 401, 421]
    for answer in answers:
        h = answer.headers
        csp = h["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, answer.url
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert h["X-Content-Type-Options"] == "nosniff"
        assert h["Referrer-Policy"] == "no-referrer"
        assert h["X-Frame-Options"] == "DENY"
        assert h["Server"] == "pillowd", h["Server"]


# -- tokens ----------------------------------------------------------------------------

def test_a_short_token_is_refused_and_the_pillow_says_so(pillow):
    p = pillow(env={"PILLOWD_CONTROL_TOKEN": "1234"})
    answer = p.post("/api/scene", json={"scene": "hug"},
                    headers={"Authorization": "Bearer 1234"})
    assert answer.status_code == 403
    assert "too short" in answer.json()["error"]
    assert p.state()["scene"] == "idle"
    problem = p.state()["web"]["problem"]
    assert "too short" in problem and "16" in problem and "1234" not in problem
    page = p.get("/").text  # said to the token's holder only (tests/test_web.py)
    assert "too short" not in page and 'data-controls="short"' in page
    assert any("too short" in line and "ERROR" in line for line in p.output)


def test_wrong_tokens_from_one_address_get_429_and_are_logged(pillow):
    p = pillow(env={"PILLOWD_CONTROL_TOKEN": TOKEN})
    for guess in range(5):
        answer = p.post("/api/quiet", json={}, headers={"Authorization": f"Bearer guess{guess}"})
        assert answer.status_code == 401
    locked = p.post("/api/quiet", json={}, headers=AUTH)  # even the right one, now
    assert locked.status_code == 429
    assert 1 <= int(locked.headers["Retry-After"]) <= 60
    assert p.state()["quiet"] is False
    # Another address is judged on its own.
    other = requests.Session()
    other.mount("http://", _SourceAdapter("127.0.0.2"))
    assert other.post(p.url + "api/quiet", json={"quiet": True}, headers=AUTH,
                      timeout=10).status_code == 200
    wait_for(lambda: any("5 wrong control tokens from 127.0.0.1" in line
                         for line in p.output), message="the lockout in the log")
    assert not any(TOKEN in line or "guess" in line for line in p.output)


def test_a_refused_body_is_not_read(pillow):
    p = pillow(env={"PILLOWD_CONTROL_TOKEN": TOKEN})
    size = 50_000_000
    with socket.create_connection(address(p), timeout=10) as sock:
        sock.sendall(b"POST /api/scene HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % size)
        head = sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 401"), head[:80]
        sent, chunk = 0, b"x" * 1_000_000
        with pytest.raises(OSError):  # reset or broken pipe: nobody reads the rest
            while sent < size:
                sock.sendall(chunk)
                sent += len(chunk)
    # Kernel buffers take a few MB; the server read none of the rest.
    assert sent < size // 2, f"{sent} bytes of a refused body were taken"
    assert p.get("/healthz").status_code == 200


# -- connections -----------------------------------------------------------------------

def test_a_half_sent_request_is_dropped_and_does_not_hold_the_page(pillow):
    p = pillow()
    held = []
    for _ in range(120):  # more than the connection cap
        s = socket.create_connection(address(p), timeout=60)
        s.sendall(b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        held.append(s)
    try:
        # Room is made for a whole request, however many half-sent ones are held.
        assert p.get("/api/state").status_code == 200
        # The last half-sent one is closed by the server once its deadline passes.
        assert held[-1].recv(100) == b""
    finally:
        for s in held:
            s.close()


def test_headers_sent_a_byte_at_a_time_meet_a_deadline(pillow):
    """A deadline for the whole header, not a timeout per read: a trickle that never
    pauses for long is still dropped (the connection's deadline: 30 s)."""
    import time
    p = pillow()
    sent = 0
    with socket.create_connection(address(p), timeout=60) as s:
        s.sendall(b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        try:
            while sent < 60:
                s.sendall(b"X-Slow-%d: 1\r\n" % sent)
                sent += 1
                time.sleep(1.0)
            closed = False
        except OSError:
            closed = True
        if not closed:
            s.settimeout(1.0)
            try:
                closed = s.recv(100) == b""
            except OSError:
                closed = False
    assert closed and sent < 45, f"still open after {sent} header lines"


def test_at_the_file_limit_the_page_still_answers(pillow):
    """Out of descriptors before the connection cap: the pillow makes room at once,
    rather than spinning on accept until idle connections reach their deadline."""
    import os
    p = pillow()
    base = len(os.listdir(f"/proc/{p.pid}/fd"))
    limit = base + 24  # far under the connection cap: descriptors run out first
    subprocess.run(["prlimit", f"--pid={p.pid}", f"--nofile={limit}:{limit}"], check=True)
    held = []
    try:
        for n in range(30):  # idle: connected, never a byte; the last few wait
            held.append(socket.create_connection(address(p), timeout=60,
                                                 source_address=(f"127.0.6.{n + 1}", 0)))
        assert requests.get(p.url + "healthz", timeout=60).status_code == 200
        # Room was made by dropping a few, not by waiting for all to reach their deadline.
        dropped = sum(_closed_by_server(s) for s in held)
        assert dropped < len(held) // 2, f"{dropped} of {len(held)} held were dropped"
        wait_for(lambda: any("out of file descriptors" in line for line in p.output),
                 message="the pillow out of file descriptors")
    finally:
        for s in held:
            s.close()


def _closed_by_server(sock: socket.socket, answered_too: bool = False) -> bool:
    """Whether the server has closed *sock* (or, *answered_too*, sent anything),
    looking without waiting."""
    timeout = sock.gettimeout()
    sock.settimeout(0.0)  # non-blocking: a timeout socket would wait in recv
    try:
        data = sock.recv(65536, socket.MSG_PEEK)
        return data == b"" or answered_too
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True
    finally:
        sock.settimeout(timeout)


# -- Socket.IO ------------------------------------------------------------------------

def test_client_events_even_with_reserved_names_are_ignored(pillow):
    p = pillow()
    watcher = Watcher(p.url)
    try:
        watcher.wait_state(lambda s: True, message="the first state")
        for _ in range(5):
            for event in ("connect", "disconnect"):
                watcher.client.emit(event, {"token": "x"}, namespace="/pillow")
        p.cli("send", "glow", "--from", "after")
        watcher.wait_state(lambda s: (s["message"] or {}).get("from") == "after",
                           message="the state after the impostor events")
        assert metric(p, "pillowd_web_clients") == 1
    finally:
        watcher.close()


def test_a_client_sending_a_flood_of_events_is_disconnected(pillow):
    p = pillow()
    client = socketio.Client(reconnection=False)
    gone = []
    client.on("disconnect", lambda *a: gone.append(True), namespace="/pillow")
    client.connect(p.url, namespaces=["/pillow"], transports=["websocket"], wait_timeout=10)
    for i in range(200):
        if gone:
            break
        client.emit("junk", i, namespace="/pillow")
    wait_for(lambda: gone, message="the flooding client disconnected")
    client.disconnect()
    wait_for(lambda: metric(p, "pillowd_web_clients") == 0, message="no clients")
    assert Watcher(p.url).wait_state(lambda s: True, message="a page still connects")


@pytest.mark.parametrize("event", ["connect", "disconnect"])
def test_a_flood_of_reserved_names_is_a_flood_too(pillow, event):
    # python-socketio hands a client's own "connect" or "disconnect" event to the
    # handler of that name: it must count as an event, never start the page afresh.
    p = pillow()
    client = socketio.Client(reconnection=False)
    gone = []
    client.on("disconnect", lambda *a: gone.append(True), namespace="/pillow")
    client.connect(p.url, namespaces=["/pillow"], transports=["websocket"], wait_timeout=10)
    for i in range(200):
        if gone:
            break
        client.emit(event, {"token": "x"}, namespace="/pillow")
    wait_for(lambda: gone, message="the flooding client disconnected")
    client.disconnect()
    wait_for(lambda: metric(p, "pillowd_web_clients") == 0, message="no clients")


def test_abandoned_sessions_never_exceed_the_cap(pillow):
    from pillowd.page.admission import MAX_SESSIONS
    p = pillow()
    sids = []
    for n in range(MAX_SESSIONS + 8):  # from many addresses: each has its own rate
        # Past the overall burst (as many as the cap) the allowance refills at 1/s.
        answer = wait_for(lambda: (lambda a: a if a.status_code != 429 else None)(
            get(p, HANDSHAKE, source=f"127.0.1.{n + 1}")), timeout=30, interval=0.25,
            message="a handshake let through")
        assert answer.status_code == 200
        sids.append(json.loads(answer.text[answer.text.index("{"):])["sid"])
    alive = [sid for sid in sids
             if requests.post(p.url + f"socket.io/?EIO=4&transport=polling&sid={sid}",
                              data=b"1", timeout=10).status_code == 200]
    assert len(alive) <= MAX_SESSIONS
    assert alive == sids[-len(alive):]  # the oldest went first
    # and a real page still gets in
    watcher = wait_for(lambda: page_or_none(p.url), timeout=20, interval=0.5,
                       message="a page let in")
    try:
        watcher.wait_state(lambda s: True, message="a page after the flood")
    finally:
        watcher.close()


def test_handshakes_from_one_address_are_rate_limited(pillow):
    from pillowd.page.admission import HANDSHAKE_BURST
    p = pillow()
    statuses = [get(p, HANDSHAKE).status_code for _ in range(HANDSHAKE_BURST + 20)]
    assert statuses[:HANDSHAKE_BURST] == [200] * HANDSHAKE_BURST
    assert statuses.count(429) >= 10  # refused before Engine.IO starts a thread for it
    assert get(p, HANDSHAKE, source="127.0.0.2").status_code == 200


# -- private ---------------------------------------------------------------------------

def test_a_private_pillow_shows_nothing_without_the_token(make_config, pillow_env):
    from conftest import PillowProcess, ROOT
    cfg = web_config(make_config, "private = true")
    p = PillowProcess(cfg, {**pillow_env, "PILLOWD_CONTROL_TOKEN": TOKEN}, cwd=ROOT).start()
    try:
        for path in ("/api/state", "/api/history", "/metrics"):
            assert p.get(path).status_code == 401, path
            assert p.get(path, headers=AUTH).status_code == 200, path
        assert p.get("/healthz").status_code == 200
        page = p.get("/")
        assert page.status_code == 200 and "test-pillow" not in page.text
        refused = socketio.Client(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            refused.connect(p.url, namespaces=["/pillow"], transports=["websocket"],
                            auth={"token": "not-the-token-at-all"}, wait_timeout=10)
        refused.disconnect()
        client = socketio.Client(reconnection=False)
        states = []
        client.on("state", states.append, namespace="/pillow")
        client.connect(p.url, namespaces=["/pillow"], transports=["websocket"],
                       auth={"token": TOKEN}, wait_timeout=10)
        try:
            wait_for(lambda: states, message="the state with the token")
            assert states[0]["pillow"] == "test-pillow"
        finally:
            client.disconnect()
    finally:
        p.stop()


def test_the_control_token_comes_from_the_systemd_credential(pillow, tmp_path):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "control-token").write_text(TOKEN + "\n")
    p = pillow(env={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert p.post("/api/quiet", json={"quiet": True}, headers=AUTH).status_code == 200
    assert p.state()["quiet"] is True
    # The environment variable, when set, wins over the credential.
    q = pillow(env={"CREDENTIALS_DIRECTORY": str(credentials),
                    "PILLOWD_CONTROL_TOKEN": "another-token-of-16-chars"})
    assert q.post("/api/quiet", json={}, headers=AUTH).status_code == 401


def test_the_pushers_are_loops_that_health_watches(make_config, pillow_env):
    from pillowd import config as loader
    from pillowd.daemon import Daemon
    d = Daemon(loader.load(make_config()), environ=pillow_env)
    try:
        d.start()
        watched = {loop.name: loop for loop in d.health.loops}
        assert {"state push", "frame push"} <= set(watched)
        assert watched["frame push"].thread.name == "pillowd-frames"
        assert d.health.reasons() == []
        d.broadcaster.frames.stop()  # the loop ends while the pillow runs on
        wait_for(lambda: not watched["frame push"].thread.is_alive(), message="the end")
        assert "the frame push loop has stopped" in d.health.reasons()
        assert d.health.watchdog_checks()["frame push loop"]() is False
    finally:
        d.close()


def test_a_page_that_never_acknowledges_gets_only_a_few_frames(pillow):
    from pillowd.page.broadcast import BACKLOG
    p = pillow()
    port = address(p)[1]
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket", timeout=10)
    try:
        assert ws.recv().startswith("0{")  # Engine.IO open
        ws.send("40/pillow,")             # join, and never acknowledge anything
        p.cli("send", "glow")             # breathing: a new frame on every render
        watcher = Watcher(p.url)          # a page that does acknowledge
        try:
            wait_for(lambda: len(watcher.frames) >= 30, message="30 frames to a real page")
        finally:
            watcher.close()
        binary = 0
        ws.settimeout(0.5)
        try:
            while True:
                opcode, _ = ws.recv_data()
                binary += opcode == websocket.ABNF.OPCODE_BINARY
        except websocket.WebSocketTimeoutException:
            pass
        assert 1 <= binary <= BACKLOG
    finally:
        ws.close()


def test_a_page_is_pushed_to_from_its_first_acknowledgement_with_what_it_missed(pillow):
    # python-socketio sends a page's CONNECT after the connect handler: the pushers
    # wait for the page's first acknowledgement (a binary frame must never straddle
    # that CONNECT), and a change meanwhile reaches the page then.
    p = pillow()
    port = address(p)[1]
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket", timeout=10)
    try:
        assert ws.recv().startswith("0{")
        ws.send("40/pillow,")
        frame_id, joined = None, False
        while frame_id is None or not joined:
            opcode, data = ws.recv_data()
            if opcode != websocket.ABNF.OPCODE_TEXT:
                continue
            text = data.decode()
            if text.startswith("451-/pillow,"):       # the frame, with its ack id
                frame_id = int(text[len("451-/pillow,"):text.index("[")])
            joined = joined or text.startswith("40/pillow,{")
        p.cli("send", "glow", "--from", "meanwhile")
        wait_for(lambda: (p.state()["message"] or {}).get("from") == "meanwhile",
                 message="the change, before the page acknowledges anything")
        ws.send(f"43/pillow,{frame_id}[]")
        while True:
            opcode, data = ws.recv_data()
            text = data.decode() if opcode == websocket.ABNF.OPCODE_TEXT else ""
            if text.startswith('42/pillow,["state"'):
                state = json.loads(text[len("42/pillow,"):])[1]
                if (state["message"] or {}).get("from") == "meanwhile":
                    break
            elif text == "2":
                ws.send("3")
    finally:
        ws.close()


def test_a_polling_session_that_leaves_the_namespace_is_let_go(pillow):
    # A session that joined /pillow once and left it, but keeps polling, holds a place
    # like one that never joined: past the join time its requests are refused.
    p = pillow()
    base = p.url + "socket.io/?EIO=4&transport=polling"
    answer = get(p, "/socket.io/?EIO=4&transport=polling")
    sid = json.loads(answer.text[answer.text.index("{"):])["sid"]
    session = base + f"&sid={sid}"
    assert requests.post(session, data=b"40/pillow,", timeout=10).status_code == 200
    wait_for(lambda: metric(p, "pillowd_web_clients") == 1, message="the page joined")
    assert requests.post(session, data=b"41/pillow,", timeout=10).status_code == 200
    wait_for(lambda: metric(p, "pillowd_web_clients") == 0, message="the page left")
    wait_for(lambda: requests.post(session, data=b"", timeout=10).status_code == 400,
             timeout=30, message="the session let go")


def test_a_websocket_session_that_never_joins_is_let_go(pillow):
    p = pillow()
    port = address(p)[1]
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket", timeout=10)
    try:
        assert ws.recv().startswith("0{")  # Engine.IO open, and never a join
        ws.settimeout(0.1)

        def closed() -> bool:
            get(p, HANDSHAKE, source="127.0.0.3")  # a handshake lets go of the idle
            try:
                return ws.recv_data()[0] == websocket.ABNF.OPCODE_CLOSE
            except websocket.WebSocketTimeoutException:
                return False
            except (websocket.WebSocketConnectionClosedException, OSError):
                return True

        wait_for(closed, timeout=30, interval=0.25, message="the WebSocket closed")
    finally:
        ws.close()
