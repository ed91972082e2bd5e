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
    """Says whether now is inside [start, end); the window may cross midnight.

    *clock* gives epoch seconds, turned into local time on every call, so a change of
    time zone or daylight saving time is followed without a restart.
    """

    def __init__(self, start: str, end: str, *, clock: Callable[[], float] = time.time):
        self.start, self.end = _minutes(start), _minutes(end)
        self.clock = clock
        self._listeners: list[Callable[[bool], None]] = []
        self.quiet: bool | None = None

    def active(self, when: float | None = None) -> bool:
        local = datetime.fromtimestamp(self.clock() if when is None else when)
        now = local.hour * 60 + local.minute
        if self.start < self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end   # across midnight

    def on_change(self, listener: Callable[[bool], None]) -> None:
        self._listeners.append(listener)

    def check(self) -> bool:
        """Look at the clock and tell listeners if quiet hours began or ended."""
        quiet = self.active()
        if quiet != self.quiet:
            self.quiet = quiet
            for listener in self._listeners:
                listener(quiet)
        return quiet

    def run(self, stop: threading.Event, every: float = 1.0) -> None:
        while not stop.wait(every):
            self.check()
