"""The hug button: a press plays a scene here and tells the sender the hug was felt."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Callable

from .history import iso_now
from .queues import QueueError

log = logging.getLogger(__name__)


class Outbox:
    """Events for the outbound queue, kept in SQLite until the queue has taken them.

    An event is deleted only after the queue accepted it, so none is lost while the
    queue is offline or the pillow restarts; a crash between the two may send one
    twice, which is why every event carries an ``id``.
    """

    def __init__(self, path: str | Path, queue, *, retry_min: float = 0.5,
                 retry_max: float = 30.0):
        self.queue = queue
        self.retry_min, self.retry_max = retry_min, retry_max
        self._lock = threading.Lock()
        self._wake = threading.Event()     # an event was added, or stop()
        self._stopped = threading.Event()
        self.online: bool | None = None
        self.sent = 0
        self._db = sqlite3.connect(str(path), timeout=10, check_same_thread=False,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS events ("
                         "seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL)")

    def add(self, event: dict) -> None:
        with self._lock:
            self._db.execute("INSERT INTO events (body) VALUES (?)",
                             (json.dumps(event, separators=(",", ":")),))
        self._wake.set()

    def pending(self) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT body FROM events ORDER BY seq").fetchall()
        return [json.loads(body) for body, in rows]

    def flush(self) -> bool:
        """Send what is pending, oldest first; False if the queue refused for now."""
        while True:
            with self._lock:
                row = self._db.execute(
                    "SELECT seq, body FROM events ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                return True
            seq, body = row
            try:
                self.queue.put(body)
            except QueueError as err:
                if self.online is not False:
                    log.warning("outbound queue unavailable, keeping %d event(s): %s",
                                len(self.pending()), err)
                self.online = False
                return False
            with self._lock:
                self._db.execute("DELETE FROM events WHERE seq = ?", (seq,))
            self.online = True
            self.sent += 1

    def run(self) -> None:
        """Send events as they come, retrying with back-off while the queue is away."""
        delay = self.retry_min
        while not self._stopped.is_set():
            self._wake.clear()
            try:
                ok = self.flush()
            except Exception:  # a bug must not stop the outbox for good
                log.exception("unexpected error in the outbox")
                ok = False
            if ok:
                delay = self.retry_min
                self._wake.wait()  # the next add(), or stop()
            else:
                # The back-off is waited out whatever is added meanwhile: the new
                # event goes with the others at the next try (only stop() ends it).
                self._stopped.wait(delay)
                delay = min(delay * 2, self.retry_max)

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Hugs:
    """Plays *scene* on a press and, with an outbox, sends the hug event."""

    def __init__(self, pillow_name: str, scene: str, *, timeline,
                 play: Callable[[dict], object], outbox: Outbox | None = None):
        self.pillow_name = pillow_name
        self.scene = scene
        self._play = play
        self.outbox = outbox
        self.last_message: dict | None = None
        self.presses = 0
        timeline.on_change(self.seen)

    def seen(self, playing) -> None:
        """Timeline listener: remember who last sent something, to reply to them."""
        message = playing.message
        if message and message.get("id") and playing.scene.name != self.scene:
            self.last_message = {"id": message["id"], "from": message.get("from")}

    def pressed(self) -> None:
        self.presses += 1
        try:
            self._play({"scene": self.scene})
        except Exception:  # the event still goes: the hug was felt
            log.exception("could not play the %r scene", self.scene)
        if self.outbox is not None:
            event = {"event": "hug", "pillow": self.pillow_name, "at": iso_now(),
                     "reply_to": self.last_message, "id": str(uuid.uuid4())}
            try:
                self.outbox.add(event)
            except Exception:
                log.exception("could not keep the hug event")
        log.info("hug button pressed")


class HugButton:
    """The physical button, debounced by gpiozero; calls *on_press* on each press."""

    def __init__(self, pin, *, pull_up: bool, bounce_seconds: float,
                 on_press: Callable[[], None], pin_factory):
        from gpiozero import Button
        self.device = Button(pin, pull_up=pull_up, bounce_time=bounce_seconds or None,
                             pin_factory=pin_factory)
        self.device.when_pressed = lambda: on_press()

    def close(self) -> None:
        if self.device is not None:
            self.device.close()
            self.device = None
