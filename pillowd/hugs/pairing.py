"""Sets pillows up to hug each other on Azure Storage: queues, stored access policies, SAS tokens."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PillowError
from ..family import TOKENS_ENTRY, FamilyKey
from ..seams.files import Files

if TYPE_CHECKING:
    from azure.storage.queue import AccessPolicy

    from ..queues.azure import AzureAccount

# The Azure SDK is imported by the functions that talk to Azure: the command line
# reads this module's defaults for its help, and a pillow's start must not pay for it.

DEFAULT_PREFIX = "pillow-"
# Azure keeps at most five stored access policies per queue (the SDK checks only 15).
MAX_POLICIES = 5
# A pillow lives for years and revoke is how its access ends; an invite is short.
PAIR_DAYS = 3650
INVITE_DAYS = 7

# What each holder may do, as Azure spells queue SAS permissions (r, a, u, p).
# Update: a pillow gives back a message it took and could not settle (a restart
# after a crash, its own disk failing), instead of leaving it hidden for the rest
# of the visibility timeout. An older pair's "rp" is upgraded in place by a rerun.
OWN_QUEUE = "rup"       # receive, peek, give back and delete its hugs
OWN_QUEUE_BEFORE = ("rp",)  # what earlier versions of pair granted there
OWN_POISON = "rap"      # move a bad message there, list it, take it back out
PARTNER_QUEUE = "a"     # send a hug; never read it back

# Queue metadata listing the names revoked on that queue. A token is a signature
# over the queue and the policy's name, so a new policy of a revoked name would
# make the revoked tokens work again: pair and invite refuse such a name.
REVOKED_KEY = "pillowd_revoked"

_QUEUE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
SAS_FILE = "queue-sas.toml"


class PairingError(PillowError, ValueError):
    """A pairing, invite or revoke cannot be done as asked; nothing was changed."""


class QueueFull(PairingError):
    """A queue already holds the five stored access policies Azure allows."""


@dataclass(frozen=True)
class PillowFiles:
    """What one pillow needs: its config keys, its SAS tokens ({queue: token}) and
    the key its family signs partner events with."""

    name: str
    queue_toml: str
    tokens: dict[str, str] = field(repr=False)  # secrets: never in a repr or log
    family_key: FamilyKey | None = None
    # Partners' queues where an invite of this name became the pillow's policy.
    replaced_invites: tuple[str, ...] = ()

    @property
    def sas_toml(self) -> str:
        lines = [f"# SAS tokens of pillow {self.name!r}, written by pillowd pair. Keep secret:",
                 "# each is bound to the stored access policy named after the pillow."]
        # JSON strings are TOML basic strings (tokens are plain ASCII anyway).
        lines += [f"{json.dumps(queue)} = {json.dumps(token)}"
                  for queue, token in self.tokens.items()]
        if self.family_key is not None:
            lines += ["# The family's key: signs this pillow's hugs; the same in every "
                      "pillow of the family.",
                      f"{TOKENS_ENTRY} = {json.dumps(self.family_key.text())}"]
        return "\n".join(lines) + "\n"

    def write(self, directory: str | Path) -> Path:
        """Writes DIRECTORY/NAME/queue.toml and queue-sas.toml (mode 0600); returns the folder."""
        folder = Path(directory) / self.name
        folder.mkdir(parents=True, exist_ok=True)
        Files({folder / "queue.toml": (self.queue_toml, 0o644),
               folder / SAS_FILE: (self.sas_toml, 0o600)}).install()
        return folder


def pillow_name(name: str) -> str:
    """*name* lower-cased, or PairingError when it cannot name a pillow or an invite."""
    folded = name.strip().lower()
    # It names a stored access policy (at most 64 characters) and, for a pillow, part
    # of a queue name: letters, digits and single inner hyphens keep both valid.
    if not re.fullmatch(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){0,62}", folded):
        raise PairingError(f"bad name {name!r}: use letters, digits and single hyphens, "
                           "starting and ending with a letter or digit")
    return folded


def queue_name(prefix: str, name: str, suffix: str = "") -> str:
    """The queue prefix+name+suffix, or PairingError naming Azure's rule it breaks."""
    queue = f"{prefix.lower()}{name}{suffix}"
    if not _QUEUE_NAME.match(queue):
        raise PairingError(f"bad queue name {queue!r} (from prefix {prefix!r} and name "
                           f"{name!r}): Azure wants 3-63 lowercase letters, digits and "
                           "single hyphens, starting and ending with a letter or digit")
    return queue


def _account_key(account: AzureAccount) -> tuple[str, str]:
    credential = account.service.credential
    key = getattr(credential, "account_key", None)
    if not key:
        raise PairingError(f"azure: {account.source} holds no account key (AccountKey=...): "
                           "stored access policies and their tokens need it")
    try:
        base64.b64decode(key, validate=True)
    except ValueError:
        # The SDK would fail later with no word about why; the key is never quoted.
        raise PairingError(f"azure: the AccountKey in {account.source} is not base64: "
                           "copy it again (portal: the storage account, Access keys)"
                           ) from None
    return credential.account_name, key


def _expiry(days: float) -> datetime:
    if not 0 < days <= 36500:
        raise PairingError(f"days must be between 1 and 36500, not {days:g}")
    # Whole seconds: Azure keeps no more, and a rerun compares what it sent with it.
    return (datetime.now(timezone.utc) + timedelta(days=days)).replace(microsecond=0)


def _permission(text: str | None) -> str:
    from azure.storage.queue import QueueSasPermissions
    return str(QueueSasPermissions.from_string(text or ""))


class _Policies:
    """Every touched queue's stored access policies: read all first, then change all."""

    def __init__(self, account: AzureAccount):
        self.account = account
        self.before: dict[str, dict[str, AccessPolicy] | None] = {}  # None: no queue yet
        self.after: dict[str, dict[str, AccessPolicy]] = {}
        self.granted: list[str] = []  # only these are created or changed
        self.revoked: dict[str, set[str]] = {}

    def read(self, queue: str) -> dict[str, AccessPolicy] | None:
        from azure.core.exceptions import AzureError

        from ..queues.azure import error_code
        if queue not in self.before:
            client = self.account.service.get_queue_client(queue)
            try:
                self.before[queue] = client.get_queue_access_policy()
                self.revoked[queue] = _revoked(client.get_queue_properties().metadata)
            except AzureError as err:
                if error_code(err) == "QueueNotFound":
                    self.before[queue] = None
                    self.revoked[queue] = set()
                else:
                    raise self.account.error(err, f"reading the policies of {queue!r}") \
                        from None
            self.after[queue] = dict(self.before[queue] or {})
        return self.before[queue]

    def grant(self, queue: str, holder: str, permission: str, days: float | None,
              default_days: float) -> None:
        """Gives *holder* *permission* on *queue*. A policy already there keeps its
        expiry unless *days* is given (then it is renewed to now + days)."""
        from azure.storage.queue import AccessPolicy
        self.read(queue)
        if holder in self.revoked[queue]:
            raise PairingError(f"{holder!r} was revoked on queue {queue!r}: a new policy "
                               "of that name would make its old tokens work again; "
                               "choose another name")
        if queue not in self.granted:
            self.granted.append(queue)
        policies = self.after[queue]
        old = policies.get(holder)
        if old is not None and _permission(old.permission) == permission and days is None:
            return
        expiry = _expiry(days if days is not None else default_days)
        if old is not None and days is None:
            expiry = old.expiry  # only the permission is put right
        policies[holder] = AccessPolicy(permission=permission, expiry=expiry,
                                        start=old.start if old is not None else None)

    def holder_permission(self, queue: str, holder: str) -> str | None:
        self.read(queue)
        policy = (self.before[queue] or {}).get(holder)
        return None if policy is None else _permission(policy.permission)

    def _granted(self):
        return [(queue, self.after[queue]) for queue in self.granted]

    def check_room(self) -> None:
        full = [f"{queue!r} ({', '.join(sorted(policies))})"
                for queue, policies in self._granted() if len(policies) > MAX_POLICIES]
        if full:
            raise QueueFull(
                f"queue{'s' if len(full) > 1 else ''} {'; '.join(full)} would need more "
                f"than the {MAX_POLICIES} stored access policies Azure allows per queue; "
                "nothing was changed (pillowd revoke NAME frees one)")

    def apply(self) -> list[str]:
        """Creates missing queues and writes changed policy sets; returns those queues."""
        from azure.core.exceptions import AzureError, ResourceExistsError
        changed = []
        for queue, policies in self._granted():
            before = self.before[queue]
            client = self.account.service.get_queue_client(queue)
            try:
                if before is None:
                    try:
                        client.create_queue()
                    except ResourceExistsError:
                        pass  # made by someone else meanwhile: just as good
                if before is None or _shape(before) != _shape(policies):
                    client.set_queue_access_policy(policies)
                    changed.append(queue)
            except AzureError as err:
                raise self.account.error(err, f"setting up queue {queue!r}") from None
        return changed


def _shape(policies: dict[str, AccessPolicy]) -> dict:
    def when(value):
        if isinstance(value, datetime):
            return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return value
    return {name: (_permission(p.permission), when(p.expiry), when(p.start))
            for name, p in policies.items()}


def family_key_in(directory: str | Path, names: list[str]) -> FamilyKey | None:
    """The family key already in DIRECTORY/NAME/queue-sas.toml of the pillows *names*
    (a second run keeps it); None when none has one; PairingError when they differ,
    or one cannot be read: then nothing is changed."""
    from ..queues.tokens import read_family_key

    found: dict[str, Path] = {}
    for raw in names:
        path = Path(directory) / pillow_name(raw) / SAS_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as err:
            raise PairingError(f"cannot read {path} for its family key: "
                               f"{getattr(err, 'strerror', None) or type(err).__name__}"
                               ) from None
        try:
            key = read_family_key(text, str(path))
        except PillowError as err:
            raise PairingError(str(err)) from None
        if key is not None:
            found.setdefault(key.text(), path)
    if len(found) > 1:
        raise PairingError(f"{' and '.join(str(p) for p in found.values())} hold different "
                           "family keys: one family has one key; move the folders of "
                           "the other family away (or pair into another --out)")
    return FamilyKey.from_text(next(iter(found))) if found else None


_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


def partner_colors(given: list[str] | None, names: list[str]) -> dict[str, str]:
    """`--color bob=#3366ff` options as {pillow: colour}; PairingError for a name
    not paired or a colour that is not #rrggbb."""
    pillows = [pillow_name(n) for n in names]
    colors = {}
    for item in given or []:
        name, sep, color = item.partition("=")
        if not sep:
            raise PairingError(f"--color {item!r}: write NAME=#RRGGBB, like bob=#3366ff")
        name = pillow_name(name)
        if name not in pillows:
            raise PairingError(f"--color {item!r}: {name!r} is not one of the pillows "
                               f"paired ({', '.join(pillows)})")
        if not _COLOR.match(color.strip()):
            raise PairingError(f"--color {item!r}: {color!r} is not a colour like #3366ff")
        colors[name] = color.strip().lower()
    return colors


def pair(account: AzureAccount, names: list[str], *, prefix: str = DEFAULT_PREFIX,
         days: float | None = None, family_key: FamilyKey | None = None,
         colors: dict[str, str] | None = None) -> dict[str, PillowFiles]:
    """Sets up *names* to hug each other; returns each pillow's files by name.

    Creates the missing queues PREFIX+NAME and PREFIX+NAME-poison and one stored
    access policy per pillow on each queue it may touch. Every queue's policies are
    read, and checked against Azure's limit, before anything changes. A policy that
    is already there keeps its expiry unless *days* is given; so a second run with
    the same names changes nothing, and writes the same tokens. Every pillow gets
    *family_key* (a new one when None) to sign its hugs with, and the family's
    roster: each partner's name, queue, and colour from *colors* ({pillow: #rrggbb}).
    """
    pillows = []
    for raw in names:
        name = pillow_name(raw)
        if name in pillows:
            raise PairingError(f"{name!r} is named twice")
        pillows.append(name)
    if len(pillows) < 2:
        raise PairingError("pair needs at least two pillows")
    queues = {n: (queue_name(prefix, n), queue_name(prefix, n, "-poison")) for n in pillows}
    account_name, key = _account_key(account)
    from azure.storage.queue import generate_queue_sas

    policies = _Policies(account)
    replaced: dict[str, list[str]] = {name: [] for name in pillows}
    for name in pillows:
        own, poison = queues[name]
        # Not a pillow yet: a policy of its name on a partner's queue is an invite's
        # (add only, days long). It becomes the pillow's, expiry and all: keeping
        # the invite's would cut the new pillow off when the invite ends. The token
        # is the same (a signature over queue and name), so the invite's links
        # now work as long as the pillow does.
        joining = policies.holder_permission(own, name) is None
        policies.grant(own, name, OWN_QUEUE, days, PAIR_DAYS)
        policies.grant(poison, name, OWN_POISON, days, PAIR_DAYS)
        for partner in pillows:
            if partner == name:
                continue
            queue = queues[partner][0]
            if joining and policies.holder_permission(queue, name) is not None:
                replaced[name].append(queue)
                policies.grant(queue, name, PARTNER_QUEUE,
                               days if days is not None else PAIR_DAYS, PAIR_DAYS)
            else:
                policies.grant(queue, name, PARTNER_QUEUE, days, PAIR_DAYS)
    policies.check_room()
    policies.apply()

    account_url = account.service.url.split("?", 1)[0]
    family_key = family_key or FamilyKey.generate()
    files = {}
    for name in pillows:
        own, poison = queues[name]
        roster = {p: queues[p][0] for p in pillows if p != name}
        touched = [own, poison, *roster.values()]
        # Bound to the policy only (no permission or expiry in the token): the same
        # token comes out every run, and revoke or renewal acts on all of them.
        tokens = {q: generate_queue_sas(account_name, q, key, policy_id=name)
                  for q in touched}
        files[name] = PillowFiles(name, _queue_toml(name, account_url, own, poison,
                                                    roster, colors or {}),
                                  tokens, family_key,
                                  tuple(replaced[name]))
    return files


def _queue_toml(name, account_url, own, poison, roster: dict[str, str],
                colors: dict[str, str]) -> str:
    """The config keys of pillow *name*: its name, its queues, and the family's
    roster ([partners.NAME]: each partner's queue, and colour when given)."""
    partners = []
    for partner, queue in roster.items():
        partners += ["", f"[partners.{partner}]", f"queue = {json.dumps(queue)}"]
        if partner in colors:
            partners.append(f"color = {json.dumps(colors[partner])}")
    return (f"# Written by pillowd pair for pillow {name!r}: pillowd join installs it as\n"
            "# config.d/50-pair.toml (or put these keys into its config.toml, and\n"
            "# queue-sas.toml beside it or as the systemd credential azure-queue-sas).\n"
            "[pillow]\n"
            f"name = {json.dumps(name)}          # what the pillow shows: yours to change\n"
            f"roster_name = {json.dumps(name)}   # what its partners call it: leave it\n"
            "\n"
            "[queue]\n"
            'backend = "azure"\n'
            f"account_url = {json.dumps(account_url)}\n"
            f"name = {json.dumps(own)}\n"
            f"poison_name = {json.dumps(poison)}\n"
            f"sas_file = {json.dumps(SAS_FILE)}\n"
            "\n"
            "# The family: where a hug for each partner goes (and its hugs' colour here).\n"
            + "\n".join(partners[1:]) + "\n")


def pillow_queues(account: AzureAccount, prefix: str = DEFAULT_PREFIX) -> list[str]:
    """The pillows' main queues under *prefix*: those holding their owner's policy."""
    from azure.core.exceptions import AzureError
    try:
        names = [q.name for q in account.service.list_queues(name_starts_with=prefix.lower())]
    except AzureError as err:
        raise account.error(err, "listing queues") from None
    policies = _Policies(account)
    found = []
    for queue in names:
        owner = queue[len(prefix):]
        if not queue.endswith("-poison") and policies.holder_permission(queue, owner) \
                in {_permission(p) for p in (OWN_QUEUE, *OWN_QUEUE_BEFORE)}:
            found.append(queue)
    return found


@dataclass(frozen=True)
class Invite:
    """What an invite lets its holder do: add messages to each pillow's queue until
    that queue's policy expires. *urls* are {pillow: the queue's /messages endpoint
    with the SAS}, which a plain HTTP POST of Azure's message XML uses as it is."""

    name: str
    urls: dict[str, str]
    expires: dict[str, datetime]


def invite(account: AzureAccount, name: str, *, to: list[str] | None = None,
           prefix: str = DEFAULT_PREFIX, days: float | None = None) -> Invite:
    """Lets *name* add messages to the pillows *to* (default: every pillow under
    *prefix*). A second run changes nothing, and *days* renews the invite."""
    from azure.storage.queue import generate_queue_sas
    guest = pillow_name(name)
    account_name, key = _account_key(account)
    policies = _Policies(account)
    own = f"{prefix.lower()}{guest}"  # its queue, were the guest a pillow
    if _QUEUE_NAME.match(own) and policies.holder_permission(own, guest) is not None:
        raise PairingError(f"{guest!r} is a pillow: an invite needs a name of its own, "
                           "or revoking it would cut the pillow off too")
    if to:
        targets = [queue_name(prefix, pillow_name(n)) for n in to]
        for target, wanted in zip(targets, to):
            if policies.holder_permission(target, target[len(prefix):]) is None:
                raise PairingError(f"no pillow {wanted!r}: queue {target!r} is missing or "
                                   "not set up by pillowd pair")
    else:
        targets = pillow_queues(account, prefix)
        if not targets:
            raise PairingError(f"no pillows to invite to: no queue {prefix}NAME set up by "
                               "pillowd pair")
    for target in targets:
        held = policies.holder_permission(target, guest)
        if held not in (None, PARTNER_QUEUE):
            raise PairingError(f"{guest!r} already holds {held!r} on queue {target!r}; "
                               "choose another name for the invite")
        policies.grant(target, guest, PARTNER_QUEUE, days, INVITE_DAYS)
    policies.check_room()
    policies.apply()
    base = account.service.url.split("?", 1)[0].rstrip("/")
    pillows = {target: target[len(prefix):] for target in targets}
    return Invite(
        guest,
        {pillows[t]: f"{base}/{t}/messages?"
                     f"{generate_queue_sas(account_name, t, key, policy_id=guest)}"
         for t in targets},
        {pillows[t]: _when(policies.after[t][guest].expiry) for t in targets})


def _when(value) -> datetime:
    """A policy's expiry as a UTC datetime (Azure gives back ISO text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.astimezone(timezone.utc)


def _revoked(metadata: dict | None) -> set[str]:
    return {n for n in (metadata or {}).get(REVOKED_KEY, "").split(",") if n}


def revoke(account: AzureAccount, name: str) -> list[str]:
    """Deletes every stored access policy named *name* on every queue of the account
    and notes *name* on those queues (so that it is never re-made); returns them.
    Azure may honour old tokens for up to 30 s more."""
    from azure.core.exceptions import AzureError

    from ..queues.azure import error_code
    holder = pillow_name(name)
    try:
        queues = list(account.service.list_queues(include_metadata=True))
    except AzureError as err:
        raise account.error(err, "listing queues") from None
    revoked = []
    for found in queues:
        queue = found.name
        client = account.service.get_queue_client(queue)
        try:
            policies = client.get_queue_access_policy()
            if holder in policies:
                # Noted first: a failure in between leaves the name refused, not
                # the policy deleted and the name free to be made again.
                metadata = dict(found.metadata or {})
                metadata[REVOKED_KEY] = ",".join(sorted(_revoked(metadata) | {holder}))
                client.set_queue_metadata(metadata)
                del policies[holder]
                client.set_queue_access_policy(policies)
                revoked.append(queue)
        except AzureError as err:
            if error_code(err) == "QueueNotFound":
                continue  # deleted while we looked: nothing left to revoke on it
            raise account.error(err, f"revoking {holder!r} on {queue!r}") from None
    return revoked
