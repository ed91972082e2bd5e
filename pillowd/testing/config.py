"""A pillow's config.toml for tests and benches: mock hardware, the page on a free loopback port.

    from pillowd.testing.config import pillow_config
    path.write_text(pillow_config(tmp / "state", leds={"count": 60},
                                  scenes={"hug": {"effect": "solid", "color": "#ff0000"}}))

Each table given is merged over the defaults below (exactly({...}) takes it as it
is); None leaves a table out.
"""

from __future__ import annotations

import json
from pathlib import Path

DEFAULTS = {
    "queue": {"backend": "local"},
    "hardware": {"backend": "mock"},
    "leds": {"count": 60},
    "web": {"host": "127.0.0.1", "port": 0},
}
IDLE = {"effect": "solid", "color": "#000010"}


class exactly(dict):  # noqa: N801  (reads as a word in a call: leds=exactly({...}))
    """A table to take as it is, without the defaults merged into it."""


def toml(tables: dict[str, dict]) -> str:
    """TOML text for {table name: {key: value}}: strings, numbers, booleans and lists."""
    out = []
    for name, keys in tables.items():
        out.append(f"[{name}]")
        out += [f"{key} = {_value(value)}" for key, value in keys.items()]
        out.append("")
    return "\n".join(out)


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


def pillow_config(state_dir: str | Path, *, name: str = "bench-pillow",
                  scenes: dict[str, dict] | None = None, **tables: dict | None) -> str:
    """A config for a pillow named *name* keeping its state in *state_dir*: the
    DEFAULTS with *tables* merged over them ([queue], [leds], [web], [mqtt], …;
    [pillow]'s other keys too), and *scenes* ({"hug": {...}}) after an idle scene
    (IDLE unless given)."""
    merged: dict[str, dict] = {"pillow": {"name": name, "state_dir": str(state_dir),
                                          **(tables.pop("pillow", None) or {})}}
    for table in [*DEFAULTS, *(t for t in tables if t not in DEFAULTS)]:
        given = tables.get(table, {})
        if given is None:
            continue
        defaults = {} if isinstance(given, exactly) else DEFAULTS.get(table, {})
        merged[table] = {**defaults, **given}
    scenes = {"idle": IDLE, **(scenes or {})}
    merged.update({f"scenes.{scene}": keys for scene, keys in scenes.items()})
    return toml(merged)
