"""The pillow as the outside sees it: its state snapshot, history, health and controls."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

from . import __version__
from .consumer import Consumer, QueueStatus
from .history import OUTCOMES, History, Outcome
from .messages import Command, command_from
from .render import Renderer
from .scenes import Playing, Timeline

RECENT = 50


class Pillow:
    """Gathers what the loops know into one snapshot and tells listeners of changes."""

    def __init__(self, name: str, *, timeline: Timeline, renderer: Renderer,
                 consumer: Consumer, history: History, settings_for_commands,
                 queue_stall_seconds: float, render_stall_seconds: float = 2.0,
                 clock=time.monotonic):
        self.name = name
        self.timeline = timeline
        self.renderer = renderer
        self.consumer = consumer
        self.history = history
        self._settings = settings_for_commands
        self._queue_stall = queue_stall_seconds
        self._render_stall = render_stall_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._listeners: list[Callable[[dict], None]] = []
        self.counts = history.counts()
        self.recent: deque[Outcome] = deque(history.page(RECENT), maxlen=RECENT)
        self.actuators: dict[str, float] = {}
        self.quiet = False
        self.on_quiet: Callable[[bool], object] | None = None  # the daemon applies quiet
        self.mqtt = None  # Home Assistant over MQTT (pillowd.mqtt), when configured
        self.threads: dict[str, threading.Thread] = {}
        # Other checks of health: each returns why the pillow is unwell, or None.
        self.checks: list[Callable[[], str | None]] = []
        timeline.on_change(self._scene_changed)

    # -- listening ---------------------------------------------------------------

    def on_state(self, listener: Callable[[], None]) -> None:
        """Call *listener* whenever the snapshot changes; it reads what it needs."""
        self._listeners.append(listener)

    def changed(self) -> None:
        for listener in self._listeners:
            listener()

    def _scene_changed(self, playing: Playing) -> None:
        self.changed()

    def outcome(self, outcome: Outcome) -> None:
        with self._lock:
            self.counts[outcome.outcome] = self.counts.get(outcome.outcome, 0) + 1
            self.recent.appendleft(outcome)
        self.changed()

    def queue_status(self, status: QueueStatus) -> None:
        self.changed()

    # -- what the page and scripts read ------------------------------------------

    def snapshot(self) -> dict:
        playing = self.timeline.current()
        status = self.consumer.status
        with self._lock:
            counts = {k: self.counts.get(k, 0) for k in OUTCOMES}
            recent = [o.as_json() for o in self.recent]
            # /api/history's cursor for what comes after `recent`, for the page's paging.
            full = len(self.recent) == self.recent.maxlen
            older = str(self.recent[-1].seq) if full else None
        return {
            "pillow": self.name,
            "version": __version__,
            **playing.describe(),
            "leds": {"count": self.renderer.strip.count,
                     "brightness": self.renderer.brightness,
                     "milliamps": self.renderer.milliamps},
            "actuators": dict(self.actuators),
            "queue": {"backend": status.backend, "online": status.online,
                      "reason": status.reason, **counts},
            "recent": recent,
            "recent_before": older,
            "quiet": self.quiet,
            "scenes": list(getattr(self._settings, "scenes", {})),
            **({"mqtt": self.mqtt.status} if self.mqtt is not None else {}),
        }

    def history_page(self, limit: int, before: int | None) -> dict:
        rows = self.history.page(limit + 1, before)
        more = len(rows) > limit
        rows = rows[:limit]
        return {"items": [o.as_json() for o in rows],
                "next": str(rows[-1].seq) if more and rows else None}

    def _stalled(self, name: str, heartbeat: float, limit: float) -> str | None:
        thread = self.threads.get(name)
        if thread is not None and not thread.is_alive():
            return f"the {name} loop has stopped"
        late = self._clock() - heartbeat
        if late > limit:
            return f"the {name} loop has made no progress for {late:.1f} s"
        return None

    def _render_problem(self) -> str | None:
        return self._stalled("render", self.renderer.heartbeat, self._render_stall)

    def _queue_problem(self) -> str | None:
        return self._stalled("queue", self.consumer.heartbeat, self._queue_stall)

    def health(self) -> list[str]:
        """Why the pillow is unwell; empty while both loops make progress."""
        reasons = [p for p in (self._render_problem(), self._queue_problem()) if p]
        return reasons + [why for check in self.checks if (why := check())]

    def loop_checks(self) -> dict[str, Callable[[], bool]]:
        """Liveness of each loop, for systemd's watchdog."""
        return {"render loop": lambda: self._render_problem() is None,
                "queue loop": lambda: self._queue_problem() is None,
                "actuators": lambda: not any(check() for check in self.checks)}

    def status_line(self) -> str:
        """One line for `systemctl status`."""
        playing = self.timeline.current()
        status = self.consumer.status
        who = playing.message.get("from") if playing.message else None
        queue = "online" if status.online else f"offline ({status.reason})"
        return (f"{playing.scene.name}{f' from {who}' if who else ''}; "
                f"{status.backend} queue {queue}; {self.counts.get('applied', 0)} applied")

    # -- controls ------------------------------------------------------------------

    def play(self, data: dict, source: str = "web") -> Outcome:
        """Play a message-shaped *data* now; raises Rejection when it is not valid."""
        command: Command = command_from(data, self._settings)
        return self.consumer.play_now(command, source)

    def set_brightness(self, brightness: float) -> None:
        """Dim the LEDs (0..1, within [leds] brightness) until the daemon restarts."""
        self.renderer.set_brightness(brightness)
        self.changed()

    def off(self) -> None:
        """End what plays and darken the LEDs; a brightness above 0 lights them again."""
        self.renderer.set_brightness(0.0)
        self.timeline.idle()  # notifies: the snapshot shows both changes

    def set_quiet(self, quiet: bool) -> None:
        """Quiet now (True) or not, by hand, until quiet hours next begin or end."""
        if self.on_quiet is not None:
            self.on_quiet(bool(quiet))   # calls back changed() when it changes
        else:
            self.quiet = bool(quiet)
            self.changed()
