"""The one way anything plays on the pillow: record the outcome, announce it, then play."""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from typing import Callable

from .feel import felt_fields
from .history import History, Outcome, iso_now
from .leds.scenes import Timeline
from .messages import Command

log = logging.getLogger("pillowd.player")


class Player:
    """Keeps every outcome in the history before anyone hears of it or sees it play.

    The queue consumer, the status page's controls, the demo, the hug button and
    Home Assistant all play through here, so each play is in the history (and so
    deduplicated, counted and shown) exactly like a queue message's.
    """

    def __init__(self, history: History, timeline: Timeline, *,
                 on_outcome: Callable[..., None], conversation=None,
                 on_played: Callable[[Command, Outcome], None] = lambda c, o: None):
        self._history = history
        self._timeline = timeline
        # on_outcome(outcome, start=None): *start*, when given, starts its scene;
        # the listener runs it within the same change of the snapshot (Pillow.outcome),
        # so no snapshot shows the message applied while the old scene still plays.
        self._on_outcome = on_outcome
        # The hugs' Conversation (or None): told of every message's outcome, and
        # asked whether one is a hug back.
        self._conversation = conversation
        self._on_played = on_played  # after it plays: who sent it, its words

    def record(self, outcome: Outcome, command: Command | None = None) -> Outcome | None:
        """Keep and announce *outcome* (of the queue's *command*, if it could be
        read); None when its delivery had one already.

        Raises HistoryError when it cannot be kept: then nothing is announced.
        """
        recorded = self._record(outcome)
        if recorded is not None and command is not None:
            self._heard(command, recorded, through_queue=True)
        return recorded

    def _record(self, outcome: Outcome, announce: bool = True) -> Outcome | None:
        recorded = self._history.record(outcome)
        if recorded is not None:
            log.info("message %s %s%s", recorded.id, recorded.outcome,
                     f": {recorded.reason}" if recorded.reason else "",
                     extra={"PILLOW_OUTCOME": recorded.outcome,
                            "PILLOW_SCENE": recorded.scene or "",
                            "PILLOW_MESSAGE_ID": recorded.id})
            if announce:
                self._on_outcome(recorded)
        return recorded

    def _announce(self, outcome: Outcome, start: Callable[[], object] | None) -> None:
        """Announce *outcome* and start its scene as one change of the snapshot; the
        scene starts even if the announcement fails."""
        started = []

        def go() -> None:
            started.append(True)
            start()
        try:
            self._on_outcome(outcome, go) if start is not None else self._on_outcome(outcome)
        except Exception:  # the snapshot's trouble: the message still plays
            log.exception("the outcome listener failed on message %s", outcome.id)
        if start is not None and not started:
            start()

    def play(self, command: Command, outcome: Outcome,
             through_queue: bool = True) -> Outcome | None:
        """Record *outcome* (applied) and play *command*; None if already settled.

        A partner's answer to one of this pillow's own recent hugs is a hug back:
        it is decided here, before the record, so the history, the announcement
        and the snapshot all say so. A receipt (no scene) is only recorded.
        """
        reply = through_queue and self._answers(command)
        if through_queue:
            command = self._dressed(command)
        recorded = self._record(replace(outcome, event=command.event, reply=reply,
                                        felt=felt_fields(command) or None),
                                announce=False)
        if recorded is not None:
            # Before it plays: no snapshot shows the scene without its place in the
            # conversation (last_sent, while_quiet).
            self._heard(command, recorded, through_queue)
            start = None
            if command.scene is not None:
                def start() -> None:
                    self._timeline.play(command, recorded.id, reply=recorded.reply)
            # Its row under Recent messages and its scene: one change of the snapshot.
            self._announce(recorded, start)
            if command.scene is not None:
                try:
                    self._on_played(command, recorded)
                except Exception:  # a listener's trouble must not leave a message half done
                    log.exception("a played listener failed")
        return recorded

    def _answers(self, command: Command) -> bool:
        if self._conversation is None:
            return False
        try:
            return self._conversation.answers(command)
        except Exception:  # the message is kept and played all the same, as no hug back
            log.exception("the conversation could not judge message %s", command.id)
            return False

    def _dressed(self, command: Command) -> Command:
        if self._conversation is None:
            return command
        try:
            return self._conversation.dressed(command)
        except Exception:  # it plays in its own colour
            log.exception("the conversation could not colour message %s", command.id)
            return command

    def _heard(self, command: Command, outcome: Outcome, through_queue: bool) -> None:
        if self._conversation is None:
            return
        try:
            self._conversation.heard(command, outcome, through_queue)
        except Exception:  # the message is kept and played: a hug's trouble is apart
            log.exception("the conversation failed on message %s", outcome.id)

    def answer_again(self, command: Command, outcome: Outcome) -> None:
        """*command* came off the queue again after its *outcome* was kept: the
        conversation answers it again (its receipt), and nothing plays."""
        if self._conversation is None:
            return
        try:
            self._conversation.answer_again(command, outcome)
        except Exception:  # the message is settled all the same
            log.exception("the conversation failed on message %s again", outcome.id)

    def play_now(self, command: Command, source: str) -> Outcome:
        """Play *command* from *source* ("web", "button", "mqtt", "demo") at once."""
        outcome = Outcome(id=command.id or f"{source}-{uuid.uuid4()}", outcome="applied",
                          scene=command.scene.name, sender=command.sender, reason=None,
                          at=iso_now(), queue=source, text=command.text)
        return self.play(command, outcome, through_queue=False)
