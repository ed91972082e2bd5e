"""Quiet hours: a daily window, in the Pi's local time, when the pillow stays calm."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Callable


def _minutes(hh_mm: str) -> int:
    hours, minutes = hh_mm.split(":")
    return int(hours) * 60 + int(minutes)


class QuietHours:
    """Says whether the pillow should be quiet now: by its daily window, or by hand.

    The window [start, end) may cross midnight; without one, only a hand can make it
    quiet. *clock* gives epoch seconds, turned into local time on every call, so a
    change of time zone or daylight saving time is followed without a restart. A
    choice made by hand (``override``) lasts until the window next begins or ends.
    """

    def __init__(self, start: str | None = None, end: str | None = None, *,
                 clock: Callable[[], float] = time.time):
        self.window = (_minutes(start), _minutes(end)) if start and end else None
        self.clock = clock
        self._lock = threading.Lock()
        self._listeners: list[Callable[[bool], None]] = []
        self._scheduled: bool | None = None
        self._override: bool | None = None
        self.quiet: bool | None = None

    def active(self, when: float | None = None) -> bool:
        """Whether the window covers *when* (default: now)."""
        if self.window is None:
            return False
        start, end = self.window
        local = datetime.fromtimestamp(self.clock() if when is None else when)
        now = local.hour * 60 + local.minute
        if start < end:
            return start <= now < end
        return now >= start or now < end   # across midnight

    def on_change(self, listener: Callable[[bool], None]) -> None:
        self._listeners.append(listener)

    def override(self, quiet: bool) -> bool:
        """Quiet (or not) now, by hand, until the window next begins or ends."""
        with self._lock:
            self._override = bool(quiet)
        return self.check()

    def check(self) -> bool:
        """Look at the clock and tell listeners if quiet began or ended."""
        with self._lock:
            scheduled = self.active()
            if scheduled != self._scheduled:
                self._scheduled = scheduled
                self._override = None  # the window's edge ends a choice made by hand
            quiet = scheduled if self._override is None else self._override
            changed = quiet != self.quiet
            self.quiet = quiet
        if changed:
            for listener in self._listeners:
                listener(quiet)
        return quiet

    def run(self, stop: threading.Event, every: float = 1.0) -> None:
        while not stop.wait(every):
            self.check()
