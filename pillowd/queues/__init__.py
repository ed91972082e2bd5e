"""Message queues the pillow consumes: the embedded SQLite one and Azure Storage."""

from .base import (MessageGone, MessageQueue, QueueAuthError, QueueError,
                   QueueMessage, QueueUnavailable)

__all__ = ["MessageGone", "MessageQueue", "QueueAuthError", "QueueError",
           "QueueMessage", "QueueUnavailable"]
