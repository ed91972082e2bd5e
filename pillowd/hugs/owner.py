"""The owner's commands, run on the owner's computer with the account's key: pair, invite, revoke."""

from __future__ import annotations

import logging
import os
import sys

from ..errors import PillowError


# pair, invite and revoke take the account key from here, like the az CLI does.
OWNER_KEY_ENV = "AZURE_STORAGE_CONNECTION_STRING"


def owner_account(environ=os.environ):
    from ..queues.azure import AzureAccount

    logging.getLogger("azure").setLevel(logging.WARNING)  # no request-by-request log
    text = environ.get(OWNER_KEY_ENV, "").strip()
    if not text:
        raise PillowError(f"this needs the storage account's key: set ${OWNER_KEY_ENV} "
                          "to its connection string (portal: the storage account, "
                          "Access keys)")
    return AzureAccount.from_connection_string(
        text, f"the connection string in ${OWNER_KEY_ENV}")


def owner_command(options) -> int:
    from . import pairing

    account = owner_account()
    try:
        if options.command == "pair":
            # One key for the family: a second run keeps the one it wrote before.
            family = pairing.family_key_in(options.out, options.names)
            colors = pairing.partner_colors(options.color, options.names)
            files = pairing.pair(account, options.names, prefix=options.prefix,
                                 days=options.days, family_key=family, colors=colors)
            for name, pillow in files.items():
                folder = pillow.write(options.out)
                print(f"{name}: {folder / 'queue.toml'} and {folder / pairing.SAS_FILE}")
                for queue in pillow.replaced_invites:
                    print(f"{name}: the invite {name!r} on {queue} is now {name}'s pillow "
                          "policy: its links work as long as the pillow does "
                          f"(pillowd revoke {name} ends both)", file=sys.stderr)
            print("copy each folder to its pillow and there run: sudo pillowd join FOLDER "
                  "(docs/pairing.md)",
                  file=sys.stderr)
        elif options.command == "invite":
            invite_command(account, options)
        else:
            queues = pairing.revoke(account, options.name)
            name = pairing.pillow_name(options.name)
            if not queues:
                print(f"no stored access policy named {name!r} on any queue: "
                      "nothing to revoke", file=sys.stderr)
            for queue in queues:
                print(queue)
            if queues:
                print(f"revoked {name!r} on {len(queues)} queue(s); Azure may accept "
                      "its tokens for up to 30 s more. The name is not used again on "
                      "those queues (docs/pairing.md)", file=sys.stderr)
        return 0
    finally:
        account.close()


def invite_command(account, options, environ=os.environ) -> None:
    from . import pairing

    name = pairing.pillow_name(options.name)
    page = None
    if options.page or options.page_url:
        # Everything the page needs is read and checked first: a refusal here, or
        # a full queue in invite(), leaves the account as it was.
        from .sendpage import SendPage
        page = SendPage.open(environ.get(OWNER_KEY_ENV, ""), account, options.page_url)
    try:
        made = pairing.invite(account, options.name, to=options.to,
                              prefix=options.prefix, days=options.days)
        for url in made.urls.values():
            print(url)
        if page is None:
            print(f"send with: pillowd send hug --from {name} --queue-url URL, or curl "
                  f"(docs/pairing.md); stop with: pillowd revoke {name}", file=sys.stderr)
            return
        try:
            page.publish()
        except PillowError as err:
            raise PillowError(f"{err} (the invite is made: the same command again "
                              "finishes the page)") from None
        print(page.link(made, options.name.strip()))
        print(f"the last line is the link for {name}'s phone: it opens the send page "
              f"on {page.origin} and carries the invite; stop with: pillowd revoke {name}",
              file=sys.stderr)
    finally:
        if page is not None:
            page.close()
