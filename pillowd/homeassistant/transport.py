"""The MQTT connection: paho-mqtt 2.x on one named thread that sleeps until needed."""

from __future__ import annotations

import logging
import os
import selectors
import socket
import ssl
import threading
import time
from typing import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from ..errors import PillowError
from ..seams import threads
from ..seams.credentials import CredentialError, credential

log = logging.getLogger(__name__)

# The systemd credential (LoadCredential=) holding the broker's password.
CREDENTIAL = "mqtt-password"
# Seconds between messages before a ping; the broker drops a client silent for
# 1.5 times this. Paho's loop is woken every KEEPALIVE / 3 for its pings, and
# otherwise only by the broker's socket or a change to publish.
KEEPALIVE = 60


class MqttError(PillowError, ValueError):
    """The MQTT settings or credentials cannot be used."""


def login_from(username_env: str, password_env: str,
               environ=os.environ) -> tuple[str | None, str | None]:
    """The broker login: user from $username_env, password from $password_env or
    the systemd credential ``mqtt-password``; (None, None) when there is no user."""
    username = environ.get(username_env, "").strip() if username_env else ""
    password = environ.get(password_env, "") if password_env else ""
    if not password:
        try:
            password = credential(CREDENTIAL, environ).rstrip("\r\n")
        except CredentialError as err:
            raise MqttError(f"mqtt: {err}") from None
    if not username:
        if password:  # MQTT 3.1.1 has no password without a user name
            log.warning("mqtt: a password is set but $%s (the user name) is not; "
                        "connecting without a login", username_env)
        return None, None
    return username, password or None


def describe_failure(err: BaseException | None, host: str, port: int,
                     tls: bool = False) -> str:
    """Why a connection attempt failed, in words a person understands."""
    where = f"{host}:{port}"
    if tls and isinstance(err, (ConnectionResetError, ssl.SSLEOFError)):
        # A broker that does not speak TLS on this port hangs up on the handshake.
        return (f"TLS error with {where}: the broker closed the connection during the "
                f"TLS handshake (is TLS on for this port?)")
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"TLS error with {where}: {err.verify_message or 'certificate not trusted'}"
    if isinstance(err, ssl.SSLError):
        return f"TLS error with {where}: {err.reason or err}"
    if isinstance(err, socket.gaierror):
        return f"cannot find the broker {host!r} (no such host name)"
    if isinstance(err, ConnectionRefusedError):
        return f"broker unreachable: {where} refused the connection (is it running?)"
    if isinstance(err, (TimeoutError, socket.timeout)):
        return f"broker unreachable: no answer from {where}"
    if isinstance(err, OSError):
        return f"broker unreachable at {where}: {err.strerror or err}"
    return f"cannot connect to the broker at {where}"


def _refusal(reason_code) -> str:
    value = getattr(reason_code, "value", reason_code)
    if value in (4, 134):
        return "the broker refused the login: bad user name or password"
    if value in (5, 135):  # mosquitto answers this to a wrong password too
        return "the broker refused the login: not authorised (wrong user name or password?)"
    if value in (3, 136):
        return "the broker is unavailable (it refused the connection for now)"
    return f"the broker refused the connection: {reason_code}"


class Connection:
    """One connection to the broker, kept up by one thread (*name*) until close().

    The thread connects (with back-off), reads, writes and pings, and otherwise
    sleeps: it wakes for the broker's socket, for poke() from any thread, and
    every KEEPALIVE / 3 for the pings. (Paho's own loop_start() thread wakes every
    second for nothing.) What goes out is the owner's business: *on_connect()*
    once each connection is accepted, *on_message(topic, payload)* for each
    message on *subscriptions*, and *on_wake(publish)* after a poke while online,
    all on this thread; *publish(topic, payload, retain=...)* is only for them.
    """

    def __init__(self, *, host: str, port: int, username: str | None,
                 password: str | None, tls: bool, ca_file: str | None, client_id: str,
                 will: tuple[str, str], subscriptions: list[str],
                 on_connect: Callable[[], None],
                 on_message: Callable[[str, bytes], None],
                 on_wake: Callable[[], None],
                 on_status: Callable[[dict], None] | None = None,
                 reconnect_seconds: tuple[float, float] = (1.0, 60.0),
                 name: str = "pillowd-mqtt"):
        self.host, self.port = host, port
        self.tls, self.ca_file = tls, ca_file or None
        self.client_id, self.will, self.name = client_id, will, name
        self.subscriptions = list(subscriptions)
        self._on_connect, self._on_message, self._on_wake = on_connect, on_message, on_wake
        self.on_status = on_status
        self._username, self._password = username, password
        self._reconnect = reconnect_seconds
        self.connects = 0
        self.publishes = 0
        self._online = False
        self._error: str | None = "not connected yet"
        self._status_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._client: paho.Client | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._acked = False             # this connection got its CONNACK
        # Wakes the loop's select() from any thread; a socket pair rather than a
        # pipe: once closed, a late write fails instead of landing in a reused fd.
        self._waker, self._wakee = socket.socketpair()
        self._waker.setblocking(False)
        self._wakee.setblocking(False)

    @property
    def status(self) -> dict:
        with self._status_lock:
            return {"online": self._online, "error": self._error}

    @property
    def closed(self) -> bool:
        return self._closed

    def poke(self) -> None:
        """Wake the thread to call on_wake() soon; safe on any thread, never blocks."""
        if not self._wake.is_set():  # one byte per burst wakes the loop
            self._wake.set()
            try:
                self._waker.send(b"\0")
            except OSError:  # full (it is awake anyway) or closed (stopped)
                pass

    def publish(self, topic: str, payload: str, *, retain: bool, qos: int = 1) -> None:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == paho.MQTT_ERR_SUCCESS:
            self.publishes += 1

    def start(self) -> None:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=paho.MQTTv311)
        # Paho swallows nothing by default: a bug in a callback would end the
        # loop. (Callbacks here catch their own.)
        client.suppress_exceptions = True
        if self._username:
            client.username_pw_set(self._username, self._password)
        client.will_set(*self.will, qos=1, retain=True)
        client.on_connect = self._connected
        client.on_disconnect = self._disconnected
        client.on_message = self._message
        self._client = client
        if self.tls:
            try:
                # ca_certs=None: the system's CA store, like a browser.
                client.tls_set(ca_certs=self.ca_file)
            except (OSError, ssl.SSLError) as err:
                self._set_status(False, f"TLS error: cannot use ca_file {self.ca_file}: "
                                 f"{getattr(err, 'strerror', None) or err}")
                return
        # Only says where; the loop connects.
        client.connect_async(self.host, self.port, keepalive=KEEPALIVE)
        self._thread = threads.start(self.name, self._run)

    def close(self, timeout: float = 1.0) -> None:
        """Publish the will's payload (a clean stop is not a crash), disconnect;
        safe twice."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.clear()
        self.poke()
        thread = self._thread
        # The loop may be stuck in a connect to a host that does not answer (or a
        # DNS lookup) for seconds; shutdown does not wait for it: the thread is a
        # daemon thread and ends with the process.
        if thread is not None:
            thread.join(timeout)
        if thread is None or not thread.is_alive():
            self._waker.close()
            self._wakee.close()
        self._set_status(False, "stopped")

    # -- paho's callbacks (this thread) -----------------------------------------------

    def _set_status(self, online: bool, error: str | None) -> None:
        with self._status_lock:
            changed = (online, error) != (self._online, self._error)
            self._online, self._error = online, error
        if not changed:
            return
        if online:
            log.info("mqtt: connected to %s:%d", self.host, self.port)
        elif error and not self._closed:
            log.warning("mqtt: %s", error)
        if self.on_status is not None:
            try:
                self.on_status(self.status)
            except Exception:
                log.exception("mqtt: the status listener failed")

    def _connected(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._set_status(False, _refusal(reason_code))
            return
        client.subscribe([(topic, 1) for topic in self.subscriptions])
        self.connects += 1
        self._acked = True
        self._set_status(True, None)
        self._on_connect()
        self._wake.set()

    def _disconnected(self, client, userdata, flags, reason_code, properties) -> None:
        # Only a connection that was up is "lost"; after a refused login the
        # refusal stays the reason shown.
        if not self._closed and self.status["online"]:
            self._set_status(False, f"lost the connection to {self.host}:{self.port}; "
                                    f"reconnecting")

    def _message(self, client, userdata, message) -> None:
        try:
            self._on_message(message.topic, message.payload)
        except Exception:  # a bug must not end the MQTT loop
            log.exception("mqtt: handling a message on %s failed", message.topic)
        # What it asked for (a state, configs again) goes out once this read is done;
        # on this thread, so no wake-up byte is needed.
        self._wake.set()

    # -- the loop (this thread) ---------------------------------------------------------

    def _run(self) -> None:
        delay = self._reconnect[0]
        while not self._stop.is_set():
            self._acked = False
            try:
                self._client.reconnect()  # TCP, TLS, CONNECT; the CONNACK comes later
            except (OSError, ValueError) as err:  # ssl's errors are OSErrors
                self._set_status(False, describe_failure(err, self.host, self.port,
                                                         self.tls))
            else:
                try:
                    self._serve()
                except Exception:  # a bug must not end the pillow's MQTT for good
                    log.exception("mqtt: the connection loop failed")
                    self._client.disconnect()
                if self._acked:  # it was up: the back-off starts anew
                    delay = self._reconnect[0]
            if self._stop.is_set():
                break
            self._stop.wait(delay)
            self._drain()
            delay = min(delay * 2, self._reconnect[1])

    def _serve(self) -> None:
        """Run one connection: read, write, publish and ping until it ends."""
        client, sock = self._client, self._client.socket()
        with selectors.DefaultSelector() as selector:
            selector.register(self._wakee, selectors.EVENT_READ)
            selector.register(sock, selectors.EVENT_READ)
            while True:
                mask = selectors.EVENT_READ
                if client.want_write():
                    mask |= selectors.EVENT_WRITE
                selector.modify(sock, mask)
                # TLS may hold decrypted bytes that select() cannot see; a change
                # noted while offline sent no wake-up byte.
                pending = getattr(sock, "pending", lambda: 0)()
                now = pending or (self._wake.is_set() and self.status["online"])
                for key, events in selector.select(0 if now else KEEPALIVE / 3):
                    if key.fileobj is self._wakee:
                        self._drain()
                        continue
                    if events & selectors.EVENT_READ:
                        client.loop_read()
                    if events & selectors.EVENT_WRITE and client.socket() is not None:
                        client.loop_write()
                if pending and client.socket() is not None:
                    client.loop_read()
                if client.socket() is None:  # lost, or the login was refused
                    return
                if self._stop.is_set():
                    self._goodbye()
                    return
                if self._wake.is_set() and self.status["online"]:  # CONNACK is in
                    self._wake.clear()
                    self._on_wake()
                client.loop_misc()  # pings; drops a connection that stopped answering
                if client.socket() is None:
                    return

    def _goodbye(self, timeout: float = 1.0) -> None:
        """The will's payload, retained (a clean stop is not a crash), then
        DISCONNECT, which tells the broker not to send the will."""
        client = self._client
        if self.status["online"]:
            client.publish(*self.will, qos=1, retain=True)
        client.disconnect()  # written at once, unless the socket's buffer is full
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            while (sock := client.socket()) is not None and client.want_write():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                selector.register(sock, selectors.EVENT_WRITE)
                if selector.select(left):
                    client.loop_write()
                selector.unregister(sock)

    def _drain(self) -> None:
        try:
            while self._wakee.recv(4096):
                pass
        except OSError:  # empty (or closed)
            pass


