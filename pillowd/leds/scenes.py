"""The scene timeline: what plays now, until when, and idle whenever nothing else."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from ..feel import felt, felt_fields, held_for
from ..history import iso
from ..messages import Command
from ..settings import SceneSettings
from .effects import EFFECTS, Effect

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Playing:
    """One scene on the pillow, with everything a frame or the page needs from it."""

    scene: SceneSettings
    effect: Effect
    params: dict
    brightness: float
    started: float            # monotonic seconds; effects run on t = now - started
    ends: float | None        # monotonic; None while it has no end
    since: datetime
    until: datetime | None
    message: dict | None      # {"id", "from", "text", "reply"}; None for idle
    command: Command | None = None  # what asked for it (actuators read its limits)

    def describe(self) -> dict:
        color = self.params.get("color")  # (r, g, b) in 0..1; rainbow and others have none
        return {"scene": self.scene.name, "effect": self.effect.name,
                "color": "#" + "".join(f"{round(c * 255):02x}" for c in color)
                if isinstance(color, tuple) and len(color) == 3 else None,
                "since": iso(self.since),
                "until": iso(self.until) if self.until else None,
                "message": self.message}


class Timeline:
    """Holds the playing scene and falls back to idle when it ends."""

    def __init__(self, idle: SceneSettings, *, clock=time.monotonic,
                 wall: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 hold_scale: float = 2.0):
        self._idle = idle
        self._hold_scale = hold_scale  # [button] hold_scale: a held hug plays longer
        # What "lights off" plays: dark, with no end and no actuators.
        self._dark = SceneSettings(name="off", effect="solid",
                                   params=EFFECTS["solid"].resolve({"color": "#000000"}),
                                   transition_seconds=idle.transition_seconds)
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Playing], None]] = []
        self._playing = self._make(idle, None, self._clock(), self._wall())

    def on_change(self, listener: Callable[[Playing], None]) -> None:
        self._listeners.append(listener)

    def _make(self, scene, command: Command | None, now, wall, message=None) -> Playing:
        params = dict(scene.params)
        brightness = scene.brightness
        duration = scene.duration
        if command is not None:
            if command.color is not None:
                params["color"] = command.color
            brightness *= command.brightness * felt(command.strength)
            if command.duration is not None:
                duration = command.duration
            duration = held_for(duration, command.hold, self._hold_scale, scene.max_duration)
        ends = now + duration if duration else None
        return Playing(scene=scene, effect=EFFECTS[scene.effect], params=params,
                       brightness=brightness, started=now, ends=ends, since=wall,
                       until=wall + timedelta(seconds=duration) if duration else None,
                       message=message, command=command)

    def play(self, command: Command, message_id: str | None = None,
             reply: bool = False) -> Playing:
        """Start *command*'s scene now, replacing whatever plays; *reply*: it is a
        hug back (the Player knows, from the pillow's own recent events)."""
        message = None
        if command.scene is not self._idle or command.sender or command.text:
            message = {"id": message_id, "from": command.sender, "text": command.text,
                       "reply": reply, **felt_fields(command)}
        with self._lock:
            self._playing = self._make(command.scene, command, self._clock(),
                                       self._wall(), message)
            playing = self._playing
        self._notify(playing)
        return playing

    def off(self) -> Playing:
        """Lights off: what plays ends and the LEDs fade to dark (the actuators stop,
        as for a scene with none), until the next message plays as usual or on()."""
        with self._lock:
            self._playing = self._make(self._dark, None, self._clock(), self._wall())
            playing = self._playing
        self._notify(playing)
        return playing

    @property
    def lights_off(self) -> bool:
        """Whether the lights were switched off and nothing has played since."""
        return self.current().scene is self._dark

    def idle(self) -> Playing:
        """Go back to idle now."""
        with self._lock:
            self._playing = self._make(self._idle, None, self._clock(), self._wall())
            playing = self._playing
        self._notify(playing)
        return playing

    def current(self) -> Playing:
        """What plays now; a scene past its end gives way to idle here."""
        now = self._clock()
        with self._lock:
            playing = self._playing
            if playing.ends is None or now < playing.ends:
                return playing
            self._playing = self._make(self._idle, None, now, self._wall())
            playing = self._playing
        self._notify(playing)
        return playing

    def _notify(self, playing: Playing) -> None:
        # The scene plays whatever a listener does: one that fails is logged, and
        # the others (the renderer, the actuators) still hear of it.
        for listener in self._listeners:
            try:
                listener(playing)
            except Exception:
                log.exception("a scene listener failed")
