"""The queue consumer: takes messages off the queue and gives each exactly one outcome."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Callable

from .history import History, HistoryError, Outcome, iso
from .messages import Command, Rejection, claimed_id, claimed_sender
from .player import Player
from .queues import MessageGone, MessageQueue, QueueError, QueueMessage, QueueUnavailable
from .queues.backoff import Backoff
from .queues.poison import poison_body

log = logging.getLogger(__name__)


@dataclass
class QueueStatus:
    backend: str
    online: bool = False
    reason: str | None = None
    requests: int = 0
    history_failures: int = 0  # writes of the pillow's own history that failed


class Consumer:
    """Receives batches, decides outcomes, records them, then deletes.

    Order matters for "nothing lost, nothing played twice": an outcome is written
    to the history before its message is deleted, and a message that comes back
    after a crash is recognised by its queue id and only deleted.
    """

    def __init__(self, queue: MessageQueue, poison: MessageQueue, history: History,
                 player: Player, *, decode: Callable[[str], Command],
                 backoff: Backoff, backend: str,
                 max_dequeue_count: int = 5, max_age: float = 900,
                 batch_size: int = 32, visibility_timeout: float = 30,
                 on_status: Callable[[QueueStatus], None] = lambda s: None,
                 wall: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 clock=time.monotonic):
        self.queue = queue
        self.poison = poison
        self.history = history
        self.player = player
        self.decode = decode
        self.backoff = backoff
        self.max_dequeue_count = max_dequeue_count
        self.max_age = max_age
        self.batch_size = batch_size
        self.visibility_timeout = visibility_timeout
        self.on_status = on_status
        self._wall = wall
        self._clock = clock
        self.status = QueueStatus(backend)
        self.heartbeat = clock()
        # The pillow's own trouble, not the messages': while the history cannot be
        # written no message is taken (each take would count a delivery), and a
        # delivery that ended in it is not counted against the message.
        self.history_trouble: str | None = None
        self._own_failures: dict[str, int] = {}  # queue message id -> deliveries
        # Set by stop() and the back-off's hurry(): the wait between polls ends at once.
        self._wake = backoff.wake
        self._stopping = False

    # -- the loop --------------------------------------------------------------

    def run(self) -> None:
        """Poll until stop(), first giving back what a killed run was handling."""
        self._give_back()
        while not self._stopping:
            self.heartbeat = self._clock()
            self._wake.clear()  # before the poll: a hurry() during it is not lost
            try:
                if self.history_trouble is not None:
                    self.history.probe()  # HistoryError: still failing, wait more
                    log.warning("the history can be written again: taking messages")
                    self.history_trouble = None
                found = self.poll_once()
            except HistoryError as err:
                self.status.history_failures += 1
                if self.history_trouble is None:
                    log.error("%s; taking no messages until it can be written", err)
                self.history_trouble = str(err)
                self._set_online(False, str(err))
                delay = self.backoff.failed()
            except QueueError as err:
                self._set_online(False, str(err))
                delay = self.backoff.failed()
            except Exception as err:  # a bug must not stop the pillow listening
                log.exception("unexpected error in the queue loop")
                self._set_online(False, f"internal error: {err}")
                delay = self.backoff.failed()
            else:
                delay = self.backoff.next(found)
            self._wake.wait(delay)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def trouble(self) -> str | None:
        """Why the pillow takes no messages although the queue may be fine (its own
        history cannot be written), for /healthz; None otherwise."""
        trouble = self.history_trouble  # once: the queue thread may clear it meanwhile
        if trouble is None:
            return None
        return f"{trouble} (taking no messages until it can)"

    def _give_back(self) -> None:
        """Make the messages a killed run had taken visible again, instead of hidden
        for the rest of their visibility timeout: they play seconds after a restart."""
        try:
            held = self.history.held(self.queue.name)
        except HistoryError as err:
            log.warning("%s; messages taken before a crash come back on their own", err)
            return
        for message_id, pop_receipt in held:
            try:
                self.queue.release(QueueMessage(message_id, "", 0, self._wall(),
                                                pop_receipt), delay=0)
            except MessageGone:
                pass  # settled after all, or already back and taken again
            except QueueError as err:
                log.warning("message %s comes back on its own after its visibility "
                            "timeout: %s", message_id, err)
        if held:
            log.info("%d message(s) taken before a crash are back on the queue", len(held))
        try:
            self.history.unhold(self.queue.name, [m for m, _ in held])
        except HistoryError:
            pass

    def poll_once(self) -> bool:
        """One receive and the handling of what it brought; True if any message."""
        self.status.requests += 1
        batch = self.queue.receive(self.batch_size, self.visibility_timeout)
        if batch:
            # Remembered until settled: after a crash, _give_back() finds them.
            try:
                self.history.hold(self.queue.name,
                                  [(m.id, m.pop_receipt) for m in batch])
            except HistoryError as err:
                log.error("%s; %d message(s) will come back", err, len(batch))
                for message in batch:
                    self._release(message, own_failure=True)
                raise
            self.handle(batch)
            self.history.unhold(self.queue.name, [m.id for m in batch])
            for message in batch:
                self._own_failures.pop(message.id, None)
        # Online only once the batch is settled: a queue that answers is no use
        # while the history cannot be written.
        self._set_online(True, None)
        return bool(batch)

    def _set_online(self, online: bool, reason: str | None) -> None:
        if (online, reason) != (self.status.online, self.status.reason):
            if online:
                log.info("queue %r online", self.queue.name)
            else:
                log.warning("queue %r offline: %s", self.queue.name, reason)
            self.status.online, self.status.reason = online, reason
            self.on_status(self.status)

    # -- deciding outcomes -------------------------------------------------------

    def handle(self, batch: list[QueueMessage]) -> None:
        """Give every message in *batch* its outcome; the newest valid one plays."""
        playable: list[tuple[QueueMessage, Command, str]] = []
        unsettled = list(batch)
        try:
            for message in batch:
                try:
                    decided = self._decide(message)
                except QueueError as err:
                    # It cannot be settled (its poison copy refused): it alone waits,
                    # hidden until its visibility timeout; the rest of the batch plays.
                    self._set_aside(message, err)
                    decided = None
                if decided is not None and decided[2] in {p[2] for p in playable}:
                    # A copy in the same batch: the history cannot know it yet.
                    self._settle(message, self._outcome(
                        decided[2], "duplicate", decided[1], message,
                        reason=f"id {decided[2]!r} came twice in one batch"), decided[1])
                    decided = None
                if decided is not None:
                    playable.append(decided)
                else:
                    unsettled.remove(message)
            for decided in [p for p in playable if p[1].scene is None]:
                # A partner's receipt plays no scene: kept as it comes, never
                # superseding a message nor superseded by one.
                message, command, message_id = decided
                playable.remove(decided)
                self._settle(message, self._outcome(message_id, "applied", command,
                                                    message), command, play=True)
                unsettled.remove(message)
            if not playable:
                return
            # Newest by when it was sent: a queue need not deliver in order.
            playable.sort(key=lambda p: _sent(p[1], p[0]))
            *older, newest = playable
            for message, command, message_id in older:
                self._settle(message, self._outcome(
                    message_id, "superseded", command, message,
                    reason="a newer message played instead"), command)
                unsettled.remove(message)
            message, command, message_id = newest
            self._settle(message, self._outcome(message_id, "applied", command, message),
                         command, play=True)
        except HistoryError as err:
            # The history is out of reach (locked, disk full): no outcome can be
            # kept, so nothing is settled. The rest of the batch comes back soon,
            # instead of each message waiting out the lock in turn, and the loop
            # reports the reason and backs off.
            log.error("%s; %d message(s) will come back", err, len(unsettled))
            for message in unsettled:
                self._release(message, own_failure=True)
            raise

    def _decide(self, message: QueueMessage):
        prior = self.history.delivery(self.queue.name, message.id)
        if prior is not None:
            # Back after a crash or a failed delete: its outcome stands; finish the job.
            if prior.outcome == "rejected" and not prior.poisoned:
                self._poison(message, prior)
            self._answer_again(message, prior)
            self._delete(message)
            return None
        # Deliveries that ended in the pillow's own failure are not the message's.
        deliveries = message.dequeue_count - self._own_failures.get(message.id, 0)
        if deliveries > self.max_dequeue_count:
            self._reject(message, None, f"delivered {message.dequeue_count} times "
                                        "without an outcome")
            return None
        try:
            command = self.decode(message.body)
        except Rejection as err:
            self._reject(message, None, str(err))
            return None
        except Exception as err:  # a bug in decoding: poison keeps it for a requeue
            log.exception("could not decode message %s", message.id)
            self._reject(message, None, f"could not be read (internal error: "
                                        f"{type(err).__name__})")
            return None
        message_id = command.id or message.id
        # A copy of what played is a duplicate however late it comes: recorded
        # "expired", a partner's hug would be answered so, and its sender's page
        # would turn "delivered" into "not delivered".
        if self.history.was_applied(message_id):
            self._settle(message, self._outcome(
                message_id, "duplicate", command, message,
                reason=f"id {message_id!r} was already applied"), command)
            return None
        age = (self._wall() - _sent(command, message)).total_seconds()
        max_age = min(self.max_age, command.ttl or self.max_age)
        if age > max_age:
            self._settle(message, self._outcome(
                message_id, "expired", command, message,
                reason=f"{age:.0f} s old; the limit is {max_age:.0f} s"), command)
            return None
        return message, command, message_id

    def _answer_again(self, message: QueueMessage, prior: Outcome) -> None:
        """A partner's hug whose outcome was kept came back (a crash, or a failed
        delete, before it left the queue): its receipt is made again, in case the
        crash came before the receipt was kept."""
        if prior.event != "hug":
            return
        try:
            command = self.decode(message.body)
        except Exception:  # it was read once; if not now, there is nothing to answer
            return
        self.player.answer_again(command, prior)

    def _outcome(self, message_id, outcome, command: Command | None,
                 message: QueueMessage, reason: str | None = None) -> Outcome:
        return Outcome(id=message_id, outcome=outcome,
                       scene=command.scene.name if command and command.scene else None,
                       sender=command.sender if command else None,
                       reason=reason, at=iso(self._wall()), queue=self.queue.name,
                       queue_message_id=message.id,
                       event=command.event if command else None,
                       text=command.text if command else None,
                       of=command.of if command else None)

    def _settle(self, message: QueueMessage, outcome: Outcome,
                command: Command | None = None, play: bool = False) -> None:
        # HistoryError: handle() releases. None back: an earlier delivery settled it.
        if play:
            self.player.play(command, outcome)
        else:
            self.player.record(outcome, command)
        self._delete(message)

    def _reject(self, message: QueueMessage, command, reason: str) -> None:
        # Under the id its sender was told (`pillowd send` prints it), when readable.
        message_id = claimed_id(message.body) or message.id
        outcome = self._outcome(message_id, "rejected", command, message, reason=reason)
        if outcome.sender is None:  # the page says who sent what could not play
            outcome = replace(outcome, sender=claimed_sender(message.body))
        recorded = self.player.record(outcome)
        if recorded is not None:
            self._poison(message, recorded)
        self._delete(message)

    def _poison(self, message: QueueMessage, outcome: Outcome) -> None:
        self.poison.put(poison_body(outcome.reason, message.body, self.queue.name,
                                    message.dequeue_count, outcome.at), ttl=-1)
        self.history.mark_poisoned(outcome.seq)

    def _set_aside(self, message: QueueMessage, err: QueueError) -> None:
        """*message* is rejected (its outcome kept) but the poison queue refused it.

        An outage is waited out: it comes back after its visibility timeout. A
        refusal that retrying will not cure (a revoked token, a deleted poison
        queue) ends at max_dequeue_count: the message is deleted, its outcome
        (rejected, not poisoned) stays in the history and its body's length and
        sha256 in the journal, so it cannot come back every 30 s forever.
        """
        raw = message.body.encode("utf-8", "surrogatepass")
        if isinstance(err, QueueUnavailable) or message.dequeue_count < self.max_dequeue_count:
            log.warning("message %s set aside: it cannot be moved to poison (%s); it comes "
                        "back in %.0f s", message.id, err, self.visibility_timeout)
            return
        log.error("message %s deleted after %d deliveries without a poison copy (%s): "
                  "its outcome is in the history; its body was %d bytes, sha256 %s",
                  message.id, message.dequeue_count, err, len(raw),
                  hashlib.sha256(raw).hexdigest())
        self._delete(message)

    def _delete(self, message: QueueMessage) -> None:
        try:
            self.queue.delete(message)
        except MessageGone:
            pass  # someone settled it already; its outcome is recorded
        except QueueError as err:
            # It comes back after the visibility timeout and is only deleted then.
            log.warning("could not delete message %s yet: %s", message.id, err)

    def _release(self, message: QueueMessage, own_failure: bool = False) -> None:
        if own_failure:
            if len(self._own_failures) >= 10_000:  # bounded: forget the oldest
                self._own_failures.pop(next(iter(self._own_failures)))
            self._own_failures[message.id] = self._own_failures.get(message.id, 0) + 1
        try:
            self.queue.release(message, delay=min(self.visibility_timeout, 5))
        except QueueError as err:
            log.warning("could not release message %s: %s", message.id, err)


def _sent(command: Command, message: QueueMessage) -> datetime:
    """When a message was sent: its sent_at, but never later than the queue got it
    (a clock that runs ahead must not make a message immortal, or always newest)."""
    if command.sent_at is None:
        return message.inserted_on
    return min(command.sent_at, message.inserted_on)
