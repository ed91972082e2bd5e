"""Who the pillow answers: the last message from someone else, for a window after it played."""

from __future__ import annotations


class ReplyTarget:
    """The message a press now would answer, if any.

    The last message from someone else that came through the queue is answerable
    for *window* seconds from the moment it played here; after that a press answers
    nobody. Only the Conversation calls it, under its lock.
    """

    def __init__(self, kept: dict | None, *, window: float):
        self.window = window
        self.current: dict | None = kept    # {"id", "from", "at"}: at, epoch seconds

    def heard(self, ident: str, sender: str | None, at: float) -> None:
        """A message *ident* from *sender* played here at *at*: it is the one to answer."""
        self.current = {"id": ident, "from": sender, "at": at}

    def reply_to(self, now: float) -> dict | None:
        """{"id", "from"} of the message a press at *now* answers, or None."""
        target = self.current
        if target is None or now - target["at"] > self.window:
            return None
        return {"id": target["id"], "from": target["from"]}
