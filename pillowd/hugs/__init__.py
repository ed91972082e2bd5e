"""Hugs between pillows: the conversation, the outbox, pairing, join and the send page.

`conversation` is what one pillow says to its partners and hears back (who it
answers, what became of what it sent, what came in the night, how that is kept);
`outbox` delivers hug events and receipts to the partners' queues; `pairing` is
`pillowd pair`/`invite`/`revoke` on the owner's computer; `join` installs pair's
files on a pillow; `sendpage` publishes the friend's send page, whose files are
in `_send/`.

May import: the page (its address), config, queues, leds, body, messages,
history, family, settings, errors, seams (floors below 8).
Must not import: the player, consumer, snapshot or daemon: the daemon hands the
conversation its outbox, family key and callbacks, and the player asks it.

The daemon builds the hugs with build_conversation() and build_press().
"""
