"""The pillow tells its own trouble: one LED blinks over whatever plays while its queue is offline or a partner's queue refuses hugs."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["Cue", "CueLook", "Facts", "blink", "lit", "next_edge", "trouble_at",
           "BLINK_SECONDS", "LED"]

# The LED that blinks (the first of the strip), and how long it stays lit each time.
LED = 0
BLINK_SECONDS = 0.5


@dataclass(frozen=True)
class CueLook:
    """How a cue shows: its colour (linear 0..1, as effects' colours are) and period."""

    color: tuple[float, float, float]
    every: float
    led: int = LED
    on_seconds: float = BLINK_SECONDS


# -- the overlay: pure functions of the time since the cue began ------------------


def lit(look: CueLook, t: float) -> bool:
    """Whether the cue's LED is lit *t* seconds after the cue began: for on_seconds
    at the start of every period (at once, then every `every` seconds)."""
    return t >= 0 and (t % look.every) < look.on_seconds


def next_edge(look: CueLook, t: float) -> float:
    """The first time after *t* (seconds since the cue began) the LED turns on or off."""
    if t < 0:
        return 0.0
    start = t - (t % look.every)
    return start + look.on_seconds if t - start < look.on_seconds else start + look.every


def blink(pixels: np.ndarray, t: float, look: CueLook, shown: np.ndarray) -> np.ndarray:
    """*pixels* (the strip's bytes) with the cue over them at *t*: the cue's LED set
    to *shown* (its colour's bytes) while it is lit; *pixels* itself, untouched,
    otherwise. Never writes into *pixels* (a replayed cycle's frame)."""
    if not lit(look, t) or not 0 <= look.led < len(pixels):
        return pixels
    out = pixels.copy()
    out[look.led] = shown
    return out


# -- the scheduling piece -------------------------------------------------------------


class Facts(NamedTuple):
    """What the cue is made of, read from the snapshot on each change."""

    offline: bool        # the pillow's own queue does not answer (not: not asked yet)
    partner_away: bool   # a partner's queue refuses hugs (the outbox's "away")
    quiet: bool          # quiet hours: the cue waits for the morning


def trouble_at(now: float, offline_since: float | None, away_since: float | None,
               patience: float) -> tuple[str | None, float | None]:
    """(the trouble to show at *now*, when the next one becomes due or None).

    A trouble shows once it has lasted *patience* seconds ([cue] offline_seconds),
    so a poll that fails once, or a partner's queue that refuses one try, blinks
    nothing. The pillow's own queue comes first.
    """
    due = []
    for name, since in (("offline", offline_since), ("partner_away", away_since)):
        if since is None:
            continue
        if now - since >= patience:
            return name, _later(due)  # a pending offline still takes over when due
        due.append(since + patience)
    return None, _later(due)


def _later(due: list[float]) -> float | None:
    return min(due) if due else None


class Cue:
    """Shows the pillow's trouble on its LEDs, and says which in the snapshot.

    *facts()* reads the snapshot's queue, outbox and quiet; *changed()* is its
    listener (``pillow.on_state``): it only compares the facts, and wakes the cue's
    thread when they differ. The thread waits on that, with no timeout, while
    nothing is wrong; while something is but has not lasted *offline_seconds*
    yet, until it will have. *show(look or None)* puts the blink over the LEDs
    (the renderer), never in quiet hours; *on_cue(trouble or None)* is the
    snapshot's ``"cue"``, which names the trouble in quiet hours too.
    """

    def __init__(self, *, facts: Callable[[], Facts], show: Callable[[CueLook | None], None],
                 on_cue: Callable[[str | None], None], look: CueLook,
                 offline_seconds: float, clock: Callable[[], float] = time.monotonic):
        self._facts = facts
        self._show = show
        self._on_cue = on_cue
        self._look = look
        self._patience = offline_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._seen: Facts | None = None
        self._offline_since: float | None = None
        self._away_since: float | None = None
        self.trouble: str | None = None
        self.showing: CueLook | None = None
        self.wakeups = 0
        self.heartbeat = clock()

    def changed(self) -> None:
        """The snapshot changed: wake the thread only if what the cue is made of did."""
        facts = self._facts()
        with self._lock:
            if facts == self._seen:
                return
        self._wake.set()

    def update(self, now: float | None = None) -> float | None:
        """Read the facts and show what they mean at *now*; returns when to look
        again (monotonic), or None: not until they change."""
        now = self._clock() if now is None else now
        facts = self._facts()
        with self._lock:
            self._seen = facts
            self._offline_since = (self._offline_since if self._offline_since is not None
                                   else now) if facts.offline else None
            self._away_since = (self._away_since if self._away_since is not None
                                else now) if facts.partner_away else None
            trouble, due = trouble_at(now, self._offline_since, self._away_since,
                                      self._patience)
        if trouble != self.trouble:
            if trouble:
                log.warning("the pillow shows its trouble on its LEDs: %s%s", trouble,
                            " (after quiet hours)" if facts.quiet else "")
            else:
                log.info("the trouble cue is over")
            self.trouble = trouble
            self._on_cue(trouble)
        showing = self._look if trouble and not facts.quiet else None
        if showing != self.showing:
            self.showing = showing
            self._show(showing)
        return due

    def run(self) -> None:
        while not self._stopped:
            self._wake.clear()
            self.wakeups += 1
            try:
                due = self.update()
            except Exception:  # a bug here must not end the cue for good
                log.exception("unexpected error in the trouble cue")
                due = None
            self.heartbeat = self._clock()
            if self._stopped:
                break
            self._wake.wait(None if due is None else max(0.0, due - self._clock()))

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()
