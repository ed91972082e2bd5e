"""The pillow as the outside sees it: its state snapshot, health, and the controls."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable

from . import __version__
from .history import OUTCOMES, History, Outcome
from .leds.render import Renderer
from .leds.scenes import Timeline
from .messages import Command, command_from
from .player import Player
from .quiet import QuietHours

log = logging.getLogger(__name__)

RECENT = 50


class Pillow:
    """Gathers what the loops report into one snapshot and tells listeners of changes.

    Everything below reports up into it through the callbacks it offers (outcome,
    queue_status, actuators_changed, quiet_changed, …); it reads the timeline and
    the renderer, and never calls down into them.
    """

    def __init__(self, name: str, *, timeline: Timeline, renderer: Renderer,
                 history: History, scenes: list[str], backend: str,
                 hardware_trouble: list[str]):
        self.name = name
        self.timeline = timeline
        self.renderer = renderer
        self.history = history
        self.scenes = list(scenes)
        # Re-entrant: a scene started under it (outcome) tells listeners at once.
        self._lock = threading.RLock()
        self._starting = threading.local()  # this thread is within outcome(start)
        self._listeners: list[Callable[[], None]] = []
        self.counts = history.counts()
        self.receipts = history.receipts()  # applied, but no message: the page says so
        self.recent: deque[Outcome] = deque(history.page(RECENT), maxlen=RECENT)
        self.queue = {"backend": backend, "online": False, "reason": None}
        self.actuators: dict[str, float] = {}
        self.quiet = False
        # The list itself, not a copy: the parts opened after the snapshot (the
        # button, the squeeze sensor, the actuators) add why they could not start.
        self.hardware_trouble = hardware_trouble
        self.leds = renderer.strip_status()  # the strip at run time: failing or not
        renderer.on_strip(self._leds_changed)
        self.extra: dict[str, object] = {}  # more sections of the snapshot, e.g. "mqtt"
        # The newest partner's hug that played: from the history, so a restart keeps it.
        found = history.last_hug()
        self.last_hug = _hug(found) if found is not None else None
        timeline.on_change(lambda playing: self.changed())

    # -- listening ---------------------------------------------------------------

    def on_state(self, listener: Callable[[], None]) -> None:
        """Call *listener* whenever the snapshot changes; it reads what it needs."""
        self._listeners.append(listener)

    def changed(self) -> None:
        # Called from the loops (queue, render, actuators): a listener's failure is
        # logged and never reaches them, so a message is never left half played.
        if getattr(self._starting, "on", False):
            return  # outcome() tells them once, when the row and the scene are in
        for listener in self._listeners:
            try:
                listener()
            except Exception:
                log.exception("a state listener failed")

    # -- what the parts report -------------------------------------------------

    def outcome(self, outcome: Outcome, start: Callable[[], object] | None = None) -> None:
        """A message's *outcome*; *start*, when given, starts its scene under the
        same lock as the row is added, so a snapshot has both or neither."""
        with self._lock:
            if start is not None:
                self._starting.on = True
                try:
                    start()
                finally:
                    self._starting.on = False
            self.counts[outcome.outcome] = self.counts.get(outcome.outcome, 0) + 1
            if outcome.event == "receipt" and outcome.outcome == "applied":
                self.receipts += 1
            self.recent.appendleft(outcome)
            if outcome.event == "hug" and outcome.outcome == "applied":
                self.last_hug = _hug(outcome)
        self.changed()

    def queue_status(self, status) -> None:
        self.queue = {"backend": status.backend, "online": status.online,
                      "reason": status.reason}
        self.changed()

    def _leds_changed(self, status: dict) -> None:
        self.leds = dict(status)
        self.changed()

    def _trouble(self) -> list[str]:
        """What of the hardware does not work: at the start, and the strip now."""
        leds = self.leds
        return self.hardware_trouble + ([] if leds["ok"] else [f"LEDs: {leds['error']}"])

    def actuators_changed(self, values: dict) -> None:
        self.actuators = dict(values)
        self.changed()

    def quiet_changed(self, quiet: bool) -> None:
        self.quiet = quiet
        self.changed()

    def section_changed(self, name: str, value) -> None:
        """Another part's own section of the snapshot (``"mqtt"``, ``"outbox"``,
        ``"last_sent"``, ``"while_quiet"``) is now *value* (JSON data, its own copy)."""
        if isinstance(value, (dict, list)):
            value = value.copy()
        with self._lock:
            self.extra[name] = value
        self.changed()

    # -- what the page and scripts read ------------------------------------------

    def snapshot(self) -> dict:
        with self._lock:
            # Read with `recent`: a message's row and its scene come together.
            playing = self.timeline.current()
            counts = {k: self.counts.get(k, 0) for k in OUTCOMES}
            receipts = self.receipts
            recent = [o.as_json() for o in self.recent]
            # /api/history's cursor for what comes after `recent`, for the page's paging.
            full = len(self.recent) == self.recent.maxlen
            older = str(self.recent[-1].seq) if full else None
            last_hug = dict(self.last_hug) if self.last_hug else None
            extra = dict(self.extra)
        return {
            "pillow": self.name,
            "version": __version__,
            **playing.describe(),
            "leds": {"count": self.renderer.strip.count,
                     "brightness": self.renderer.brightness,
                     "milliamps": self.renderer.milliamps,
                     # The dimmer as set (before quiet hours), and its ceiling.
                     "level": self.renderer.level,
                     "ceiling": self.renderer.output.brightness,
                     # What the page needs to draw a `frame` as the eye sees it and
                     # to tell its current live: the output stage's own figures.
                     **self._output_model()},
            # "off" after POST /api/off until the next message plays or POST /api/on.
            "lights": "off" if self.timeline.lights_off else "on",
            "actuators": dict(self.actuators),
            # receipts: of the applied, partners' receipts (no message played).
            "queue": {**self.queue, **counts, "receipts": receipts},
            "recent": recent,
            "recent_before": older,
            "quiet": self.quiet,
            "last_hug": last_hug,
            "scenes": self.scenes,
            "hardware": {"ok": not (trouble := self._trouble()),
                         "error": "; ".join(trouble) or None,
                         "leds": dict(self.leds)},
            **extra,
        }

    def _output_model(self) -> dict:
        output = self.renderer.output
        return {"gamma": output.gamma,
                "milliamps_per_led": round(output.milliamps_per_channel * 3, 3),
                "idle_milliamps_per_led": output.idle_milliamps_per_led}

    def history_page(self, limit: int, before: int | None) -> dict:
        rows = self.history.page(limit + 1, before)
        more = len(rows) > limit
        rows = rows[:limit]
        return {"items": [o.as_json() for o in rows],
                "next": str(rows[-1].seq) if more and rows else None}

    def status_line(self) -> str:
        """One line for `systemctl status`."""
        playing = self.timeline.current()
        who = playing.message.get("from") if playing.message else None
        q = self.queue
        # Before its first answer the queue is not down, only not asked yet.
        queue = "online" if q["online"] else (
            f"offline ({q['reason']})" if q["reason"] else "connecting")
        trouble = "".join(f"; {why}" for why in self._trouble())
        return (f"{playing.scene.name}{f' from {who}' if who else ''}; "
                f"{q['backend']} queue {queue}; {self.counts.get('applied', 0)} applied"
                f"{trouble}")


def _hug(outcome: Outcome) -> dict:
    return {"from": outcome.sender, "at": outcome.at, "reply": outcome.reply,
            **(outcome.felt or {})}


class Loop:
    """One of the daemon's loops as health sees it: its thread, and its progress."""

    def __init__(self, name: str, thread: threading.Thread, *,
                 heartbeat: Callable[[], float], stall_seconds: float,
                 resting: Callable[[], bool] = lambda: False, clock=time.monotonic):
        self.name = name
        self.thread = thread
        self._heartbeat = heartbeat
        self._stall = stall_seconds
        self._resting = resting
        self._clock = clock

    def problem(self) -> str | None:
        if not self.thread.is_alive():
            return f"the {self.name} loop has stopped"
        if self._resting():  # asleep on purpose until something changes
            return None
        late = self._clock() - self._heartbeat()
        if late > self._stall:
            return f"the {self.name} loop has made no progress for {late:.1f} s"
        return None


class Health:
    """Why the pillow is unwell, for /healthz and systemd's watchdog; empty when well.

    *notes* are troubles that are not the pillow's own and that no restart would
    mend (a partner's revoked token, its deleted queue): /healthz tells them, and
    stays 200.
    """

    def __init__(self, loops: list[Loop], checks: dict[str, Callable[[], str | None]],
                 notes: dict[str, Callable[[], list[str]]] | None = None):
        self.loops = list(loops)
        self.checks = dict(checks)
        self.notes_from = dict(notes or {})

    def notes(self) -> list[str]:
        return [note for source in self.notes_from.values() for note in source()]

    def reasons(self) -> list[str]:
        found = [loop.problem() for loop in self.loops]
        found += [check() for check in self.checks.values()]
        return [why for why in found if why]

    def watchdog_checks(self) -> dict[str, Callable[[], bool]]:
        """Liveness of each part, for systemd's watchdog (hardware trouble is not
        a hang: restarting would not fix it)."""
        checks = {f"{loop.name} loop": (lambda loop=loop: loop.problem() is None)
                  for loop in self.loops}
        if "actuators" in self.checks:
            checks["actuators"] = lambda: self.checks["actuators"]() is None
        return checks


class Controls:
    """What a person may do to the pillow from the page, a script or Home Assistant."""

    def __init__(self, *, settings, player: Player, renderer: Renderer,
                 timeline: Timeline, quiet: QuietHours, on_change: Callable[[], None]):
        self._settings = settings  # the scenes and limits a command is checked against
        self._player = player
        self._renderer = renderer
        self._timeline = timeline
        self._quiet = quiet
        self._on_change = on_change

    def play(self, data: dict, source: str = "web") -> Outcome:
        """Play a message-shaped *data* now; raises Rejection when it is not valid."""
        command: Command = command_from(data, self._settings)
        return self._player.play_now(command, source)

    @property
    def brightness(self) -> float:
        return self._renderer.brightness

    def set_brightness(self, brightness: float) -> None:
        """Dim the LEDs (0..1, within [leds] brightness) until the daemon restarts."""
        self._renderer.set_brightness(brightness)
        self._on_change()

    def off(self) -> None:
        """End what plays now: the LEDs go dark and the actuators stop. The brightness
        stays as set: the next message plays as usual, or on() lights the pillow."""
        self._timeline.off()  # tells the snapshot's listeners

    def on(self) -> None:
        """Light the pillow again after off(): back to idle (a scene that plays stays)."""
        if self._timeline.lights_off:
            self._timeline.idle()

    @property
    def lights_off(self) -> bool:
        return self._timeline.lights_off

    @property
    def quiet(self) -> bool:
        return bool(self._quiet.quiet)

    def set_quiet(self, quiet: bool) -> None:
        """Quiet now (True) or not, by hand, until quiet hours next begin or end."""
        self._quiet.override(bool(quiet))
