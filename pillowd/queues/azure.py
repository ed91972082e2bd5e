"""Azure Storage Queues through the azure-storage-queue v12 SDK, with the embedded queue's errors."""

from __future__ import annotations

import errno
import logging
import math
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from azure.core.exceptions import (AzureError, ClientAuthenticationError,
                                   HttpResponseError, ResourceExistsError,
                                   ServiceRequestError, ServiceResponseError)
from azure.storage.queue import LinearRetry, QueueClient, QueueServiceClient

from ..errors import PillowError
from .base import (MessageGone, QueueAuthError, QueueError, QueueMessage,
                   QueueUnavailable)
from .tokens import SAS_CREDENTIAL, read_tokens, tokens_source  # noqa: F401
from .tokens import credential as _credential

log = logging.getLogger(__name__)

# The SDK's own defaults (10 retries, 15 s apart, 60 s reads) would hide an outage
# inside one poll for minutes. One quick retry absorbs a stale keep-alive connection;
# after that the consumer's back-off decides when to try again and the page says so.
CONNECTION_TIMEOUT = 5
READ_TIMEOUT = 15
RETRY = dict(backoff=0.2, random_jitter_range=0.1, retry_total=1, retry_connect=1,
             retry_read=1, retry_status=0)

def _client_options() -> dict:
    # No encode/decode policy: bodies go and come as the text stored, and
    # messages.unwrap tells base64 from plain per message, as senders differ.
    return dict(retry_policy=LinearRetry(**RETRY), connection_timeout=CONNECTION_TIMEOUT,
                read_timeout=READ_TIMEOUT, message_encode_policy=None,
                message_decode_policy=None)


def _utc(when: datetime | None) -> datetime:
    if when is None:
        return datetime.now(timezone.utc)
    if when.tzinfo is None:
        return when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)


def _network_reason(err: BaseException) -> str:
    """Why a request never got an answer, in words that carry no URL or secret."""
    seen = set()
    stack = [err]
    while stack:
        cause = stack.pop()
        if cause is None or id(cause) in seen:
            continue
        seen.add(id(cause))
        if isinstance(cause, ConnectionRefusedError) or getattr(
                cause, "errno", None) == errno.ECONNREFUSED:
            return "connection refused"
        if isinstance(cause, (socket.timeout, TimeoutError)):
            return "timed out"
        if isinstance(cause, socket.gaierror):
            return "host name not found"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
        stack.extend([cause.__cause__, cause.__context__, *(
            a for a in getattr(cause, "args", ()) if isinstance(a, BaseException))])
        inner = getattr(cause, "inner_exception", None) or getattr(cause, "reason", None)
        if isinstance(inner, BaseException):
            stack.append(inner)
    text = str(err).lower()
    for words, reason in (("refused", "connection refused"), ("timed out", "timed out"),
                          ("timeout", "timed out"), ("reset", "connection reset"),
                          ("aborted", "connection closed"),
                          ("remotedisconnected", "connection closed"),
                          ("name or service", "host name not found")):
        if words in text:
            return reason
    return f"no answer ({type(err).__name__})"


class AzureAccount:
    """A storage account's queue service, and the credential source it was opened with.

    *source* names where the credential came from ("connection string from
    $AZURE_STORAGE_CONNECTION_STRING") so a refusal can say which one failed.
    """

    def __init__(self, service: QueueServiceClient | None, source: str,
                 tokens: dict[str, str] | None = None, url: str | None = None,
                 kind: str | None = None):
        self.service = service  # None with per-queue tokens: no account-wide credential
        self.source = source
        # What sort of credential it is, for the log: never the secret itself.
        self.kind = kind or ("per-queue SAS tokens" if tokens is not None
                             else "the account key (a connection string)")
        self.unused: str | None = None   # a credential there that was passed over
        self.url = url if service is None else service.url
        self.host = urlsplit(self.url).netloc if service is None else service.primary_hostname
        # {queue: SAS token} when each queue has its own (pillowd pair's); then no
        # queue is ever created: the tokens cannot, and pair made them.
        self.tokens = tokens
        self._clients: list[QueueClient] = []

    @property
    def per_queue_tokens(self) -> bool:
        return self.tokens is not None

    @classmethod
    def from_connection_string(cls, connection_string: str, source: str) -> "AzureAccount":
        try:
            service = QueueServiceClient.from_connection_string(
                connection_string.strip(), **_client_options())
        except (ValueError, AzureError):
            raise QueueAuthError(f"azure: {source} is not a valid storage connection "
                                 "string") from None
        return cls(service, source)

    @classmethod
    def from_url(cls, account_url: str, credential=None, *,
                 source: str, kind: str | None = None) -> "AzureAccount":
        try:
            service = QueueServiceClient(account_url, credential=credential,
                                         **_client_options())
        except (ValueError, AzureError):
            raise QueueAuthError(f"azure: {source}: queue.account_url is not a usable "
                                 "account URL") from None
        return cls(service, source, kind=kind)

    @classmethod
    def from_tokens(cls, account_url: str, tokens: dict[str, str], *,
                    source: str) -> "AzureAccount":
        parts = urlsplit(account_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise QueueAuthError(f"azure: {source}: the account URL must be "
                                 "https://ACCOUNT.queue.core.windows.net, without a SAS")
        return cls(None, source, tokens, url=account_url.rstrip("/") + "/")

    def queue(self, name: str, *, sends_only: bool = False) -> "AzureQueue":
        """Queue *name*; *sends_only*: the pillow only adds to it (a partner's)."""
        if self.tokens is not None and name not in self.tokens:
            raise QueueAuthError(f"azure: {self.source} has no token for queue {name!r}")
        return AzureQueue(self, name, sends_only=sends_only)

    def client(self, name: str) -> QueueClient:
        """The SDK's client for queue *name*, with that queue's own token if any."""
        if self.tokens is None:
            return self.service.get_queue_client(
                name, message_encode_policy=None, message_decode_policy=None)
        try:
            client = QueueClient(self.url, name, credential=self.tokens[name],
                                 **_client_options())
        except ValueError:
            raise QueueAuthError(f"azure: {self.source}: the token for queue {name!r} "
                                 "is not usable") from None
        self._clients.append(client)  # each has its own connections to close
        return client

    def log_choice(self) -> None:
        """Logs the kind of credential in use and where it came from, never the
        secret; the daemon calls it once its queues are checked, so that a refused
        one is the start's one error line instead."""
        log.info("azure credential: %s, from %s%s", self.kind, self.source,
                 f"; {self.unused}" if self.unused else "")

    def close(self) -> None:
        for client in [*self._clients, *([self.service] if self.service else [])]:
            try:
                client.close()
            except Exception:  # closing must never fail a shutdown
                pass
        self._clients.clear()

    def error(self, err: Exception, what: str, source: str | None = None) -> QueueError:
        """The PillowError for an SDK error *err* met while doing *what* (with the
        credential *source*, default the account's)."""
        if isinstance(err, (ServiceRequestError, ServiceResponseError)):
            return QueueUnavailable(f"azure: {what}: cannot reach {self.host}: "
                                    f"{_network_reason(err)}")
        if isinstance(err, HttpResponseError):
            status, code = err.status_code, error_code(err)
            answer = " ".join(str(part) for part in (status, code) if part) or "no token"
            if code == "AuthorizationPermissionMismatch":
                # The credential is good but lacks this one permission: not a
                # revocation, and the pillow's other work goes on.
                hint = (f"; tokens from an older `pillowd pair` lack it: {PAIR_AGAIN}"
                        if self.per_queue_tokens else "")
                return QueueAuthError(f"azure: {what}: {source or self.source} does "
                                      f"not allow it ({answer}){hint}")
            if isinstance(err, ClientAuthenticationError) or status in (401, 403):
                return QueueAuthError(f"azure: {source or self.source} was refused "
                                      f"({answer})")
            if status in (408, 429) or (status or 0) >= 500:
                return QueueUnavailable(f"azure: {what}: the service answered {answer}; "
                                        "backing off")
            return QueueError(f"azure: {what}: the service answered {answer}")
        if isinstance(err, AzureError):
            return QueueUnavailable(f"azure: {what}: {type(err).__name__}")
        return QueueUnavailable(f"azure: {what}: {_network_reason(err)}")


def error_code(err: Exception) -> str | None:
    """Azure's error code ("QueueNotFound"); the SDK gives an enum or a string."""
    code = getattr(err, "error_code", None)
    if code is None and getattr(err, "response", None) is not None:
        code = err.response.headers.get("x-ms-error-code")
    return str(getattr(code, "value", code)) if code else None


# What mends a pillow's token that lacks a permission: new tokens, installed.
PAIR_AGAIN = ("pair this pillow again (pillowd pair NAME PARTNER...) and install its "
              "folder (sudo pillowd join DIR)")
# A message that cannot exist: deleting it tries process, updating it update, and
# Azure answers MessageNotFound once the token may (no message is touched).
NO_MESSAGE = ("00000000-0000-0000-0000-000000000000", "AgAAAAMAAAAAAAAAAAAAAAAAAAA=")


class AzureQueue:
    """A named Azure Storage Queue; made on first use when it does not exist yet,
    unless the account has per-queue tokens (those cannot make queues)."""

    def __init__(self, account: AzureAccount, name: str, *, sends_only: bool = False):
        self.account = account
        self.name = name
        # A partner's queue: its token may only add, so a refused read is expected.
        self.sends_only = sends_only
        self.client: QueueClient = account.client(name)
        # A refused token is named by its queue: partners' tokens differ from ours.
        self._source = (f"{account.source}: the token for queue {name!r}"
                        if account.per_queue_tokens else None)

    def _call(self, what: str, operation, *, gone_ok: bool = False):
        """Run *operation*, making the queue once if it is missing (and may be made)."""
        for attempt in (1, 2):
            try:
                return operation()
            except (AzureError, OSError) as err:
                code = error_code(err)
                if code == "QueueNotFound" and attempt == 1 and not gone_ok \
                        and not self.account.per_queue_tokens:
                    self.create()
                    continue
                if gone_ok and code in ("MessageNotFound", "PopReceiptMismatch",
                                        "QueueNotFound"):
                    raise MessageGone(f"message is gone from {self.name!r} or was "
                                      "received again") from None
                raise self.account.error(err, f"{what} on queue {self.name!r}",
                                         self._source) from None

    def create(self) -> None:
        if self.account.per_queue_tokens:
            self._check_token()
            return
        try:
            self.client.create_queue()
        except ResourceExistsError:
            pass  # there already, with other metadata: still ours to use
        except (AzureError, OSError) as err:
            raise self.account.error(err, f"creating queue {self.name!r}") from None

    def _check_token(self) -> None:
        """With per-queue tokens the queue is pillowd pair's to make, not ours: its
        token is tried instead, so that a wrong or revoked token stops the start
        (AuthenticationFailed; so does a deleted queue, whose policies went with it),
        and so does one that cannot do what this queue is for: the pillow never
        says "online" on a queue it cannot take messages off. A partner's queue
        (*sends_only*) needs only add, which nothing but a real message proves: a
        refused read passes there, and its first hug says whether add works."""
        checks = [("read", "see its messages", self.client.get_queue_properties)]
        if not self.sends_only:
            checks.append(("process", "take messages off it",
                           lambda: self.client.delete_message(*NO_MESSAGE)))
        for permission, why, operation in checks:
            try:
                operation()
            except (AzureError, OSError) as err:
                code = error_code(err)
                if code in ("MessageNotFound", "PopReceiptMismatch"):
                    continue  # allowed: Azure went on to look for the message
                if code == "AuthorizationPermissionMismatch":
                    if self.sends_only:
                        return
                    raise QueueAuthError(
                        f"azure: {self._source or self.account.source} does not allow "
                        f"{permission}, which the pillow needs to {why} (403 "
                        f"AuthorizationPermissionMismatch): {PAIR_AGAIN}") from None
                raise self.account.error(err, f"checking queue {self.name!r}",
                                         self._source) from None

    def put(self, body: str, ttl: float | None = None) -> str:
        lifetime = None if ttl is None else (-1 if ttl == -1 else max(1, math.ceil(ttl)))
        sent = self._call("sending", lambda: self.client.send_message(
            body, time_to_live=lifetime))
        return sent.id

    def receive(self, max_messages: int = 32,
                visibility_timeout: float = 30) -> list[QueueMessage]:
        def one_page():
            # One request: iterating the pager itself would ask again after every
            # non-empty page, doubling the requests a busy poll makes.
            pages = self.client.receive_messages(
                messages_per_page=max(1, min(32, max_messages)),
                visibility_timeout=max(1, math.ceil(visibility_timeout))).by_page()
            return list(next(pages, []))
        return [self._message(m) for m in self._call("receiving", one_page)]

    def delete(self, message: QueueMessage) -> None:
        self._call("deleting", lambda: self.client.delete_message(
            message.id, message.pop_receipt), gone_ok=True)

    def release(self, message: QueueMessage, delay: float = 0) -> None:
        # update_message hands back a new pop receipt; the old one is stale from
        # now on, which is what a release means: whoever receives it next settles it.
        self._call("releasing", lambda: self.client.update_message(
            message.id, message.pop_receipt, visibility_timeout=max(0, math.ceil(delay))),
            gone_ok=True)

    def peek(self, max_messages: int = 32) -> list[QueueMessage]:
        peeked = self._call("peeking", lambda: self.client.peek_messages(
            max_messages=max(1, min(32, max_messages))))
        return [self._message(m, receipt=False) for m in peeked]

    def clear(self) -> None:
        self._call("clearing", self.client.clear_messages)

    def close(self) -> None:
        pass  # the account owns the connections

    @staticmethod
    def _message(m, receipt: bool = True) -> QueueMessage:
        return QueueMessage(id=m.id, body=m.content if m.content is not None else "",
                            dequeue_count=m.dequeue_count or 0,
                            inserted_on=_utc(m.inserted_on),
                            pop_receipt=m.pop_receipt if receipt else None)


# systemd credentials (LoadCredential=) the daemon reads from $CREDENTIALS_DIRECTORY.
CONNECTION_STRING_CREDENTIAL = "azure-storage-connection-string"


def open_account(*, connection_string_env: str, account_url: str, sas_file: str = "",
                 config_dir: str | Path = ".", environ=os.environ) -> AzureAccount:
    """The storage account from the first credential source that is there, and one
    log line naming the kind of credential chosen (never the secret).

    A pillow whose config names a *sas_file* (pillowd pair's) runs on its per-queue
    SAS tokens (the systemd credential azure-queue-sas, else *sas_file*, relative to
    *config_dir*), even with an account key in the environment: a pillow started in
    the owner's shell keeps the least privilege `pair` gave it. Otherwise, in order:
    the connection string in the env var *connection_string_env*, the systemd
    credential azure-storage-connection-string, *account_url* with a SAS, the
    per-queue tokens of the credential azure-queue-sas, and last *account_url* with
    the Azure identity chain. Each error names the source, never the secret.
    """
    env_name = connection_string_env
    key_in_env = bool(env_name and environ.get(env_name, "").strip())
    account = None
    if sas_file:
        account = _from_tokens(account_url, sas_file, config_dir, environ)
    if account is None:
        account = _first_source(env_name, key_in_env, account_url, sas_file, config_dir,
                                environ)
    if key_in_env and account.per_queue_tokens:
        account.unused = f"${env_name} is set and not used: queue.sas_file names this " \
                         "pillow's own tokens"
    return account


def _from_tokens(account_url, sas_file, config_dir, environ) -> AzureAccount | None:
    tokens_text, source = tokens_source(sas_file, config_dir, environ)
    if not tokens_text:
        return None
    if not account_url:
        raise PillowError(f"azure: {source} need queue.account_url "
                          "(https://ACCOUNT.queue.core.windows.net)")
    return AzureAccount.from_tokens(account_url, read_tokens(tokens_text, source),
                                    source=source)


def _first_source(env_name, key_in_env, account_url, sas_file, config_dir,
                  environ) -> AzureAccount:
    if key_in_env:
        return AzureAccount.from_connection_string(
            environ[env_name], f"connection string from ${env_name}")
    text = _credential(environ, CONNECTION_STRING_CREDENTIAL)
    if text:
        return AzureAccount.from_connection_string(
            text, f"connection string from the systemd credential "
                  f"{CONNECTION_STRING_CREDENTIAL}")
    if account_url and urlsplit(account_url).query:
        return AzureAccount.from_url(account_url, source="the SAS in queue.account_url",
                                     kind="an account SAS")
    account = _from_tokens(account_url, sas_file, config_dir, environ)
    if account is not None:
        return account
    if account_url:
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError:
            from ..seams.checkout import install_line
            raise PillowError("azure: queue.account_url has no SAS, and the Azure identity "
                              "chain needs azure-identity: " + install_line("identity")
                              ) from None
        return AzureAccount.from_url(account_url, DefaultAzureCredential(),
                                     source="the Azure identity chain for queue.account_url",
                                     kind="an Azure identity")
    raise PillowError(f"azure: no credentials: ${env_name or '(none)'} is not set, no "
                      f"systemd credential {CONNECTION_STRING_CREDENTIAL}, and "
                      "queue.account_url is empty")


def queue_from_url(url: str) -> AzureQueue:
    """The queue an invite URL names, with its token: the /messages endpoint invite
    prints (https://ACCOUNT.queue.core.windows.net/QUEUE/messages?SAS) or the bare
    queue URL. The URL is never quoted back, as it holds the token."""
    source = "the --queue-url"
    parts = urlsplit(url.strip())
    path = parts.path.rstrip("/").removesuffix("/messages")  # curl's URL works too
    account_path, _, queue = path.rpartition("/")
    if parts.scheme not in ("http", "https") or not parts.netloc or not queue:
        raise PillowError(f"azure: {source} is not a queue URL "
                          "(https://ACCOUNT.queue.core.windows.net/QUEUE/messages?SAS)")
    if not parts.query:
        raise PillowError(f"azure: {source} has no SAS token (the part after '?'): use "
                          "a URL printed by pillowd invite")
    account_url = f"{parts.scheme}://{parts.netloc}{account_path}"
    return AzureAccount.from_tokens(account_url, {queue: parts.query},
                                    source=source).queue(queue)
