"""The queues one pillow's settings name, opened: its own, its poison queue, its
partners' (one each), and the family key beside their tokens."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import PillowError
from ..settings import Settings
from .local import LocalStore

log = logging.getLogger(__name__)


class Queues:
    """The queues one pillow uses: consumed, poison and its partners' (outbound),
    and the family key that signs and checks what partners send through them."""

    def __init__(self, main, poison, outbound=(), closers=(), family=None):
        self.main = main
        self.poison = poison
        self.outbound = list(outbound)  # one per partner; empty: hugs go nowhere
        self.family = family  # FamilyKey, or None: nothing signed, no partner trusted
        self._closers = list(closers)

    def close(self) -> None:
        for close in self._closers:
            close()
        self._closers.clear()


def open_queues(settings: Settings, environ=os.environ, *, family: bool = False) -> Queues:
    """The configured queues, created when missing; with *family*, the family key
    too (only the daemon signs and checks: send and poison need none)."""
    queues = _open_queues(settings, environ)
    try:
        if family:
            queues.family = family_key(settings, environ)
    except BaseException:
        queues.close()
        raise
    return queues


def family_key(settings: Settings, environ=os.environ):
    """The family key `pillowd pair` wrote beside the pillow's tokens (the systemd
    credential azure-queue-sas, else queue.sas_file), whatever the queue backend."""
    from .tokens import family_key as read

    return read(settings.queue.sas_file, _config_dir(settings), environ)


def _config_dir(settings: Settings):
    # sas_file is relative to the config file; "<defaults>" has none.
    return Path(settings.source).parent if not settings.source.startswith("<") else "."


def _open_queues(settings: Settings, environ) -> Queues:
    q = settings.queue
    if q.backend == "local":
        store = LocalStore(Path(settings.pillow.state_dir) / "queue.sqlite3")
        main, poison = store.queue(q.name), store.queue(settings.poison_name)
        outbound = [store.queue(name) for name in settings.outbound_names]
        for queue in (main, poison, *outbound):
            queue.create()
        return Queues(main, poison, outbound, [store.close])
    if q.backend == "azure":
        return _open_azure_queues(settings, environ)
    raise PillowError(f"queue backend {q.backend!r} is not available yet")


# The systemd credential (LoadCredential=) holding the connection string; the
# Azure SDK is imported only when the azure backend is used.
AZURE_CREDENTIAL = "azure-storage-connection-string"


def azure_account(settings: Settings, environ=os.environ):
    """The storage account from the first credential source that is there
    (pillowd.queues.azure.open_account says in which order)."""
    from .azure import open_account

    q = settings.queue
    return open_account(connection_string_env=q.connection_string_env,
                        account_url=q.account_url, sas_file=q.sas_file,
                        config_dir=_config_dir(settings), environ=environ)


def _open_azure_queues(settings: Settings, environ) -> Queues:
    from .base import QueueUnavailable

    # azure-core logs every request and its headers at INFO; the poll would flood
    # the journal. Its URLs have the SAS signature redacted, but WARNING keeps even
    # that out.
    logging.getLogger("azure").setLevel(logging.WARNING)
    q = settings.queue
    account = azure_account(settings, environ)
    main, poison = account.queue(q.name), account.queue(settings.poison_name)
    outbound = [account.queue(name, sends_only=True) for name in settings.outbound_names]
    try:
        for queue in (main, poison, *outbound):
            queue.create()
    except QueueUnavailable as err:
        # Unreachable now is not fatal: each queue is made on first use, the loop
        # retries and the page shows why it is offline. A refused credential
        # (QueueAuthError) is: it stops the start with one line naming the source.
        log.warning("%s; the queues will be created once Azure answers", err)
    except BaseException:
        account.close()
        raise
    account.log_choice()   # which kind of credential, never the secret
    return Queues(main, poison, outbound, [account.close])


def partner_names(settings: Settings) -> dict[str, str]:
    """{outbound queue: the partner's name}, from the family roster ([partners.NAME],
    written by `pair`): never guessed from the pillow's own [pillow] name."""
    return {queue: name for name, queue in settings.roster.items()}
