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

import logging

log = logging.getLogger(__name__)


def build_conversation(settings, state_dir, outbound, family, partners, *, on_section,
                       quiet, hurry, on_hug, closing):
    """(the Outbox, or None without partners' queues, and the Conversation) for
    *settings*: *outbound* the partners' queues, *partners* {queue: partner's name},
    *family* the FamilyKey or None. *on_section(name, value)* hears the snapshot's
    ``outbox``, ``last_sent`` and ``while_quiet``; *closing* gets each closer."""
    from ..settings import ButtonSettings
    from .conversation import Conversation
    from .outbox import Outbox

    button = settings.button or ButtonSettings()  # /api/hug works without one
    outbox = None
    if outbound:
        outbox = Outbox(state_dir / "outbox.sqlite3", outbound, partners=partners,
                        sign=family.signed if family else lambda event: event,
                        on_status=lambda status: on_section("outbox", status))
        closing(outbox.close)
        on_section("outbox", outbox.status())
    conversation = Conversation(
        settings.pillow.name, window=button.reply_window_seconds,
        send_scene=button.send_scene, path=state_dir / "conversation.json",
        outbox=outbox, partners={p: q for q, p in partners.items()},
        family=family, roster_name=settings.roster_name,
        colors={name: p.color for name, p in settings.partners.items() if p.color},
        quiet=quiet,
        hurry=hurry, on_hug=on_hug, on_section=on_section)
    conversation.report()
    return outbox, conversation


def build_press(settings, conversation, *, play, pin_factory, trouble: list[str], closing):
    """(Hugs, the HugButton or None): a press from the page, Home Assistant or the
    [button], played through *play(data, source)* and sent by *conversation*. A
    button that cannot start is left out, with the reason added to *trouble*."""
    from ..settings import ButtonSettings
    from .press import HugButton, Hugs

    # Whether or not a button is fitted: POST /api/hug presses it too.
    hugs = Hugs(settings.button or ButtonSettings(), conversation=conversation, play=play)
    b = settings.button
    if b is None:
        return hugs, None
    try:
        button = HugButton(b.pin, pull_up=b.pull_up, bounce_seconds=b.bounce_seconds,
                           on_press=lambda hold: hugs.pressed("button", hold=hold),
                           pin_factory=pin_factory)
    except Exception as err:  # gpiozero's errors: pin busy, no such pin, ...
        why = f"cannot use GPIO{b.pin} for the hug button: {err}"
        log.error("%s; running without the button (/api/hug still works)", why)
        trouble.append(why)
        return hugs, None
    closing(button.close)
    return hugs, button
