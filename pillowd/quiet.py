"""Quiet hours: a daily window, in the Pi's local time, when the pillow stays calm."""

from __future__ import annotations

import math
import threading
import time
from datetime import datetime, timedelta
from typing import Callable


MAX_SLEEP = 3600.0  # seconds between looks at the clock, at most


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
                 on_change: Callable[[bool], None] = lambda quiet: None,
                 clock: Callable[[], float] = time.time):
        self.window = (_minutes(start), _minutes(end)) if start and end else None
        self.clock = clock
        self._lock = threading.Lock()
        self._on_change = on_change
        self._scheduled: bool | None = None
        self._override: bool | None = None
        self.quiet: bool | None = None
        self._stopped = threading.Event()

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
            self._on_change(quiet)
        return quiet

    def next_edge(self, when: float | None = None) -> float:
        """Epoch seconds when the window next begins or ends after *when* (now)."""
        when = self.clock() if when is None else when
        if self.window is None:
            return math.inf
        midnight = datetime.fromtimestamp(when).replace(hour=0, minute=0, second=0,
                                                        microsecond=0)
        # mktime reads a local wall time through the time zone's rules, so an edge
        # on a daylight saving day lands at its true instant.
        edges = (time.mktime((midnight + timedelta(days=day, minutes=minutes)).timetuple())
                 for day in (0, 1, 2) for minutes in self.window)
        return min(edge for edge in edges if edge > when)

    def run(self) -> None:
        """Follow the window until stop(), waking only at its edges.

        Once an hour at the latest, so a new time zone is followed without a restart.
        """
        while not self._stopped.wait(min(max(self.next_edge() - self.clock(), 0.05),
                                         MAX_SLEEP)):
            self.check()

    def stop(self) -> None:
        self._stopped.set()
