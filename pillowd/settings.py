"""The settings config.toml describes: frozen dataclasses with defaults and checks; stdlib only."""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

# Checks return the reason a value is bad, or None. The loader (pillowd.config) runs
# them on every key it reads, after checking the value's TOML type.
Check = Callable[[Any], "str | None"]


def _range(lo: float | None = None, hi: float | None = None) -> Check:
    def check(value):
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if lo is not None and value < lo:
            return f"must be at least {lo}, not {value}"
        if hi is not None and value > hi:
            return f"must be at most {hi}, not {value}"
        return None
    return check


def _one_of(*choices: str) -> Check:
    def check(value):
        if value not in choices:
            return f"must be one of {', '.join(map(repr, choices))}, not {value!r}"
        return None
    return check


def _non_empty(value) -> str | None:
    return None if value.strip() else "must not be empty"


_QUEUE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")


def _queue_name(value) -> str | None:
    # Azure's rule, applied to the local backend too so a config moves between them.
    if value == "" or _QUEUE_NAME.match(value):
        return None
    return ("must be 3-63 lowercase letters, digits and single hyphens, "
            "starting and ending with a letter or digit")


def _queue_names(value) -> str | None:
    # [queue] outbound_name: one partner's queue, or a list for a family of pillows.
    if isinstance(value, str):
        return _queue_name(value)
    for name in value:
        why = _queue_name(name) if isinstance(name, str) and name else (
            "must be a queue name")
        if why:
            return f"{name!r} {why}"
    return None


_ROSTER_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){0,62}$")


def _roster_name(value) -> str | None:
    # As `pillowd pair` spells a pillow: it names the pillow's policy and queue too.
    if _ROSTER_NAME.match(value):
        return None
    return ("must be a pillow's name as pillowd pair writes it: lowercase letters, "
            "digits and single hyphens, starting and ending with a letter or digit")


_HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


def _hex_color(value) -> str | None:
    if value == "" or _HEX_COLOR.match(value):
        return None
    return f"must be a colour like \"#3366ff\", not {value!r}"


def _gpio(value) -> str | None:
    # BCM numbers of the 40-pin header; -1 is "not given", reported as missing.
    return None if 0 <= value <= 27 else f"must be a GPIO number 0..27, not {value}"


_HH_MM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


def _clock_time(value) -> str | None:
    return None if _HH_MM.match(value) else f"must be a time like \"22:30\", not {value!r}"


def _aliases(value) -> str | None:
    if all(isinstance(a, str) and a.strip() for a in value):
        return None
    return "must be a list of non-empty strings"


_HOST_NAME = re.compile(r"^(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*"
                        r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.?$", re.IGNORECASE)


def _host_names(value) -> str | None:
    # [web] allowed_hosts: names as a browser sends them in Host, without a port.
    for name in value:
        if isinstance(name, str) and len(name) <= 253 and (
                _HOST_NAME.match(name) or _ip_address(name.strip("[]"))):
            continue
        return (f"{name!r} is not a host name or address (like \"pillow.example.net\", "
                "no scheme, port or path)")
    return None


def _ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _key(default, check: Check | None = None):
    return field(default=default, metadata={"check": check})


def _limits(defaults: Limits, **checks: Check):
    """A part's Limits, written as flat keys in the part's own table: *defaults* are
    the part's, *checks* replace Limits' own for the keys whose bounds differ."""
    return field(default=defaults, metadata={"check": checks})


@dataclass(frozen=True)
class PillowSettings:
    name: str = _key("cloud-pillow", _non_empty)   # only what the pillow shows
    state_dir: str = _key("/var/lib/pillowd", _non_empty)
    # What its partners call it: its name in the family's roster, written by `pillowd
    # pair` (never changed by hand). "" (a config from before the roster): the name.
    roster_name: str = _key("", lambda v: None if v == "" else _roster_name(v))


@dataclass(frozen=True)
class QueueSettings:
    backend: str = _key("local", _one_of("local", "azure"))
    name: str = _key("pillow", _queue_name)
    poison_name: str = _key("", _queue_name)      # "" means "<name>-poison"
    outbound_name: str | tuple[str, ...] = _key("", _queue_names)  # a name or a list
    sas_file: str = _key("")  # per-queue SAS tokens; relative to the config file
    connection_string_env: str = _key("AZURE_STORAGE_CONNECTION_STRING")
    account_url: str = _key("")
    poll_min_seconds: float = _key(0.1, _range(0.01, 60))
    poll_max_seconds: float = _key(5.0, _range(0.01, 600))
    max_dequeue_count: int = _key(5, _range(1, 1000))
    message_max_age_seconds: float = _key(900, _range(1, 7 * 24 * 3600))
    visibility_timeout_seconds: int = _key(30, _range(1, 3600))
    batch_size: int = _key(32, _range(1, 32))


@dataclass(frozen=True)
class PartnerSettings:
    """One partner of the family roster, a [partners.NAME] table (`pillowd pair`
    writes them): where its hugs go, and the colour its hugs play in here."""

    queue: str = _key("", lambda v: _non_empty(v) or _queue_name(v))
    color: str = _key("", _hex_color)   # "": the sender's or the scene's colour


@dataclass(frozen=True)
class HardwareSettings:
    backend: str = _key("auto", _one_of("auto", "mock", "pi"))


@dataclass(frozen=True)
class LedSettings:
    count: int = _key(60, _range(1, 2000))
    brightness: float = _key(0.6, _range(0, 1))
    max_milliamps: int = _key(2000, _range(0, 100_000))
    fps: int = _key(50, _range(1, 120))
    driver: str = _key("auto", _one_of("auto", "mock", "ws281x", "pio"))
    gamma: float = _key(2.2, _range(1, 4))
    milliamps_per_led: float = _key(55.0, _range(1, 200))
    idle_milliamps_per_led: float = _key(1.0, _range(0, 20))
    # ws281x only; pin and strip_type are checked by the loader against pillowd.hardware.pins.
    # GPIO 10 (SPI): the one data line the unprivileged unit can drive (PWM needs root).
    pin: int = _key(10)
    strip_type: str = _key("GRB")
    dma: int = _key(10, _range(0, 14))
    freq: int = _key(800_000, _range(400_000, 800_000))
    invert: bool = _key(False)
    # pio (Raspberry Pi 5) only
    device: str = _key("/dev/leds0", _non_empty)


@dataclass(frozen=True)
class WebSettings:
    host: str = _key("0.0.0.0", _non_empty)
    port: int = _key(8080, _range(0, 65535))
    control_token_env: str = _key("PILLOWD_CONTROL_TOKEN")
    # Host names the page answers to besides its own (a reverse proxy, a DNS name).
    allowed_hosts: tuple[str, ...] = _key((), _host_names)
    private: bool = _key(False)  # true: reading needs the control token too


@dataclass(frozen=True)
class Limits:
    """How long and how often one actuator may run: the same four keys in each
    [actuators.*] table, whose defaults are the part's own."""

    max_on_seconds: float = field(metadata={"check": _range(0.05, 3600)})
    duty_cap: float = field(metadata={"check": _range(0.01, 1)})  # share of any window on
    window_seconds: float = field(metadata={"check": _range(1, 86400)})
    cooldown_seconds: float = field(metadata={"check": _range(0, 86400)})  # rest after a cut


@dataclass(frozen=True)
class VibrationSettings:
    """A vibration motor on a PWM pin (through a transistor/driver, never directly)."""

    pin: int = _key(-1, _gpio)
    max_level: float = _key(0.8, _range(0, 1))
    limits: Limits = _limits(Limits(5.0, 0.5, 60.0, 10.0))


@dataclass(frozen=True)
class ServoSettings:
    """A hobby servo; it may only move between min_angle and max_angle."""

    pin: int = _key(-1, _gpio)
    min_angle: float = _key(-45.0, _range(-90, 90))
    max_angle: float = _key(45.0, _range(-90, 90))
    min_pulse_ms: float = _key(1.0, _range(0.5, 2.5))
    max_pulse_ms: float = _key(2.0, _range(0.5, 2.5))
    limits: Limits = _limits(Limits(30.0, 0.5, 120.0, 10.0))


@dataclass(frozen=True)
class WarmerSettings:
    """A heating pad switched by a relay."""

    pin: int = _key(-1, _gpio)
    active_high: bool = _key(True)
    # A pad warms over minutes: its on-time is 1 s to 2 h, not a motor's 0.05 s to 1 h.
    limits: Limits = _limits(Limits(600.0, 0.5, 3600.0, 300.0),
                             max_on_seconds=_range(1, 7200))


@dataclass(frozen=True)
class ActuatorSettings:
    """The actuators fitted; None where a part is not (a pillow may have only LEDs)."""

    vibration: VibrationSettings | None = None
    servo: ServoSettings | None = None
    warmer: WarmerSettings | None = None


@dataclass(frozen=True)
class ButtonSettings:
    """The hug button: a press plays *scene* here and sends *send_scene* to the partners.

    Its defaults also serve POST /api/hug on a pillow with no button fitted.
    """

    pin: int = _key(-1, _gpio)
    pull_up: bool = _key(True)
    bounce_seconds: float = _key(0.05, _range(0, 2))
    scene: str = _key("hugged", _non_empty)
    send_scene: str = _key("hug", _non_empty)
    # A press within this of a partner's hug answers it (reply_to), and for this
    # long after sending the pillow polls fast for the hug back.
    reply_window_seconds: float = _key(600.0, _range(1, 86400))
    # A hug held h seconds plays max(its duration, min(h × hold_scale, max_duration))
    # on the pillow that receives it (any message that carries hold).
    hold_scale: float = _key(2.0, _range(0, 100))


@dataclass(frozen=True)
class QuietSettings:
    """Hours (local time) when the LEDs are dimmed and the actuators still."""

    start: str = _key("22:30", _clock_time)
    end: str = _key("07:00", _clock_time)
    max_brightness: float = _key(0.1, _range(0, 1))
    actuators: bool = _key(False)


# SPI0's pins (SCLK 11, MOSI 10, MISO 9, CE0 8, CE1 7): its MOSI, GPIO 10, drives the
# LEDs (rpi_ws281x's SPI method), so any traffic on SPI0 would reach the strip.
SPI0_PINS = {11: "SPI0 SCLK", 10: "SPI0 MOSI (the LEDs' data line)", 9: "SPI0 MISO",
             8: "SPI0 CE0", 7: "SPI0 CE1"}


def _squeeze_pin(value) -> str | None:
    why = _gpio(value)
    if why:
        return why
    if value in SPI0_PINS:
        return (f"GPIO {value} is {SPI0_PINS[value]}: never put the sensor on SPI0, whose "
                "MOSI (GPIO 10) drives the LEDs; use SPI1's pins (SCLK 21, MOSI 20, "
                "MISO 19, CE2 16) or other free pins")
    return None


@dataclass(frozen=True)
class SqueezeSettings:
    """A pressure sensor in the pillow (a force-sensitive resistor) read through an
    MCP3008 ADC with gpiozero, over SPI1's pins or other free ones (software SPI)."""

    chip: str = _key("MCP3008", _one_of("MCP3008"))
    channel: int = _key(0, _range(0, 7))
    threshold: float = _key(0.3, _range(0.01, 0.99))  # above it: being hugged
    clock_pin: int = _key(21, _squeeze_pin)
    mosi_pin: int = _key(20, _squeeze_pin)
    miso_pin: int = _key(19, _squeeze_pin)
    select_pin: int = _key(16, _squeeze_pin)

    @property
    def pins(self) -> dict[str, int]:
        return {"clock_pin": self.clock_pin, "mosi_pin": self.mosi_pin,
                "miso_pin": self.miso_pin, "select_pin": self.select_pin}


@dataclass(frozen=True)
class CueSettings:
    """The pillow shows its own trouble on its LEDs: one LED blinks."""

    enabled: bool = _key(True)
    offline_seconds: float = _key(120.0, _range(1, 86400))
    color: str = _key("#ff8800", lambda v: _non_empty(v) or _hex_color(v))
    every_seconds: float = _key(10.0, _range(1, 3600))


def _topic(value) -> str | None:
    # A topic (or its start) the pillow publishes under: no wildcards, no empty ends.
    if any(c in value for c in "+#\0"):
        return "must not contain +, # or NUL (MQTT wildcards)"
    if value.startswith("/") or value.endswith("/"):
        return "must not start or end with /"
    return None


def _absolute(value) -> str | None:
    return None if value == "" or value.startswith("/") else \
        f"must be an absolute path, not {value!r}"


@dataclass(frozen=True)
class MqttSettings:
    """Home Assistant over MQTT; the login comes from the environment, never this file."""

    host: str = _key("homeassistant.local", _non_empty)
    port: int = _key(1883, _range(1, 65535))
    username_env: str = _key("PILLOWD_MQTT_USERNAME")
    password_env: str = _key("PILLOWD_MQTT_PASSWORD")
    tls: bool = _key(False)
    ca_file: str = _key("", _absolute)
    discovery_prefix: str = _key("homeassistant", lambda v: _non_empty(v) or _topic(v))
    topic: str = _key("", _topic)      # "" means "pillowd/<pillow name>"
    # One device config (Home Assistant 2024.12 and later) or one per entity.
    discovery: str = _key("device", _one_of("device", "entities"))


@dataclass(frozen=True)
class SceneSettings:
    """A named way for the pillow to look, which messages ask for by name.

    The keys after *params* are the scene's own in a [scenes.NAME] table; every other
    key there is a parameter of its effect.
    """

    name: str
    effect: str
    params: dict           # the effect's parameters, validated, defaults filled
    duration: float = _key(0.0, _range(0, 86400))  # 0 = until the next message
    max_duration: float = _key(600.0, _range(1, 86400))
    brightness: float = _key(1.0, _range(0, 1))
    transition_seconds: float = _key(0.5, _range(0, 60))
    aliases: tuple[str, ...] = _key((), _aliases)
    vibration: str = _key("")      # a pattern name (checked by the loader); "" = still
    vibration_level: float = _key(0.5, _range(0, 1))  # capped by [actuators.vibration]
    servo_angle: float | None = _key(None, _range(-90, 90))  # None = the servo goes limp
    warmer: bool = _key(False)


DEFAULT_SCENES = {
    "idle": {"effect": "breathe", "color": "#202040"},
    "hug": {"effect": "breathe", "color": "#ff6ec7", "duration": 10},
}


@dataclass(frozen=True)
class Settings:
    pillow: PillowSettings = field(default_factory=PillowSettings)
    queue: QueueSettings = field(default_factory=QueueSettings)
    hardware: HardwareSettings = field(default_factory=HardwareSettings)
    leds: LedSettings = field(default_factory=LedSettings)
    web: WebSettings = field(default_factory=WebSettings)
    actuators: ActuatorSettings = field(default_factory=ActuatorSettings)
    button: ButtonSettings | None = None
    quiet: QuietSettings | None = None
    mqtt: MqttSettings | None = None
    squeeze: SqueezeSettings | None = None
    cue: CueSettings = field(default_factory=CueSettings)
    scenes: dict[str, SceneSettings] = field(default_factory=dict)
    # The family roster ([partners.NAME]): {partner's name: its settings}.
    partners: dict[str, PartnerSettings] = field(default_factory=dict)
    source: str = "<defaults>"

    @property
    def poison_name(self) -> str:
        return self.queue.poison_name or f"{self.queue.name}-poison"

    @property
    def outbound_names(self) -> tuple[str, ...]:
        """Every partner's queue: the roster's, then any [queue] outbound_name adds
        (a name or a list), each once."""
        names = self.queue.outbound_name
        given = [n for n in ((names,) if isinstance(names, str) else names) if n]
        return tuple(dict.fromkeys([p.queue for p in self.partners.values()] + given))

    @property
    def roster_name(self) -> str:
        """What the pillow's partners call it (its events' ``pillow``): [pillow]
        roster_name, which `pair` writes; in a config from before it, its name."""
        return self.pillow.roster_name or self.pillow.name

    @property
    def roster(self) -> dict[str, str]:
        """{partner's name: its queue}. From [partners.NAME], written by `pair`; a
        config from before the roster has only outbound_name, and each of those
        queues is its own partner, named after it (see legacy_partner_name)."""
        roster = {name: p.queue for name, p in self.partners.items()}
        known = set(roster.values())
        for queue in self.outbound_names:
            if queue not in known:
                name = legacy_partner_name(self.queue.name, queue)
                # Never over a roster partner's name (or another queue's): the queue's
                # own name then, so every queue keeps a partner of its own.
                roster[queue if name in roster else name] = queue
        return roster

    def scene_named(self, word: str) -> SceneSettings | None:
        """The scene called *word*, or listing it as an alias (any case)."""
        word = word.strip()
        if word in self.scenes:
            return self.scenes[word]
        folded = word.casefold()
        for scene in self.scenes.values():
            if scene.name.casefold() == folded or folded in (
                    a.casefold() for a in scene.aliases):
                return scene
        return None


def legacy_partner_name(own_queue: str, queue: str) -> str:
    """A partner's name for a config written before the roster (outbound_name only):
    its queue without the prefix it shares with this pillow's own queue, as `pair`
    made both (pillow-alice, pillow-bob: bob). The pillow's own [pillow] name plays
    no part, so renaming the pillow changes nothing; `pair` writes the roster now."""
    shared = 0
    for a, b in zip(own_queue, queue):
        if a != b:
            break
        shared += 1
    cut = queue.rfind("-", 0, shared) + 1  # up to the last hyphen both share
    return queue[cut:] or queue
