"""The poison queue: what a message that cannot play is kept as, and the owner's look at it."""

from __future__ import annotations

import hashlib
import json
import sys

from ..history import iso
from ..seams.printable import escape
from . import QueueError


# Azure keeps at most 64 KiB of UTF-8 text per message (Azurite refuses a little
# less for some text), so a poison copy stays well under it: the wrapper around a
# body near that size would be refused, and the message could never be settled.
POISON_MAX_BYTES = 60 * 1024


def poison_body(reason: str | None, original: str, queue: str, dequeue_count: int,
                at: str) -> str:
    """The poison queue's JSON for a rejected *original*; cut to fit under
    POISON_MAX_BYTES, then with the whole original's length in UTF-8 bytes and its
    sha256, so a person can still tell what it was (SPEC "Queue messages")."""
    fields = {"reason": reason, "original": original, "queue": queue,
              "dequeue_count": dequeue_count, "at": at}

    def dump(keep: int | None = None) -> tuple[str, int]:
        if keep is not None:
            fields["original"] = original[:keep]
        text = json.dumps(fields, ensure_ascii=False)
        return text, len(text.encode("utf-8", "surrogatepass"))

    text, size = dump()
    if size <= POISON_MAX_BYTES:
        return text
    raw = original.encode("utf-8", "surrogatepass")
    fields["original_bytes"] = len(raw)
    fields["original_sha256"] = hashlib.sha256(raw).hexdigest()
    low, high = 0, len(original)  # the longest head that fits: rare, so a search
    while low < high:
        middle = (low + high + 1) // 2
        if dump(middle)[1] <= POISON_MAX_BYTES:
            low = middle
        else:
            high = middle - 1
    return dump(low)[0]


def poison_wrapper(body: str) -> dict:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("original"), str):
        return data
    # Not ours (written by another tool): the body itself is the original.
    return {"reason": "(not written by pillowd)", "original": body}


def list_poison(queues) -> int:
    messages = queues.poison.peek(32)
    if not messages:
        print("the poison queue is empty")
        return 0
    for message in messages:
        data = poison_wrapper(message.body)
        original = escape(data["original"])  # a body of ESC sequences stays inert
        if len(original) > 80:
            original = original[:77] + "..."
        print(escape(f"{message.id}  {data.get('at', iso(message.inserted_on))}  "
                     f"{data.get('reason')}") + f"\n    {original}")
    if len(messages) == 32:
        print("(showing the first 32)")
    return 0


def requeue_poison(queues, wanted: str | None) -> int:
    moved = 0
    passed_over = []  # received on the way to *wanted*: shown again right after
    seen = set()
    try:
        while True:
            # Hidden only while this command looks (released at the end), so a
            # `poison list` right after still shows every message.
            batch = [m for m in queues.poison.receive(32, visibility_timeout=30)
                     if m.id not in seen]
            if not batch:
                break
            for message in batch:
                seen.add(message.id)
                if wanted and message.id != wanted:
                    passed_over.append(message)
                    continue
                data = poison_wrapper(message.body)
                if "original_sha256" in data:  # only the head of a body too large to keep
                    print(f"pillowd: {message.id} keeps only the first part of a message "
                          f"of {data.get('original_bytes')} bytes (cut to fit the poison "
                          "queue): left there", file=sys.stderr)
                    passed_over.append(message)
                    continue
                queues.main.put(data["original"])
                queues.poison.delete(message)  # after the put: never lost in between
                moved += 1
                print(message.id)
            if wanted and moved:
                break
    finally:
        for message in passed_over:
            try:
                queues.poison.release(message, delay=0)
            except QueueError:
                pass  # visible again by itself after the 30 s
    if wanted and not moved:
        print(f"pillowd: no message {wanted!r} in the poison queue", file=sys.stderr)
        return 1
    print(f"{moved} message(s) put back on {queues.main.name!r}", file=sys.stderr)
    return 0
