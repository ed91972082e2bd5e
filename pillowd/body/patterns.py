"""Vibration patterns: pure functions from seconds since the scene began to a level 0..1."""

from __future__ import annotations

import math
from typing import Callable

__all__ = ["PATTERNS", "steady", "pulse", "heartbeat", "purr", "nudge"]


def _phase(t: float, period: float) -> float:
    # Rounded so 1.2 % 1.0 is 0.2 and not 0.19999999999999996, which would move an
    # edge by a whole tick.
    return round(t % period, 6)


def steady(t: float) -> float:
    """On all the time (the limits still cut it off)."""
    return 1.0


def pulse(t: float) -> float:
    """Half a second on, half a second off."""
    return 1.0 if _phase(t, 1.0) < 0.5 else 0.0


def heartbeat(t: float) -> float:
    """Lub-dub at 60 beats a minute: a strong 0.1 s beat, a pause, a softer one."""
    phase = _phase(t, 1.0)
    if phase < 0.1:
        return 1.0
    if 0.2 <= phase < 0.3:
        return 0.7
    return 0.0


def purr(t: float) -> float:
    """A soft swell for 0.8 s, then 0.4 s of rest, like breathing while purring."""
    phase = _phase(t, 1.2)
    if phase >= 0.8:
        return 0.0
    return 0.4 + 0.6 * math.sin(math.pi * phase / 0.8)


def nudge(t: float) -> float:
    """One 0.3 s buzz when the scene starts, then still."""
    return 1.0 if t < 0.3 else 0.0


#: the names a scene's ``vibration`` key may take
PATTERNS: dict[str, Callable[[float], float]] = {
    "steady": steady, "pulse": pulse, "heartbeat": heartbeat, "purr": purr,
    "nudge": nudge,
}
