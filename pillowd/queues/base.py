"""What every queue backend offers: Azure Storage Queue semantics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ..errors import PillowError


class QueueError(PillowError):
    """A queue could not do what was asked."""


class QueueUnavailable(QueueError, ConnectionError):
    """The queue cannot be reached just now; try again later."""


class QueueAuthError(QueueError, PermissionError):
    """The queue refused the credentials; retrying will not help."""


class MessageGone(QueueError, LookupError):
    """The message was deleted, or its pop receipt is stale (it was received again)."""


@dataclass(frozen=True)
class QueueMessage:
    """One received message: its text as stored, and the handle to settle it."""

    id: str
    body: str
    dequeue_count: int
    inserted_on: datetime          # timezone-aware UTC
    pop_receipt: str | None = None  # None when only peeked


class MessageQueue(Protocol):
    """A named queue. Times are seconds; bodies are text, as Azure keeps them."""

    name: str

    def create(self) -> None:
        """Make the queue if it does not exist yet."""

    def put(self, body: str, ttl: float | None = None) -> str:
        """Add a message living *ttl* seconds (None: 7 days, -1: forever); returns its id."""

    def receive(self, max_messages: int = 32,
                visibility_timeout: float = 30) -> list[QueueMessage]:
        """Take up to *max_messages*, hidden from others for *visibility_timeout*."""

    def delete(self, message: QueueMessage) -> None:
        """Remove a received message for good (MessageGone if the receipt is stale)."""

    def release(self, message: QueueMessage, delay: float = 0) -> None:
        """Let a received message be seen again after *delay* seconds."""

    def peek(self, max_messages: int = 32) -> list[QueueMessage]:
        """Look at messages without taking them."""

    def clear(self) -> None:
        """Remove every message."""

    def close(self) -> None:
        """Let go of connections; safe twice."""
