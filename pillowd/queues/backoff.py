"""When the queue loop asks again: fast while messages flow, slower at rest, hurried for an answer."""

from __future__ import annotations

import random
import threading
import time


class Backoff:
    """Polling intervals after the Azure Functions queue trigger's algorithm.

    Fast while messages flow; doubling, with jitter, up to a ceiling while idle;
    back to fast on the next message. After a message it stays fast for *linger*
    seconds, because a conversation's next message usually follows soon.
    """

    def __init__(self, minimum: float, maximum: float, linger: float = 10.0,
                 rng: random.Random | None = None, clock=time.monotonic):
        # Set by hurry() (and the consumer's stop()): the wait between polls ends.
        # The back-off owns it, so whoever expects an answer can hurry the poll
        # without holding the consumer.
        self.wake = threading.Event()
        self.minimum = minimum
        self.maximum = maximum
        self.linger = linger
        self._rng = rng or random.Random()
        self._clock = clock
        self._misses = 0
        self._last_message = -float("inf")
        self._fast_until = -float("inf")
        self.interval = minimum

    def next(self, found: bool) -> float:
        """Seconds to wait before the next poll, given whether this one found any."""
        now = self._clock()
        if found:
            self._misses = 0
            self._last_message = now
            self.interval = self.minimum
        elif now - self._last_message < self.linger or now < self._fast_until:
            self.interval = self.minimum
        else:
            self._grow()
        return self.interval

    def hurry(self, seconds: float) -> None:
        """Poll at the minimum for *seconds* from now: an answer is on its way."""
        self._fast_until = max(self._fast_until, self._clock() + seconds)
        self._misses = 0
        self.interval = self.minimum
        self.wake.set()

    def failed(self) -> float:
        """Seconds to wait after the queue could not be reached."""
        self._grow()
        return self.interval

    def _grow(self) -> None:
        self._misses += 1
        grown = self.minimum * (2 ** min(self._misses, 30)) * self._rng.uniform(0.8, 1.2)
        self.interval = min(self.maximum, max(self.minimum, grown))
