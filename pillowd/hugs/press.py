"""A press: the hug button and POST /api/hug play the hug here and have the conversation send it."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Callable

from ..messages import HOLD_RANGE, held
from .conversation import Conversation
from .outbox import HugNotKept

log = logging.getLogger(__name__)


class Hugs:
    """A press (the button, POST /api/hug): plays [button] scene here, through the
    same path as any play from the page, and has the conversation send the hug."""

    def __init__(self, settings, *, conversation: Conversation,
                 play: Callable[[dict, str], object]):
        self.scene = settings.scene
        self.conversation = conversation
        self._play = play
        self.presses = 0

    @property
    def partners(self) -> list[str]:
        """The partner pillows a press may go to alone (pressed(to=...))."""
        return sorted(self.conversation.partners)

    def pressed(self, source: str = "button", *, to: str | None = None,
                text: str | None = None, hold: float | None = None,
                strength: float | None = None) -> str:
        """Play the press here and send the hug event (to every partner, or only
        to the partner pillow *to*, with *text* if given, held *hold* seconds at
        *strength*, 0.1..1, if given); returns the event's id.

        Raises UnknownPartner for a *to* without a queue, Rejection (a ValueError)
        for a *hold* or *strength* out of range or not a number, HugNotKept when
        the event cannot be kept: in each case nothing plays and nothing is sent."""
        felt = held({"hold": hold, "strength": strength})
        self.conversation.queues_for(to)  # an unknown partner plays nothing
        self.presses += 1
        # The press's history row has the event's id: the partners' receipts name it
        # ("of"), and the page shows "delivered" on that row.
        ident = str(uuid.uuid4())
        try:
            self._play({"scene": self.scene, "id": ident}, source)
        except Exception as err:  # the event still goes: the hug was felt
            log.warning("could not play the %r scene: %s", self.scene, err)
        return self.conversation.press(source, to=to, text=text, ident=ident,
                                       felt=felt)["id"]

    def seen(self) -> None:
        self.conversation.seen()


# The shortest and longest hold a hug carries (SPEC): a hug still held at the
# longest is sent then.
HOLD_MIN, MAX_HOLD = HOLD_RANGE


class HugButton:
    """The physical button, debounced by gpiozero: a hug is sent on its release,
    held from press to release (``on_press(hold=seconds)``), or after MAX_HOLD
    seconds if it is still held, once.

    While it is held, one named thread waits for the release or the end of
    MAX_HOLD (no thread at rest). *clock* and *wait(event, seconds)* are the
    time it is measured on and the wait for the release: a test drives them."""

    def __init__(self, pin, *, pull_up: bool, bounce_seconds: float,
                 on_press: Callable[..., object], pin_factory,
                 max_hold: float = MAX_HOLD, clock: Callable[[], float] = time.monotonic,
                 wait: Callable[[threading.Event, float], bool] = (
                     lambda event, seconds: event.wait(seconds))):
        from gpiozero import Button
        self._on_press = on_press
        self._max_hold = max_hold
        self._clock, self._wait = clock, wait
        self._lock = threading.Lock()
        self._press: _Press | None = None   # the press being held, if any
        self.device = Button(pin, pull_up=pull_up, bounce_time=bounce_seconds or None,
                             pin_factory=pin_factory)
        self.device.when_pressed = self._down
        self.device.when_released = self._up

    def _down(self) -> None:
        press = _Press(self._clock())
        with self._lock:
            if self._press is not None:  # a release gpiozero never told: that one ends
                self._press.released.set()
            self._press = press
        threading.Thread(target=self._held, args=(press,), name="pillowd-hold",
                         daemon=True).start()

    def _up(self) -> None:
        with self._lock:
            press, self._press = self._press, None
        if press is not None:
            press.up_at = self._clock()
            press.released.set()

    def _held(self, press: "_Press") -> None:
        # Sends the hug once: at the release, or when MAX_HOLD has passed.
        while True:
            left = self._max_hold - (self._clock() - press.down_at)
            if left <= 0 or self._wait(press.released, left):
                break
        if press.cancelled:
            return
        up = press.up_at if press.released.is_set() and press.up_at is not None \
            else press.down_at + self._max_hold
        hold = min(self._max_hold, max(HOLD_MIN, up - press.down_at))
        _logged(lambda: self._on_press(hold=round(hold, 2)))

    def close(self) -> None:
        if self.device is not None:
            self.device.close()
            self.device = None
        with self._lock:
            press, self._press = self._press, None
        if press is not None:  # a press held at shutdown is not sent half-way
            press.cancelled = True
            press.released.set()


class _Press:
    """One press of the button: when it began, and its release."""

    def __init__(self, down_at: float):
        self.down_at = down_at
        self.up_at: float | None = None
        self.released = threading.Event()
        self.cancelled = False


def _logged(on_press: Callable[[], object]) -> None:
    # gpiozero's thread would print a traceback and lose the line; one line instead.
    try:
        on_press()
    except HugNotKept as err:
        log.error("%s", err)
    except Exception:  # a bug: the next press must still work
        log.exception("the hug button's press failed")
