"""The one way anything plays on the pillow: record the outcome, announce it, then play."""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from typing import Callable

from .history import History, Outcome, iso_now
from .messages import Command
from .scenes import Timeline

log = logging.getLogger("pillowd.player")


class Player:
    """Keeps every outcome in the history before anyone hears of it or sees it play.

    The queue consumer, the status page's controls, the demo, the hug button and
    Home Assistant all play through here, so each play is in the history (and so
    deduplicated, counted and shown) exactly like a queue message's.
    """

    def __init__(self, history: History, timeline: Timeline, *,
                 on_outcome: Callable[[Outcome], None], conversation=None,
                 on_played: Callable[[Command, Outcome], None] = lambda c, o: None):
        self._history = history
        self._timeline = timeline
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

    def _record(self, outcome: Outcome) -> Outcome | None:
        recorded = self._history.record(outcome)
        if recorded is not None:
            log.info("message %s %s%s", recorded.id, recorded.outcome,
                     f": {recorded.reason}" if recorded.reason else "",
                     extra={"PILLOW_OUTCOME": recorded.outcome,
                            "PILLOW_SCENE": recorded.scene or "",
                            "PILLOW_MESSAGE_ID": recorded.id})
            # Announced before it plays, so no snapshot shows the scene without it.
            self._on_outcome(recorded)
        return recorded

    def play(self, command: Command, outcome: Outcome,
             through_queue: bool = True) -> Outcome | None:
        """Record *outcome* (applied) and play *command*; None if already settled.

        A partner's answer to one of this pillow's own recent hugs is a hug back:
        it is decided here, before the record, so the history, the announcement
        and the snapshot all say so. A receipt (no scene) is only recorded.
        """
        reply = through_queue and self._answers(command)
        recorded = self._record(replace(outcome, event=command.event, reply=reply))
        if recorded is not None:
            # Before it plays, as the announcement: no snapshot shows the scene
            # without its place in the conversation (last_sent, while_quiet).
            self._heard(command, recorded, through_queue)
            if command.scene is not None:
                self._timeline.play(command, recorded.id, reply=recorded.reply)
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

    def _heard(self, command: Command, outcome: Outcome, through_queue: bool) -> None:
        if self._conversation is None:
            return
        try:
            self._conversation.heard(command, outcome, through_queue)
        except Exception:  # the message is kept and played: a hug's trouble is apart
            log.exception("the conversation failed on message %s", outcome.id)

    def play_now(self, command: Command, source: str) -> Outcome:
        """Play *command* from *source* ("web", "button", "mqtt", "demo") at once."""
        outcome = Outcome(id=command.id or f"{source}-{uuid.uuid4()}", outcome="applied",
                          scene=command.scene.name, sender=command.sender, reason=None,
                          at=iso_now(), queue=source, text=command.text)
        return self.play(command, outcome, through_queue=False)
