"""Reads config.toml into typed, validated settings, naming each bad key and its line."""

from __future__ import annotations

import math
import re
import tomllib
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

from .actuators import PATTERNS
from .effects import EFFECTS, EffectParamError
from .errors import PillowError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the config: which key, on which line, and why."""

    key: str
    line: int | None
    why: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.key}: {self.why}"


class ConfigError(PillowError, ValueError):
    """The config file cannot be used; ``problems`` lists every reason."""

    def __init__(self, path: str | Path, problems: list[Problem]):
        self.path = str(path)
        self.problems = problems
        super().__init__(
            f"{self.path}: " + "; ".join(str(p) for p in problems))


# Checks return the reason a value is bad, or None.
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


def _gpio(value) -> str | None:
    # BCM numbers of the 40-pin header; -1 is "not given", reported as missing.
    return None if 0 <= value <= 27 else f"must be a GPIO number 0..27, not {value}"


_HH_MM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


def _clock_time(value) -> str | None:
    return None if _HH_MM.match(value) else f"must be a time like \"22:30\", not {value!r}"


def _pattern(value) -> str | None:
    if value == "" or value in PATTERNS:
        return None
    return f"unknown pattern {value!r} (known: {', '.join(PATTERNS)})"


def _key(default, check: Check | None = None):
    return field(default=default, metadata={"check": check})


@dataclass(frozen=True)
class PillowSettings:
    name: str = _key("cloud-pillow", _non_empty)
    state_dir: str = _key("/var/lib/pillowd", _non_empty)


@dataclass(frozen=True)
class QueueSettings:
    backend: str = _key("local", _one_of("local", "azure"))
    name: str = _key("pillow", _queue_name)
    poison_name: str = _key("", _queue_name)      # "" means "<name>-poison"
    outbound_name: str = _key("", _queue_name)
    connection_string_env: str = _key("AZURE_STORAGE_CONNECTION_STRING")
    account_url: str = _key("")
    poll_min_seconds: float = _key(0.1, _range(0.01, 60))
    poll_max_seconds: float = _key(5.0, _range(0.01, 600))
    max_dequeue_count: int = _key(5, _range(1, 1000))
    message_max_age_seconds: float = _key(900, _range(1, 7 * 24 * 3600))
    visibility_timeout_seconds: int = _key(30, _range(1, 3600))
    batch_size: int = _key(32, _range(1, 32))


@dataclass(frozen=True)
class HardwareSettings:
    backend: str = _key("auto", _one_of("auto", "mock", "pi"))


def _ws281x_pin(value) -> str | None:
    from .hardware.ws281x import WS281X_PINS
    if value in WS281X_PINS:
        return None
    return (f"GPIO {value} cannot drive LEDs with rpi_ws281x: use one of "
            f"{', '.join(map(str, sorted(WS281X_PINS)))}")


def _strip_type(value) -> str | None:
    from .hardware.ws281x import STRIP_TYPES
    if value.upper() in STRIP_TYPES:
        return None
    return f"must be one of {', '.join(STRIP_TYPES)}, not {value!r}"


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
    # ws281x only
    pin: int = _key(18, _ws281x_pin)
    strip_type: str = _key("GRB", _strip_type)
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


@dataclass(frozen=True)
class VibrationSettings:
    """A vibration motor on a PWM pin (through a transistor/driver, never directly)."""

    pin: int = _key(-1, _gpio)
    max_level: float = _key(0.8, _range(0, 1))
    max_on_seconds: float = _key(5.0, _range(0.05, 3600))
    duty_cap: float = _key(0.5, _range(0.01, 1))
    window_seconds: float = _key(60.0, _range(1, 86400))
    cooldown_seconds: float = _key(10.0, _range(0, 86400))


@dataclass(frozen=True)
class ServoSettings:
    """A hobby servo; it may only move between min_angle and max_angle."""

    pin: int = _key(-1, _gpio)
    min_angle: float = _key(-45.0, _range(-90, 90))
    max_angle: float = _key(45.0, _range(-90, 90))
    min_pulse_ms: float = _key(1.0, _range(0.5, 2.5))
    max_pulse_ms: float = _key(2.0, _range(0.5, 2.5))
    max_on_seconds: float = _key(30.0, _range(0.05, 3600))
    duty_cap: float = _key(0.5, _range(0.01, 1))
    window_seconds: float = _key(120.0, _range(1, 86400))
    cooldown_seconds: float = _key(10.0, _range(0, 86400))


@dataclass(frozen=True)
class WarmerSettings:
    """A heating pad switched by a relay."""

    pin: int = _key(-1, _gpio)
    active_high: bool = _key(True)
    max_on_seconds: float = _key(600.0, _range(1, 7200))
    duty_cap: float = _key(0.5, _range(0.01, 1))
    window_seconds: float = _key(3600.0, _range(1, 86400))
    cooldown_seconds: float = _key(300.0, _range(0, 86400))


@dataclass(frozen=True)
class ActuatorSettings:
    """The actuators fitted; None where a part is not (a pillow may have only LEDs)."""

    vibration: VibrationSettings | None = None
    servo: ServoSettings | None = None
    warmer: WarmerSettings | None = None


_ACTUATORS = {"vibration": VibrationSettings, "servo": ServoSettings,
              "warmer": WarmerSettings}


@dataclass(frozen=True)
class ButtonSettings:
    """The hug button: a press plays *scene* and tells the sender the hug was felt."""

    pin: int = _key(-1, _gpio)
    pull_up: bool = _key(True)
    bounce_seconds: float = _key(0.05, _range(0, 2))
    scene: str = _key("hugged", _non_empty)


@dataclass(frozen=True)
class QuietSettings:
    """Hours (local time) when the LEDs are dimmed and the actuators still."""

    start: str = _key("22:30", _clock_time)
    end: str = _key("07:00", _clock_time)
    max_brightness: float = _key(0.1, _range(0, 1))
    actuators: bool = _key(False)


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


@dataclass(frozen=True)
class SceneSettings:
    """A named way for the pillow to look, which messages ask for by name."""

    name: str
    effect: str
    params: dict           # the effect's parameters, validated, defaults filled
    duration: float = 0.0  # 0 = until the next message
    max_duration: float = 600.0
    brightness: float = 1.0
    transition_seconds: float = 0.5
    aliases: tuple[str, ...] = ()
    vibration: str = ""              # a pattern name; "" = still
    vibration_level: float = 0.5     # 0..1, capped by [actuators.vibration] max_level
    servo_angle: float | None = None  # None = the servo goes limp
    warmer: bool = False


# Keys of a [scenes.NAME] table that belong to the scene, not to its effect.
_SCENE_KEYS: dict[str, tuple[type, Check | None]] = {
    "effect": (str, None),
    "duration": (float, _range(0, 86400)),
    "max_duration": (float, _range(1, 86400)),
    "brightness": (float, _range(0, 1)),
    "transition_seconds": (float, _range(0, 60)),
    "aliases": (list, None),
    "vibration": (str, _pattern),
    "vibration_level": (float, _range(0, 1)),
    "servo_angle": (float, _range(-90, 90)),
    "warmer": (bool, None),
}

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
    scenes: dict[str, SceneSettings] = field(default_factory=dict)
    source: str = "<defaults>"

    @property
    def poison_name(self) -> str:
        return self.queue.poison_name or f"{self.queue.name}-poison"

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


_SECTIONS = {
    "pillow": PillowSettings,
    "queue": QueueSettings,
    "hardware": HardwareSettings,
    "leds": LedSettings,
    "web": WebSettings,
    "button": ButtonSettings,
    "quiet": QuietSettings,
    "mqtt": MqttSettings,
}


class _Lines:
    """Finds the line a key was written on; tomllib does not keep positions."""

    _header = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
    _assign = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*=""")

    def __init__(self, text: str):
        self.keys: dict[tuple[str, str], int] = {}
        self.tables: dict[str, int] = {}
        table = ""
        for number, line in enumerate(text.splitlines(), start=1):
            if m := self._header.match(line):
                table = ".".join(
                    part.strip().strip("\"'") for part in m.group(1).split("."))
                self.tables.setdefault(table, number)
            elif m := self._assign.match(line):
                self.keys.setdefault((table, m.group(1).strip("\"'")), number)

    def of(self, table: str, key: str | None = None) -> int | None:
        if key is None:
            # [scenes] may only exist through its sub-tables, like [scenes.hug].
            return self.tables.get(table) or min(
                (n for t, n in self.tables.items() if t.startswith(table + ".")),
                default=None)
        return self.keys.get((table, key), self.tables.get(table))


def _type_problem(value, kind) -> str | None:
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        name = "a number"
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        name = "a whole number"
    elif kind is bool:
        ok = isinstance(value, bool)
        name = "true or false"
    elif kind is str:
        ok = isinstance(value, str)
        name = "a string"
    elif kind is list:
        ok = isinstance(value, list)
        name = "a list"
    else:  # pragma: no cover - a schema mistake, not a user's
        raise TypeError(kind)
    if ok:
        return None
    return f"must be {name}, not {type(value).__name__} {value!r}"


def _section(cls, table: str, raw: dict, lines: _Lines, problems: list[Problem]):
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in known:
            problems.append(Problem(f"{table}.{key}", lines.of(table, key),
                                    f"unknown key (known: {', '.join(known)})"))
            continue
        kind = hints[key]
        why = _type_problem(value, kind)
        if why is None:
            check = known[key].metadata.get("check")
            why = check(value) if check else None
        if why:
            problems.append(Problem(f"{table}.{key}", lines.of(table, key), why))
        else:
            values[key] = float(value) if kind is float else value
    return cls(**values)


def _scene(name: str, raw: dict, lines: _Lines, problems: list[Problem]):
    table = f"scenes.{name}"
    if not isinstance(raw, dict):
        problems.append(Problem(table, lines.of("scenes", name),
                                "must be a table like [scenes.%s]" % name))
        return None
    before = len(problems)
    effect_name = raw.get("effect", "solid")
    if not isinstance(effect_name, str) or effect_name not in EFFECTS:
        problems.append(Problem(
            f"{table}.effect", lines.of(table, "effect"),
            f"unknown effect {effect_name!r} (known: {', '.join(sorted(EFFECTS))})"))
        return None
    effect = EFFECTS[effect_name]
    values: dict[str, Any] = {}
    effect_raw: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "effect":
            continue
        if key in _SCENE_KEYS:
            kind, check = _SCENE_KEYS[key]
            why = _type_problem(value, kind)
            if why is None and check:
                why = check(value)
            if why is None and key == "aliases":
                if not all(isinstance(a, str) and a.strip() for a in value):
                    why = "must be a list of non-empty strings"
            if why:
                problems.append(Problem(f"{table}.{key}", lines.of(table, key), why))
            else:
                values[key] = (tuple(value) if key == "aliases" else
                               float(value) if kind is float else value)
        else:
            effect_raw[key] = value
    try:
        params = effect.resolve(effect_raw)
    except EffectParamError as err:
        known = sorted(set(_SCENE_KEYS) | set(effect.params))
        why = err.why
        if err.key not in effect.params:
            why = f"unknown key for effect {effect_name!r} (known: {', '.join(known)})"
        problems.append(Problem(f"{table}.{err.key}", lines.of(table, err.key), why))
        return None
    if len(problems) != before:
        return None
    return SceneSettings(name=name, effect=effect_name, params=params, **values)


def parse(text: str, source: str = "<text>") -> Settings:
    """Settings from TOML *text*; raises ConfigError listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        m = re.search(r"line (\d+)", str(err))
        raise ConfigError(source, [Problem(
            "(file)", int(m.group(1)) if m else None, f"not valid TOML: {err}")])
    lines = _Lines(text)
    problems: list[Problem] = []
    sections = {}
    for table, value in data.items():
        if table == "scenes":
            continue
        if table == "actuators" and isinstance(value, dict):
            sections[table] = _actuators(value, lines, problems)
            continue
        if table not in _SECTIONS:
            problems.append(Problem(
                table, lines.of(table) or lines.of("", table),
                f"unknown section (known: "
                f"{', '.join([*_SECTIONS, 'actuators', 'scenes'])})"))
        elif not isinstance(value, dict):
            problems.append(Problem(table, lines.of("", table), "must be a table"))
        else:
            sections[table] = _section(_SECTIONS[table], table, value, lines, problems)
            if table == "button":
                _require_pin(table, value, lines, problems)

    raw_scenes = data.get("scenes", DEFAULT_SCENES)
    scenes: dict[str, SceneSettings] = {}
    if not isinstance(raw_scenes, dict):
        problems.append(Problem("scenes", lines.of("", "scenes"), "must be a table"))
        raw_scenes = {}
    for name, raw in raw_scenes.items():
        scene = _scene(name, raw, lines, problems)
        if scene is not None:
            scenes[name] = scene
    if "idle" not in raw_scenes:
        problems.append(Problem("scenes.idle", lines.of("scenes"),
                                "missing: [scenes.idle] plays whenever nothing else "
                                "does and must exist"))
    seen: dict[str, str] = {}
    for scene in scenes.values():
        for word in (scene.name, *scene.aliases):
            other = seen.setdefault(word.casefold(), scene.name)
            if other != scene.name:
                problems.append(Problem(
                    f"scenes.{scene.name}.aliases",
                    lines.of(f"scenes.{scene.name}", "aliases"),
                    f"{word!r} already names scene {other!r}"))

    settings = Settings(**sections, scenes=scenes, source=source)
    q = settings.queue
    if q.poll_min_seconds > q.poll_max_seconds:
        problems.append(Problem("queue.poll_min_seconds",
                                lines.of("queue", "poll_min_seconds"),
                                f"must not exceed queue.poll_max_seconds "
                                f"({q.poll_max_seconds})"))
    if settings.poison_name == q.name:
        problems.append(Problem("queue.poison_name", lines.of("queue", "poison_name"),
                                "must differ from queue.name"))
    if q.outbound_name and q.outbound_name in (q.name, settings.poison_name):
        problems.append(Problem("queue.outbound_name",
                                lines.of("queue", "outbound_name"),
                                "must differ from queue.name and the poison queue"))
    _check_parts(settings, lines, problems)
    if problems:
        raise ConfigError(source, problems)
    return settings


def _require_pin(table: str, raw: dict, lines: _Lines, problems: list[Problem]) -> None:
    if "pin" not in raw:
        problems.append(Problem(f"{table}.pin", lines.of(table),
                                "missing: the GPIO (BCM) number the part is wired to"))


def _actuators(raw: dict, lines: _Lines, problems: list[Problem]) -> ActuatorSettings:
    parts = {}
    for name, value in raw.items():
        table = f"actuators.{name}"
        if name not in _ACTUATORS:
            problems.append(Problem(table, lines.of(table) or lines.of("actuators", name),
                                    f"unknown actuator (known: {', '.join(_ACTUATORS)})"))
        elif not isinstance(value, dict):
            problems.append(Problem(table, lines.of("actuators", name),
                                    f"must be a table like [{table}]"))
        else:
            parts[name] = _section(_ACTUATORS[name], table, value, lines, problems)
            _require_pin(table, value, lines, problems)
    return ActuatorSettings(**parts)


def _check_parts(settings: Settings, lines: _Lines, problems: list[Problem]) -> None:
    """Checks across the actuators, button and quiet hours."""
    used: dict[int, str] = {}
    if settings.leds.driver in ("auto", "ws281x"):  # rpi_ws281x's data line
        used[settings.leds.pin] = "leds"
    wired = [(f"actuators.{name}", getattr(settings.actuators, name))
             for name in _ACTUATORS] + [("button", settings.button)]
    for table, part in wired:
        if part is None or part.pin < 0:
            continue
        other = used.setdefault(part.pin, table)
        if other != table:
            problems.append(Problem(f"{table}.pin", lines.of(table, "pin"),
                                    f"GPIO{part.pin} is already used by {other}"))
    servo = settings.actuators.servo
    if servo is not None and servo.min_angle > servo.max_angle:
        problems.append(Problem("actuators.servo.min_angle",
                                lines.of("actuators.servo", "min_angle"),
                                f"must not exceed max_angle ({servo.max_angle})"))
    if servo is not None and servo.min_pulse_ms >= servo.max_pulse_ms:
        problems.append(Problem("actuators.servo.min_pulse_ms",
                                lines.of("actuators.servo", "min_pulse_ms"),
                                f"must be less than max_pulse_ms ({servo.max_pulse_ms})"))
    button = settings.button
    if button is not None and button.scene not in settings.scenes:
        problems.append(Problem("button.scene", lines.of("button", "scene"),
                                f"no scene {button.scene!r} (add [scenes.{button.scene}])"))
    quiet = settings.quiet
    if quiet is not None and quiet.start == quiet.end:
        problems.append(Problem("quiet.end", lines.of("quiet", "end"),
                                "must differ from quiet.start (remove [quiet] to have "
                                "no quiet hours)"))


def load(path: str | Path) -> Settings:
    """Settings from the file at *path*; ConfigError when missing or bad."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, [Problem("(file)", None, "no such file")]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(path, [Problem("(file)", None, f"cannot read: {err}")]) from None
    return parse(text, str(path))


def with_state_dir(settings: Settings, state_dir: str) -> Settings:
    """A copy of *settings* keeping its state somewhere else (for --state-dir)."""
    return replace(settings, pillow=replace(settings.pillow, state_dir=state_dir))
