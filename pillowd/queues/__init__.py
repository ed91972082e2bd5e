"""Message queues the pillow consumes: the embedded SQLite one and Azure Storage.

`base` is the contract (MessageQueue and its errors), `local` and `azure` its
backends, `tokens` a pillow's SAS tokens file; `configured` opens the queues a
pillow's settings name, `backoff` is how long the queue loop waits before it asks
again, `poison` the copy a message that cannot play is kept as.

May import: family, history (times), settings, errors, seams (floors below 4).
Must not import: messages or anything above: a queue carries text, it never reads it.
"""

from .base import (MessageGone, MessageQueue, QueueAuthError, QueueError,
                   QueueMessage, QueueUnavailable)

__all__ = ["MessageGone", "MessageQueue", "QueueAuthError", "QueueError",
           "QueueMessage", "QueueUnavailable"]
