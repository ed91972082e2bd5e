"""The pillow in Home Assistant over MQTT: one device of entities on one connection.

Laid out as a Home Assistant integration: one module a platform (`light`,
`switch`, `button`, `notify`, `sensor`, `binary_sensor`, `event`,
`device_trigger`), each entity a class there with its discovery config, state and
commands; what they share in `entity`; the published list in `entities`
(ENTITIES). `device` publishes them, `transport` is the
MQTT connection on its own thread, `published` remembers what was published so
that removing [mqtt] removes it too. The daemon builds it with
build_home_assistant(); paho-mqtt is imported only here.

May import: messages, feel, history, settings, errors, seams (floors below 7).
Must not import: hugs, the page, the player or daemon: the entities act through
the controls and the press they are handed, and read the snapshot.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from ..feel import felt_fields
from .device import FORMS, Device, slug
from .entities import ENTITIES, build
from .event import HUG_EVENTS, HugEvent
from .published import Published, remove_entities
from .transport import Connection, MqttError, login_from

__all__ = ["HomeAssistant", "Connection", "Device", "MqttError", "login_from",
           "remove_entities", "hardware_model", "ENTITIES", "FORMS", "HUG_EVENTS"]

log = logging.getLogger(__name__)

# Where a play comes from when no one sent it (Player's sources): the page, the
# button, Home Assistant itself and the demo. Never someone's message.
LOCAL_SOURCES = frozenset({"web", "button", "mqtt", "demo"})


class HomeAssistant:
    """The pillow as one Home Assistant device (entities.ENTITIES) over MQTT discovery.

    Builds the parts and joins them: the entities act through *controls* (the
    web page's calls) and read *snapshot*; the device publishes them; the
    connection (one thread, "pillowd-mqtt") carries it. The daemon's threads only
    note a change with state_changed(), hug() and played(), which never wait on
    the network.
    """

    def __init__(self, *, host: str, port: int, username: str | None,
                 password: str | None, tls: bool, ca_file: str | None,
                 discovery_prefix: str, topic: str, pillow_name: str, version: str,
                 page_url: str, scenes: list[str], controls,
                 snapshot: Callable[[], dict], hugs=None,
                 partners: list[str] = (), discovery: str = "device",
                 hw_version: str = "mock",
                 on_status: Callable[[dict], None] | None = None,
                 marker: str | Path | None = None,
                 reconnect_seconds: tuple[float, float] = (1.0, 60.0)):
        node = slug(pillow_name)
        topic = (topic or f"pillowd/{node}").strip("/")
        # hugs: the press (hugs.Hugs) the button and the message make; partners:
        # the partner pillows a "Hug <name>" button and a delivered sensor are for.
        self.entities = build(topic, sorted(partners), controls=controls, scenes=scenes,
                              hugs=hugs, fire=self.hug)
        self._hug = next(e for e in self.entities if isinstance(e, HugEvent))
        published = Published(marker, host=host, port=port, tls=tls,
                              ca_file=ca_file or None) if marker else None
        self.device = Device(pillow_name=pillow_name, version=version, page_url=page_url,
                             discovery_prefix=discovery_prefix, topic=topic,
                             entities=self.entities, snapshot=snapshot,
                             published=published, discovery=discovery,
                             hw_version=hw_version)
        self.connection = Connection(
            host=host, port=port, username=username, password=password, tls=tls,
            ca_file=ca_file, client_id=f"pillowd-{node}",
            will=(self.device.availability_topic, "offline"),
            subscriptions=self.device.subscriptions, on_connect=self.device.connected,
            on_message=self.device.message,
            on_wake=lambda: self.device.publish_pending(self.connection.publish),
            on_status=on_status, reconnect_seconds=reconnect_seconds)

    def start(self) -> None:
        self.connection.start()

    def close(self) -> None:
        """Say offline (a clean stop is not a crash), disconnect; safe twice."""
        self.connection.close()

    # -- what the daemon and /metrics read --------------------------------------------

    @property
    def status(self) -> dict:
        return self.connection.status

    @property
    def connects(self) -> int:
        return self.connection.connects

    @property
    def publishes(self) -> int:
        return self.connection.publishes

    @property
    def commands(self) -> int:
        return self.device.commands

    @property
    def ignored(self) -> int:
        return self.device.ignored

    def discovery(self) -> dict[str, dict]:
        return self.device.discovery()

    # -- what the daemon tells it (any thread; never blocks) ------------------------

    def state_changed(self) -> None:
        """The pillow's state changed: a burst of changes costs one publish of the
        latest, read from the snapshot on the MQTT thread."""
        self.connection.poke()

    def hug(self, event_type: str, sender: str | None = None,
            text: str | None = None, reason: str | None = None,
            more: dict | None = None) -> None:
        """Fire the ``hug`` event in Home Assistant (dropped while offline); *more*
        adds attributes (``received``: the partner, the colour, hold, strength)."""
        self._hug.fire(event_type, sender, text, reason, more)
        self.connection.poke()

    def played(self, command, outcome) -> None:
        """A message played (Player's on_played): one from someone, whoever it is,
        fires ``received``; the page's, the button's, Home Assistant's and the
        demo's plays do not."""
        if (outcome.sender and outcome.queue not in LOCAL_SOURCES
                and not outcome.id.startswith("demo-")):
            self.hug("received", outcome.sender, command.text, more=received(command))


def received(command) -> dict:
    """What ``received`` says beyond who and the words: the partner pillow whose
    signed hug it is (``partner``), and the ``color``, ``hold`` and ``strength`` it
    played with (the colour its own, or the roster's for that partner)."""
    more = {"partner": command.pillow} if getattr(command, "partner", False) else {}
    return {**more, **felt_fields(command)}


def hardware_model(backend: str, path: str | Path = "/proc/device-tree/model") -> str:
    """The device's hw_version: the Pi's model as its firmware names it, or
    "mock" on the mock backend or a machine without one."""
    if backend == "mock":
        return "mock"
    try:
        model = Path(path).read_bytes().rstrip(b"\0").decode("utf-8", "replace").strip()
    except OSError:
        return "mock"
    return model or "mock"


def build_home_assistant(m, state_dir: Path, environ, *, pillow_name: str, version: str,
                         page_url: str, scenes: list[str], controls, pillow, hugs,
                         hardware_backend: str):
    """(HomeAssistant or None, the marker of what was published, the login to
    remove it with): Home Assistant over MQTT when the [mqtt] settings *m* are
    there. Without them, the login is looked for under the default names, so that
    removing [mqtt] can remove what an earlier run published."""
    from ..errors import PillowError
    from ..settings import MqttSettings

    marker = state_dir / "mqtt-entities.json"
    if m is None:
        login = (None, None)
        if marker.exists():
            d = MqttSettings()
            try:
                login = login_from(d.username_env, d.password_env, environ)
            except PillowError as err:  # a clean-up must not stop the pillow
                log.warning("%s", err)
        return None, marker, login
    username, password = login_from(m.username_env, m.password_env, environ)
    ha = HomeAssistant(
        host=m.host, port=m.port, username=username, password=password, tls=m.tls,
        ca_file=m.ca_file, discovery_prefix=m.discovery_prefix, topic=m.topic,
        pillow_name=pillow_name, version=version, page_url=page_url,
        scenes=scenes, controls=controls, snapshot=pillow.snapshot, hugs=hugs,
        partners=hugs.partners, discovery=m.discovery,
        hw_version=hardware_model(hardware_backend),
        on_status=lambda status: pillow.section_changed("mqtt", status),
        marker=marker)
    pillow.section_changed("mqtt", ha.status)
    pillow.on_state(ha.state_changed)
    return ha, marker, (None, None)
