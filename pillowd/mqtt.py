"""The pillow in Home Assistant: MQTT discovery, state, commands and hug events."""

from __future__ import annotations

import json
import logging
import os
import re
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from . import threads
from .errors import PillowError
from .messages import Rejection

log = logging.getLogger(__name__)

# The systemd credential (LoadCredential=) holding the broker's password.
CREDENTIAL = "mqtt-password"
HUG_EVENTS = ("pressed", "sent", "received", "returned")
MODEL = "Huggable Cloud Pillow"
# A command bigger than this is not something Home Assistant sends.
MAX_COMMAND = 4096
# A malformed command is logged at most this often, with how many were hushed.
LOG_EVERY_SECONDS = 10.0
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
    if not password and environ.get("CREDENTIALS_DIRECTORY"):
        path = Path(environ["CREDENTIALS_DIRECTORY"]) / CREDENTIAL
        try:
            password = path.read_text(encoding="utf-8").rstrip("\r\n")
        except FileNotFoundError:
            password = ""
        except (OSError, UnicodeDecodeError) as err:
            raise MqttError(f"mqtt: cannot read the systemd credential {CREDENTIAL}: "
                            f"{getattr(err, 'strerror', None) or type(err).__name__}"
                            ) from None
    if not username:
        if password:  # MQTT 3.1.1 has no password without a user name
            log.warning("mqtt: a password is set but $%s (the user name) is not; "
                        "connecting without a login", username_env)
        return None, None
    return username, password or None


def slug(text: str) -> str:
    """*text* as one MQTT topic level and Home Assistant object id."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "pillow"


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


class _Hush:
    """Logs a repeated complaint at most every LOG_EVERY_SECONDS, counting the rest."""

    def __init__(self, every: float = LOG_EVERY_SECONDS, clock=time.monotonic):
        self.every, self.clock = every, clock
        self.last = -every
        self.hushed = 0
        self._lock = threading.Lock()

    def warn(self, message: str, *args, exc_info: bool = False) -> None:
        with self._lock:
            now = self.clock()
            if now - self.last < self.every:
                self.hushed += 1
                return
            hushed, self.hushed, self.last = self.hushed, 0, now
        more = f" ({hushed} more since the last one)" if hushed else ""
        log.warning(message + more, *args, exc_info=exc_info)


class HomeAssistant:
    """One pillow as one Home Assistant device over MQTT, with discovery.

    Entities: a JSON-schema light (scenes as effects), an event ``hug``, a sensor
    with the last sender and a switch for quiet hours. Commands go through
    *controls* (``play``, ``set_brightness``, ``off``, ``set_quiet``), the same
    calls as the web page's. One thread of this class ("pillowd-mqtt") runs paho's
    loop: it connects (with back-off), reads commands and publishes; the daemon's
    threads only note a change with ``state_changed()`` and ``hug()``, which never
    wait on the network.
    """

    def __init__(self, *, host: str, port: int, username: str | None,
                 password: str | None, tls: bool, ca_file: str | None,
                 discovery_prefix: str, topic: str, pillow_name: str, version: str,
                 page_url: str, scenes: list[str], controls,
                 snapshot: Callable[[], dict],
                 on_status: Callable[[dict], None] | None = None,
                 marker: str | Path | None = None,
                 reconnect_seconds: tuple[float, float] = (1.0, 60.0)):
        self.host, self.port = host, port
        self.tls, self.ca_file = tls, ca_file or None
        self.prefix = discovery_prefix.strip("/")
        self.node = slug(pillow_name)
        self.topic = (topic or f"pillowd/{self.node}").strip("/")
        self.pillow_name, self.version, self.page_url = pillow_name, version, page_url
        self.scenes = list(scenes)
        self.controls = controls
        self.snapshot = snapshot
        self.on_status = on_status
        self.marker = Path(marker) if marker else None
        self._username, self._password = username, password
        self._reconnect = reconnect_seconds

        t = self.topic
        self.availability_topic = f"{t}/availability"
        self.light_state, self.light_command = f"{t}/light/state", f"{t}/light/set"
        self.quiet_state, self.quiet_command = f"{t}/quiet/state", f"{t}/quiet/set"
        self.sender_state = f"{t}/last_sender/state"
        self.hug_topic = f"{t}/hug"
        self.status_topic = f"{self.prefix}/status"

        self.connects = 0
        self.publishes = 0
        self.commands = 0
        self.ignored = 0
        self._online = False
        self._error: str | None = "not connected yet"
        self._status_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._announce = False          # (re)publish discovery, availability, states
        self._events: deque[dict] = deque(maxlen=100)
        self._published: dict[str, str] = {}  # retained state topic -> payload
        self._restore_level = 1.0       # brightness for an ON after an OFF
        self._hush = _Hush()
        self._client: paho.Client | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._acked = False             # this connection got its CONNACK
        # Wakes the loop's select() from any thread; a socket pair rather than a
        # pipe: once closed, a late write fails instead of landing in a reused fd.
        self._waker, self._wakee = socket.socketpair()
        self._waker.setblocking(False)
        self._wakee.setblocking(False)

    # -- what the daemon reads and calls -----------------------------------------

    @property
    def status(self) -> dict:
        with self._status_lock:
            return {"online": self._online, "error": self._error}

    def state_changed(self) -> None:
        """The pillow's state changed: publish what Home Assistant shows, soon.

        Safe on any thread and never blocks: the MQTT thread reads the snapshot,
        so a burst of changes costs one publish of the latest."""
        self._poke()

    def hug(self, event_type: str, sender: str | None = None,
            text: str | None = None) -> None:
        """Fire the ``hug`` event in Home Assistant (dropped while offline)."""
        if event_type not in HUG_EVENTS:
            raise ValueError(f"hug event type must be one of {', '.join(HUG_EVENTS)}, "
                             f"not {event_type!r}")
        self._events.append({"event_type": event_type, "from": sender, "text": text})
        self._poke()

    def _poke(self) -> None:
        if not self._wake.is_set():  # one byte per burst wakes the loop
            self._wake.set()
            try:
                self._waker.send(b"\0")
            except OSError:  # full (it is awake anyway) or closed (stopped)
                pass

    def start(self) -> None:
        client = paho.Client(CallbackAPIVersion.VERSION2,
                             client_id=f"pillowd-{self.node}",
                             protocol=paho.MQTTv311)
        # Paho swallows nothing by default: a bug in a callback would end the
        # loop. (Callbacks here catch their own.)
        client.suppress_exceptions = True
        if self._username:
            client.username_pw_set(self._username, self._password)
        client.will_set(self.availability_topic, "offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client
        if self.tls:
            try:
                # ca_certs=None: the system's CA store, like a browser.
                client.tls_set(ca_certs=self.ca_file)
            except (OSError, ssl.SSLError) as err:
                self._set_status(False, f"TLS error: cannot use ca_file {self.ca_file}: "
                                 f"{getattr(err, 'strerror', None) or err}")
                return
        # Only says where; the loop connects. (Paho's own loop_start() thread
        # wakes every second for nothing; this loop sleeps until there is work.)
        client.connect_async(self.host, self.port, keepalive=KEEPALIVE)
        self._thread = threads.start("pillowd-mqtt", self._run)

    def close(self, timeout: float = 1.0) -> None:
        """Say offline (a clean stop is not a crash), disconnect; safe twice."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.clear()
        self._poke()
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

    # -- connection (paho's callbacks, on this class's thread) ---------------------

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

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._set_status(False, _refusal(reason_code))
            return
        client.subscribe([(self.light_command, 1), (self.quiet_command, 1),
                          (self.status_topic, 1)])
        self.connects += 1
        self._acked = True
        self._announce = True
        self._set_status(True, None)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        # Only a connection that was up is "lost"; after a refused login the
        # refusal stays the reason shown.
        if not self._closed and self.status["online"]:
            self._set_status(False, f"lost the connection to {self.host}:{self.port}; "
                                    f"reconnecting")

    def _on_message(self, client, userdata, message) -> None:
        try:
            if message.topic == self.status_topic:
                if message.payload == b"online":  # Home Assistant (re)started
                    self._announce = True
            elif message.topic == self.light_command:
                self._light(message.payload)
            elif message.topic == self.quiet_command:
                self._quiet(message.payload)
        except Rejection as why:
            self.ignored += 1
            self._hush.warn("mqtt: ignored a command on %s: %s", message.topic, why)
        except Exception:  # a bug must not end the MQTT loop, nor flood the log
            self.ignored += 1
            self._hush.warn("mqtt: a command on %s failed", message.topic, exc_info=True)

    # -- commands ------------------------------------------------------------------

    def _light(self, payload: bytes) -> None:
        command = _json_object(payload)
        state = command.get("state")
        if state not in ("ON", "OFF"):
            raise Rejection(f"state must be \"ON\" or \"OFF\", not {_short(state)}")
        if state == "OFF":
            self.controls.off()
            self.commands += 1
            return
        level = None
        if "brightness" in command:
            b = command["brightness"]
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 <= b <= 255:
                raise Rejection(f"brightness must be 0..255, not {_short(b)}")
            level = b / 255
        play = {}
        if "effect" in command:
            if not isinstance(command["effect"], str):
                raise Rejection(
                    f"effect must be a scene name, not {_short(command['effect'])}")
            play["scene"] = command["effect"]
        if "color" in command:
            play["color"] = _hex_color(command["color"])
        if play:
            if "scene" not in play:  # a colour alone recolours what plays now
                play["scene"] = self.snapshot().get("scene") or "idle"
            self.controls.play(play, "mqtt")  # raises Rejection: nothing changed
        if level is None and self._current_brightness() <= 0:
            level = self._restore_level  # ON after OFF lights it as it was
        if level is not None:
            if level > 0:
                self._restore_level = level
            self.controls.set_brightness(level)
        self.commands += 1

    def _quiet(self, payload: bytes) -> None:
        if payload not in (b"ON", b"OFF"):
            raise Rejection(f"the quiet switch takes ON or OFF, not {_short(payload)}")
        self.controls.set_quiet(payload == b"ON")
        self.commands += 1

    def _current_brightness(self) -> float:
        return float((self.snapshot().get("leds") or {}).get("brightness") or 0.0)

    # -- the loop (this class's thread) -------------------------------------------

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
            self._events.clear()  # a hug from an hour ago must not fire later
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
                if self._wake.is_set() or self._announce:
                    self._wake.clear()
                    self._publish_pending()
                client.loop_misc()  # pings; drops a connection that stopped answering
                if client.socket() is None:
                    return

    def _goodbye(self, timeout: float = 1.0) -> None:
        """Offline, retained (a clean stop is not a crash), then DISCONNECT: no will."""
        client = self._client
        if self.status["online"]:
            client.publish(self.availability_topic, "offline", qos=1, retain=True)
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

    def _publish(self, topic: str, payload: str, *, retain: bool, qos: int = 1) -> None:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == paho.MQTT_ERR_SUCCESS:
            self.publishes += 1

    def _publish_pending(self) -> None:
        if not self.status["online"]:  # connected, but no CONNACK yet
            return
        if self._announce:
            self._announce = False
            configs = self.discovery()
            self._forget_stale(set(configs))
            for topic, config in configs.items():
                self._publish(topic, json.dumps(config), retain=True)
            self._publish(self.availability_topic, "online", retain=True)
            self._published.clear()  # Home Assistant gets every state again
            self._write_marker(configs)
        for topic, payload in self._states(self.snapshot()).items():
            if payload is not None and self._published.get(topic) != payload:
                self._publish(topic, payload, retain=True)
                self._published[topic] = payload
        while self._events:
            event = self._events.popleft()
            self._publish(self.hug_topic, json.dumps(event), retain=False)

    def _states(self, snapshot: dict) -> dict[str, str | None]:
        """Retained state payloads from the pillow's snapshot, by topic."""
        brightness = float((snapshot.get("leds") or {}).get("brightness") or 0.0)
        light = {"state": "ON" if brightness > 0 else "OFF",
                 "brightness": round(brightness * 255),
                 "effect": snapshot.get("scene")}
        color = snapshot.get("color")
        if isinstance(color, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", color):
            light["color_mode"] = "rgb"
            light["color"] = {"r": int(color[1:3], 16), "g": int(color[3:5], 16),
                              "b": int(color[5:7], 16)}
        sender = next((item.get("from") for item in snapshot.get("recent") or ()
                       if item.get("outcome") == "applied" and item.get("from")), None)
        message = snapshot.get("message") or {}
        sender = message.get("from") or sender
        return {self.light_state: json.dumps(light, sort_keys=True),
                self.quiet_state: "ON" if snapshot.get("quiet") else "OFF",
                self.sender_state: sender}

    def discovery(self) -> dict[str, dict]:
        """Home Assistant's discovery configs, by their (retained) topic."""
        device = {"identifiers": [self.pillow_name], "name": self.pillow_name,
                  "model": MODEL, "sw_version": self.version}
        if self.page_url:
            device["configuration_url"] = self.page_url
        common = {"device": device,
                  "origin": {"name": "pillowd", "sw_version": self.version},
                  "availability_topic": self.availability_topic,
                  "payload_available": "online", "payload_not_available": "offline"}
        n, p = self.node, self.prefix
        return {
            f"{p}/light/{n}/light/config": {
                **common, "name": None, "unique_id": f"{n}_light", "schema": "json",
                "command_topic": self.light_command, "state_topic": self.light_state,
                "brightness": True, "brightness_scale": 255,
                "supported_color_modes": ["rgb"],
                "effect": True, "effect_list": self.scenes, "icon": "mdi:cloud"},
            f"{p}/event/{n}/hug/config": {
                **common, "name": "Hug", "unique_id": f"{n}_hug",
                "state_topic": self.hug_topic, "event_types": list(HUG_EVENTS),
                "icon": "mdi:hand-heart"},
            f"{p}/sensor/{n}/last_sender/config": {
                **common, "name": "Last message from", "unique_id": f"{n}_last_sender",
                "state_topic": self.sender_state, "icon": "mdi:account-heart"},
            f"{p}/switch/{n}/quiet/config": {
                **common, "name": "Quiet hours", "unique_id": f"{n}_quiet",
                "command_topic": self.quiet_command, "state_topic": self.quiet_state,
                "payload_on": "ON", "payload_off": "OFF", "icon": "mdi:sleep"},
        }

    # -- what was published before, to remove it later ------------------------------

    def _retained(self, configs) -> list[str]:
        return [*configs, self.availability_topic, self.light_state, self.quiet_state,
                self.sender_state]

    def _write_marker(self, configs) -> None:
        if self.marker is None:
            return
        data = {"host": self.host, "port": self.port, "tls": self.tls,
                "ca_file": self.ca_file, "topics": self._retained(configs)}
        try:
            tmp = self.marker.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
            os.replace(tmp, self.marker)
        except OSError as err:
            log.warning("mqtt: cannot remember the published entities in %s: %s "
                        "(removing [mqtt] will not remove them)", self.marker,
                        err.strerror or err)

    def _forget_stale(self, configs: set[str]) -> None:
        """Empty what an earlier run published and this one does not (a renamed
        pillow, another topic or prefix), on the same broker."""
        before = read_marker(self.marker) if self.marker else None
        if not before or (before["host"], before["port"]) != (self.host, self.port):
            return
        keep = set(self._retained(configs))
        for topic in before["topics"]:
            if topic not in keep:
                self._publish(topic, "", retain=True)


def read_marker(path: Path) -> dict | None:
    """What an earlier run published, or None."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if (isinstance(data, dict) and isinstance(data.get("host"), str)
                and isinstance(data.get("port"), int)
                and isinstance(data.get("topics"), list)):
            return data
    except (OSError, ValueError):
        pass
    return None


def remove_entities(marker: str | Path, *, username: str | None, password: str | None,
                    timeout: float = 10.0) -> bool:
    """Empty every retained topic an earlier run published (so Home Assistant removes
    the device), then delete *marker*. True when done or nothing was there."""
    marker = Path(marker)
    data = read_marker(marker)
    if data is None:
        return True
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    if username:
        client.username_pw_set(username, password)
    host, port, tls = data["host"], data["port"], bool(data.get("tls"))
    refused: list[str] = []
    connected = threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            refused.append(_refusal(reason_code))
        connected.set()
    client.on_connect = on_connect
    why = None
    try:
        if tls:
            client.tls_set(ca_certs=data.get("ca_file") or None)
        client.connect(host, port, keepalive=KEEPALIVE)
        client.loop_start()
        try:
            if not connected.wait(timeout) or refused:
                why = refused[0] if refused else f"no answer from {host}:{port}"
            else:
                infos = [client.publish(t, "", qos=1, retain=True)
                         for t in data["topics"] if isinstance(t, str)]
                deadline = time.monotonic() + timeout
                for info in infos:
                    info.wait_for_publish(max(0.0, deadline - time.monotonic()))
                if not all(info.is_published() for info in infos):
                    why = f"{host}:{port} did not take them all in {timeout:.0f} s"
        finally:
            client.disconnect()
            client.loop_stop()
    except (OSError, ValueError, RuntimeError) as err:  # ssl's errors are OSErrors
        why = describe_failure(err, host, port, tls)
    if why:
        log.warning("mqtt: cannot remove the Home Assistant entities now (kept in %s "
                    "for the next start): %s", marker, why)
        return False
    marker.unlink(missing_ok=True)
    log.info("mqtt: removed the Home Assistant entities from %s:%s", host, port)
    return True


def _json_object(payload: bytes) -> dict:
    if len(payload) > MAX_COMMAND:
        raise Rejection(f"command is {len(payload)} bytes; at most {MAX_COMMAND}")
    try:
        value = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Rejection("command is not JSON") from None
    if not isinstance(value, dict):
        raise Rejection(f"command must be a JSON object, not {type(value).__name__}")
    return value


def _hex_color(color) -> str:
    if not isinstance(color, dict):
        raise Rejection(f"color must be an object with r, g and b, not {_short(color)}")
    channels = [color.get(k) for k in "rgb"]
    if not all(isinstance(c, (int, float)) and not isinstance(c, bool) and 0 <= c <= 255
               for c in channels):
        raise Rejection("color's r, g and b must each be 0..255")
    return "#" + "".join(f"{round(c):02x}" for c in channels)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
