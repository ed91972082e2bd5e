"""Loads config.toml into Settings; resolves scene effects here, where each bad key's line is known."""

from __future__ import annotations

import re
import tomllib
import types
import typing
from dataclasses import dataclass, fields, is_dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

from .body.patterns import PATTERNS
from .errors import PillowError
from .hardware.pins import STRIP_TYPES, WS281X_PINS
from .leds.effects import EFFECTS, EffectParamError
from .settings import (DEFAULT_SCENES, ActuatorSettings, ButtonSettings, Check,
                       HardwareSettings, LedSettings, MqttSettings, PartnerSettings,
                       PillowSettings, QueueSettings, CueSettings, SqueezeSettings,
                       QuietSettings, SceneSettings, ServoSettings, Settings,
                       VibrationSettings, WarmerSettings, WebSettings, _roster_name)

__all__ = ["ConfigError", "Problem", "drop_ins", "load", "parse", "read",
           "with_state_dir"]

# Beside the config file: every *.toml here is read after it, in name order, each
# overriding the keys it sets (`pillowd join` writes the pillow's keys here).
DROP_IN_DIR = "config.d"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the config: which key, on which line, and why."""

    key: str
    line: int | None
    why: str
    file: str | None = None  # a drop-in in config.d/; None: the config file itself

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        if self.file:
            where = f"{self.file}{' ' if where else ': '}{where}"
        return f"{where}{self.key}: {self.why}"


class ConfigError(PillowError, ValueError):
    """The config file cannot be used; ``problems`` lists every reason."""

    def __init__(self, path: str | Path, problems: list[Problem]):
        self.path = str(path)
        self.problems = problems
        super().__init__(
            f"{self.path}: " + "; ".join(str(p) for p in problems))


def _ws281x_pin(value) -> str | None:
    if value in WS281X_PINS:
        return None
    return (f"GPIO {value} cannot drive LEDs with rpi_ws281x: use one of "
            f"{', '.join(map(str, sorted(WS281X_PINS)))}")


def _strip_type(value) -> str | None:
    if value.upper() in STRIP_TYPES:
        return None
    return f"must be one of {', '.join(STRIP_TYPES)}, not {value!r}"


def _pattern(value) -> str | None:
    if value == "" or value in PATTERNS:
        return None
    return f"unknown pattern {value!r} (known: {', '.join(PATTERNS)})"


# Checks against name tables, which the schema (stdlib only) does not import.
_NAME_CHECKS: dict[tuple[type, str], Check] = {
    (LedSettings, "pin"): _ws281x_pin,
    (LedSettings, "strip_type"): _strip_type,
    (SceneSettings, "vibration"): _pattern,
}

_SECTIONS = {
    "pillow": PillowSettings,
    "queue": QueueSettings,
    "hardware": HardwareSettings,
    "leds": LedSettings,
    "web": WebSettings,
    "button": ButtonSettings,
    "quiet": QuietSettings,
    "mqtt": MqttSettings,
    "squeeze": SqueezeSettings,
    "cue": CueSettings,
}

_ACTUATORS = {"vibration": VibrationSettings, "servo": ServoSettings,
              "warmer": WarmerSettings}

# Keys of a [scenes.NAME] table that belong to the scene, besides "effect"; every
# other key is a parameter of its effect.
_SCENE_KEYS = {f.name: f for f in fields(SceneSettings)
               if f.name not in ("name", "effect", "params")}


class _Line(int):
    """A line number that knows its file, when that is a drop-in."""

    file: str | None = None

    def __new__(cls, number: int, file: str | None):
        line = super().__new__(cls, number)
        line.file = file
        return line


class _Lines:
    """Finds the line a key was written on; tomllib does not keep positions. With
    drop-ins, the last file that sets a key is where it was written."""

    _header = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
    _assign = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*=""")

    def __init__(self, text: str, file: str | None = None):
        self.keys: dict[tuple[str, str], int] = {}
        self.tables: dict[str, int] = {}
        self.add(text, file)

    def add(self, text: str, file: str | None) -> None:
        table = ""
        keys: dict[tuple[str, str], int] = {}
        tables: dict[str, int] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            if m := self._header.match(line):
                table = ".".join(
                    part.strip().strip("\"'") for part in m.group(1).split("."))
                tables.setdefault(table, _Line(number, file))
            elif m := self._assign.match(line):
                keys.setdefault((table, m.group(1).strip("\"'")), _Line(number, file))
        self.keys.update(keys)
        self.tables.update(tables)

    def of(self, table: str, key: str | None = None) -> int | None:
        if key is None:
            # [scenes] may only exist through its sub-tables, like [scenes.hug].
            return self.tables.get(table) or min(
                (n for t, n in self.tables.items() if t.startswith(table + ".")),
                default=None)
        return self.keys.get((table, key), self.tables.get(table))


# Each TOML type a key may need: the Python types it reads as, and its name for a
# person. A bool is an int to Python, never a number to a user.
_KINDS: dict[type, tuple[tuple[type, ...], str]] = {
    float: ((int, float), "a number"),
    int: ((int,), "a whole number"),
    bool: ((bool,), "true or false"),
    str: ((str,), "a string"),
    list: ((list,), "a list"),
}


def _type_problem(value, kind) -> str | None:
    if isinstance(kind, tuple):  # one of several, e.g. a name or a list of names
        if any(_type_problem(value, k) is None for k in kind):
            return None
        return (f"must be {' or '.join(_KINDS[k][1] for k in kind)}, "
                f"not {type(value).__name__} {value!r}")
    types, name = _KINDS[kind]
    if isinstance(value, types) and (kind is bool or not isinstance(value, bool)):
        return None
    return f"must be {name}, not {type(value).__name__} {value!r}"


@cache
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _toml_kind(hint) -> type:
    """The TOML type a field is written as: a tuple as a list, an optional as its type."""
    if typing.get_origin(hint) is tuple:
        return list
    if typing.get_origin(hint) is types.UnionType:  # a kind or another: both are read
        kinds = tuple(_toml_kind(a) for a in typing.get_args(hint) if a is not type(None))
        if len(kinds) > 1:
            return kinds
    return next((a for a in typing.get_args(hint) if a is not type(None)), hint)


def _checked(cls, key: str, check: Check | None, value) -> tuple[Any, str | None]:
    """*value* as field *key* of *cls* holds it, and why it is bad (None when it is not)."""
    kind = _toml_kind(_hints(cls)[key])
    why = _type_problem(value, kind)
    for rule in (check, _NAME_CHECKS.get((cls, key))):
        if why is None and rule is not None:
            why = rule(value)
    if why:
        return value, why
    if isinstance(value, list) and isinstance(kind, tuple):
        return tuple(value), None
    return float(value) if kind is float else tuple(value) if kind is list else value, None


@cache
def _table_keys(cls) -> dict[str, tuple[type, Check | None, str | None]]:
    """Each key of *cls*'s TOML table: (its class, its check, the field it fills).

    A field that is itself settings (a part's Limits) is written as flat keys in the
    same table, with the checks its field gives, else its own.
    """
    keys = {}
    for f in fields(cls):
        inner = _hints(cls)[f.name]
        if is_dataclass(inner):
            for g in fields(inner):
                keys[g.name] = (inner, f.metadata["check"].get(g.name, g.metadata["check"]),
                                f.name)
        else:
            keys[f.name] = (cls, f.metadata.get("check"), None)
    return keys


def _section(cls, table: str, raw: dict, lines: _Lines, problems: list[Problem]):
    keys = _table_keys(cls)
    values: dict[str, Any] = {}
    inner: dict[str, dict[str, Any]] = {}
    for key, value in raw.items():
        if key not in keys:
            problems.append(Problem(f"{table}.{key}", lines.of(table, key),
                                    f"unknown key (known: {', '.join(keys)})"))
            continue
        owner, check, into = keys[key]
        value, why = _checked(owner, key, check, value)
        if why:
            problems.append(Problem(f"{table}.{key}", lines.of(table, key), why))
        else:
            (inner.setdefault(into, {}) if into else values)[key] = value
    defaults = {f.name: f.default for f in fields(cls)}
    values.update({into: replace(defaults[into], **given) for into, given in inner.items()})
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
        if key in _SCENE_KEYS:
            value, why = _checked(SceneSettings, key, _SCENE_KEYS[key].metadata["check"],
                                  value)
            if why:
                problems.append(Problem(f"{table}.{key}", lines.of(table, key), why))
            else:
                values[key] = value
        elif key != "effect":
            effect_raw[key] = value
    try:
        params = effect.resolve(effect_raw)
    except EffectParamError as err:
        known = sorted({"effect", *_SCENE_KEYS, *effect.params})
        why = err.why
        if err.key not in effect.params:
            why = f"unknown key for effect {effect_name!r} (known: {', '.join(known)})"
        problems.append(Problem(f"{table}.{err.key}", lines.of(table, err.key), why))
        return None
    if len(problems) != before:
        return None
    return SceneSettings(name=name, effect=effect_name, params=params, **values)


def _toml(text: str, source: str, file: str | None) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        m = re.search(r"line (\d+)", str(err))
        raise ConfigError(source, [Problem(
            "(file)", int(m.group(1)) if m else None, f"not valid TOML: {err}",
            file)]) from None


def _merge(into: dict, data: dict) -> None:
    """*data*'s keys over *into*'s, table by table: a drop-in's [queue] name replaces
    that one key, not the whole [queue]."""
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def parse(text: str, source: str = "<text>",
          drop_ins: list[tuple[str, str]] = ()) -> Settings:
    """Settings from TOML *text*, then each (file, text) of *drop_ins* over it;
    raises ConfigError listing every problem, each with its file and line."""
    data = _toml(text, source, None)
    lines = _Lines(text)
    for file, extra in drop_ins:
        _merge(data, _toml(extra, source, file))
        lines.add(extra, file)
    problems: list[Problem] = []
    sections = {}
    for table, value in data.items():
        if table == "scenes":
            continue
        if table == "actuators" and isinstance(value, dict):
            sections[table] = _actuators(value, lines, problems)
            continue
        if table == "partners":
            sections[table] = _partners(value, lines, problems)
            continue
        if table not in _SECTIONS:
            problems.append(Problem(
                table, lines.of(table) or lines.of("", table),
                f"unknown section (known: "
                f"{', '.join([*_SECTIONS, 'actuators', 'partners', 'scenes'])})"))
        elif not isinstance(value, dict):
            problems.append(Problem(table, lines.of("", table), "must be a table"))
        else:
            sections[table] = _section(_SECTIONS[table], table, value, lines, problems)
            if table == "button":
                _require_pin(table, value, lines, problems)

    scenes = _scenes(data.get("scenes", DEFAULT_SCENES), lines, problems)
    settings = Settings(**sections, scenes=scenes, source=source)
    _check_queue(settings, lines, problems)
    _check_parts(settings, lines, problems)
    if problems:
        raise ConfigError(source, [
            replace(p, file=getattr(p.line, "file", None)) if p.file is None else p
            for p in problems])
    return settings


def _scenes(raw_scenes, lines: _Lines, problems: list[Problem]) -> dict[str, SceneSettings]:
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
    return scenes


def _check_queue(settings: Settings, lines: _Lines, problems: list[Problem]) -> None:
    """Checks across the queue names and poll intervals."""
    q = settings.queue
    if q.poll_min_seconds > q.poll_max_seconds:
        problems.append(Problem("queue.poll_min_seconds",
                                lines.of("queue", "poll_min_seconds"),
                                f"must not exceed queue.poll_max_seconds "
                                f"({q.poll_max_seconds})"))
    if settings.poison_name == q.name:
        problems.append(Problem("queue.poison_name", lines.of("queue", "poison_name"),
                                "must differ from queue.name"))
    own = {q.name, settings.poison_name}
    given = settings.queue.outbound_name
    if set((given,) if isinstance(given, str) else given) & own:
        problems.append(Problem("queue.outbound_name",
                                lines.of("queue", "outbound_name"),
                                "must differ from queue.name and the poison queue"))
    seen: dict[str, str] = {}
    for name, partner in settings.partners.items():
        table = f"partners.{name}"
        if partner.queue in own:
            problems.append(Problem(f"{table}.queue", lines.of(table, "queue"),
                                    "must differ from queue.name and the poison queue "
                                    "(a partner's queue, not this pillow's own)"))
        other = seen.setdefault(partner.queue, name)
        if other != name:
            problems.append(Problem(f"{table}.queue", lines.of(table, "queue"),
                                    f"{partner.queue!r} is already partner {other}'s queue"))
        if name == settings.roster_name:
            problems.append(Problem(table, lines.of(table),
                                    f"names this pillow itself ([pillow] roster_name "
                                    f"{settings.roster_name!r}), not a partner"))


def _partners(raw, lines: _Lines, problems: list[Problem]) -> dict[str, PartnerSettings]:
    """The family roster: one [partners.NAME] table per partner (`pillowd pair`)."""
    if not isinstance(raw, dict):
        problems.append(Problem("partners", lines.of("", "partners"),
                                "must be tables like [partners.bob] with queue = \"…\""))
        return {}
    partners = {}
    for name, value in raw.items():
        table = f"partners.{name}"
        why = _roster_name(name)
        if why:
            problems.append(Problem(table, lines.of(table) or lines.of("partners", name),
                                    f"the partner's name {why}"))
        elif not isinstance(value, dict):
            problems.append(Problem(table, lines.of("partners", name),
                                    f'must be a table like [{table}] with queue = "…"'))
        elif "queue" not in value:
            problems.append(Problem(f"{table}.queue", lines.of(table),
                                    "missing: the partner's queue, where hugs for "
                                    f"{name} go"))
        else:
            before = len(problems)
            partner = _section(PartnerSettings, table, value, lines, problems)
            if len(problems) == before:
                partners[name] = partner
    return partners


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
    if settings.squeeze is not None:  # four pins of its own, none shared
        for key, pin in settings.squeeze.pins.items():
            other = used.setdefault(pin, f"squeeze.{key}")
            if other != f"squeeze.{key}":
                problems.append(Problem(f"squeeze.{key}", lines.of("squeeze", key),
                                        f"GPIO{pin} is already used by {other}"))
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


def read(path: Path, source: Path, file: str | None) -> str:
    """The text of *path* (the config *source* or its drop-in *file*); ConfigError,
    naming it, when it is missing or cannot be read as UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, [Problem("(file)", None, "no such file", file)]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(source, [Problem("(file)", None, f"cannot read: {err}",
                                           file)]) from None


def drop_ins(path: str | Path) -> list[Path]:
    """The drop-ins of the config file at *path*: config.d/*.toml beside it, in name
    order."""
    folder = Path(path).parent / DROP_IN_DIR
    return sorted((p for p in folder.glob("*.toml") if p.is_file()),
                  key=lambda p: p.name)


def load(path: str | Path) -> Settings:
    """Settings from the file at *path* and its drop-ins; ConfigError when missing or
    bad."""
    path = Path(path)
    text = read(path, path, None)
    extra = [(str(p), read(p, path, str(p))) for p in drop_ins(path)]
    return parse(text, str(path), extra)


def with_state_dir(settings: Settings, state_dir: str) -> Settings:
    """A copy of *settings* keeping its state somewhere else (for --state-dir)."""
    return replace(settings, pillow=replace(settings.pillow, state_dir=state_dir))
