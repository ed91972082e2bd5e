"""What the pillow published on a broker: a rename or a removed [mqtt] empties it."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from ..seams import files
from .transport import KEEPALIVE, _refusal, describe_failure

log = logging.getLogger(__name__)


class Published:
    """The retained topics published on one broker, kept in *path* across restarts."""

    def __init__(self, path: str | Path, *, host: str, port: int, tls: bool,
                 ca_file: str | None):
        self.path = Path(path)
        self.host, self.port, self.tls, self.ca_file = host, port, tls, ca_file

    def stale(self, topics: list[str]) -> list[str]:
        """What an earlier run published on this broker and *topics* does not have
        (a renamed pillow, another topic or prefix): to be emptied."""
        before = read_marker(self.path)
        if not before or (before["host"], before["port"]) != (self.host, self.port):
            return []
        keep = set(topics)
        return [t for t in before["topics"] if isinstance(t, str) and t not in keep]

    def gone(self, components: dict[str, str]) -> dict[str, str]:
        """The components ({object id: platform}) an earlier run announced on this
        broker and *components* has not (a partner taken out): to be removed."""
        before = read_marker(self.path)
        if not before or (before["host"], before["port"]) != (self.host, self.port):
            return {}
        kept = before.get("components")
        if not isinstance(kept, dict):
            return {}
        return {k: v for k, v in kept.items()
                if isinstance(k, str) and isinstance(v, str) and k not in components}

    def remember(self, topics: list[str], components: dict[str, str] | None = None) -> None:
        data = {"host": self.host, "port": self.port, "tls": self.tls,
                "ca_file": self.ca_file, "topics": list(topics),
                "components": dict(components or {})}
        try:
            files.write(self.path, json.dumps(data, indent=1))
        except OSError as err:
            log.warning("mqtt: cannot remember the published entities in %s: %s "
                        "(removing [mqtt] will not remove them)", self.path,
                        err.strerror or err)


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
