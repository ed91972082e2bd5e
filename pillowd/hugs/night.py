"""What came in the night: messages that played in quiet hours, kept until the owner saw them."""

from __future__ import annotations

# Kept on the page while unseen, at most (the oldest go first).
WHILE_QUIET = 50


class WhileQuiet:
    """The snapshot's ``while_quiet``: what played while the pillow was quiet.

    A message that played in quiet hours is kept (its id, sender, text and when),
    the newest WHILE_QUIET of them, until the owner has seen them: a press or
    POST /api/seen. Only the Conversation calls it, under its lock.
    """

    def __init__(self, kept: list[dict] | None = None, *, limit: int = WHILE_QUIET):
        self.limit = limit
        self.items: list[dict] = list(kept or [])

    def came(self, ident: str, sender: str | None, text: str | None, at: str) -> None:
        self.items.append({"id": ident, "from": sender, "text": text, "at": at})
        del self.items[:-self.limit]

    def holds(self, ident: str) -> bool:
        """Whether the message *ident* came in the night (and is not seen yet)."""
        return any(item.get("id") == ident for item in self.items)

    def seen(self) -> bool:
        """The owner saw them: they go. False when there were none."""
        if not self.items:
            return False
        self.items = []
        return True

    def view(self) -> list[dict]:
        return [dict(item) for item in self.items]
