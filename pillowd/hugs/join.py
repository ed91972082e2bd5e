"""`pillowd join`: makes the installed service run on the folder `pillowd pair` wrote for one pillow."""

from __future__ import annotations

import json
import os
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..config import DROP_IN_DIR, ConfigError, drop_ins, parse, read
from ..errors import PillowError
from ..family import TOKENS_ENTRY, FamilyKey
from ..page.addresses import local_url
from ..seams.files import Files
from ..settings import Settings
from .pairing import SAS_FILE

QUEUE_FILE = "queue.toml"
# The pillow's keys, as a drop-in: a later file (90-local.toml) may still override them.
DROP_IN = "50-pair.toml"
UNIT = "pillowd.service"
READY_SECONDS = 90.0


class JoinError(PillowError, ValueError):
    """The folder cannot be joined; nothing was installed."""


@dataclass(frozen=True)
class Folder:
    """What `pair` wrote for one pillow: its config keys and its tokens (secret)."""

    path: Path
    keys: str
    tokens: str

    @classmethod
    def read(cls, path: str | Path) -> "Folder":
        path = Path(path)
        texts = []
        for name in (QUEUE_FILE, SAS_FILE):
            try:
                texts.append((path / name).read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise JoinError(f"{path} has no {name}: give the folder pillowd pair "
                                "wrote for this pillow (OUT/NAME)") from None
            except (OSError, UnicodeDecodeError) as err:
                raise JoinError(f"cannot read {path / name}: "
                                f"{getattr(err, 'strerror', None) or err}") from None
        return cls(path, *texts)


def settings_with(config: Path, folder: Folder) -> Settings:
    """The settings the service will run on: the config, its other drop-ins, and the
    folder's keys as config.d/50-pair.toml. ConfigError names the file and line."""
    ours = config.parent / DROP_IN_DIR / DROP_IN
    try:
        text = config.read_text(encoding="utf-8")
    except OSError as err:
        raise JoinError(f"cannot read the config {config}: {err.strerror or err} "
                        "(is pillowd installed? sudo ./install.sh)") from None
    try:
        extra = [(str(p), read(p, config, str(p))) for p in drop_ins(config)
                 if p != ours]
        extra.append((str(folder.path / QUEUE_FILE), folder.keys))
        extra.sort(key=lambda item: DROP_IN if item[0] == str(folder.path / QUEUE_FILE)
                   else Path(item[0]).name)
        settings = parse(text, str(config), extra)
    except ConfigError as err:
        raise JoinError(str(err)) from None
    if settings.queue.backend != "azure" or not settings.queue.account_url:
        raise JoinError(f"{folder.path / QUEUE_FILE} is not a pillow's queue.toml from "
                        "pillowd pair (no [queue] backend \"azure\" with an account_url)")
    return settings


def check_tokens(settings: Settings, folder: Folder,
                 notes: Callable[[str], None] = lambda line: None) -> list[str]:
    """Checks each token of *folder* against Azure for what the service will do with
    it; returns the queues checked. Errors name the queue and what its token cannot
    do, never the token; *notes* hears what works but should be mended."""
    from ..queues.azure import AzureAccount

    source = str(folder.path / SAS_FILE)
    try:
        data = tomllib.loads(folder.tokens)
    except tomllib.TOMLDecodeError as err:
        raise JoinError(f"{source} is not valid TOML ({err})") from None
    if TOKENS_ENTRY in data:
        FamilyKey.from_text(str(data[TOKENS_ENTRY]))  # FamilyKeyError says what is wrong
    roles = {settings.queue.name: OWN, settings.poison_name: POISON,
             **{name: PARTNER for name in settings.outbound_names}}
    tokens = {}
    for queue in roles:
        token = data.get(queue)
        if not isinstance(token, str) or not token.strip():
            raise JoinError(f"{source} has no token for queue {queue!r}: pair this "
                            "pillow again (pillowd pair) and copy its folder")
        tokens[queue] = token.strip().lstrip("?")
    account = AzureAccount.from_tokens(settings.queue.account_url, tokens, source=source)
    try:
        for name, role in roles.items():
            TokenProbe(account, name, role).check(notes)
    except PillowError as err:
        raise JoinError(f"{err} (a policy made or changed by pillowd pair less than "
                        "30 s ago may not be in force yet: try again in a minute)"
                        if "refused" in str(err) or "does not allow" in str(err)
                        else str(err)) from None
    finally:
        account.close()
    return list(roles)


# -- what each token must do ---------------------------------------------------------
# Each token is tried for each permission the pillow uses it for (pillowd pair's
# OWN_QUEUE, OWN_POISON and PARTNER_QUEUE): Azure answers a request its token does
# not allow with 403 AuthorizationPermissionMismatch before it looks at anything
# else. Asking only for the queue's properties (which needs read) passed a
# partner's add-only token and an own token without process alike.
OWN, POISON, PARTNER = "its own queue", "its poison queue", "a partner's queue"
NEEDS = {OWN: ("read", "process"), POISON: ("read", "add", "process"),
         PARTNER: ("add",)}
WHY = {"read": "see its messages", "add": "send to it", "process": "take messages off it"}
# An add is tried with a real message, as nothing else proves it: one that cannot
# play. It is invisible for all of its life but the last second (Azure wants the
# visibility timeout below the time to live), and says it was sent in 2000 with a
# ttl of 1 s, so a pillow that takes it in that second records it expired and plays
# nothing. On the poison queue it is deleted at once (which tries process); on a
# partner's queue, where the token may only add, it expires PROBE_TTL s later.
PROBE_TTL = 5
# A message that cannot exist, to delete and update: pillowd.queues.azure.NO_MESSAGE.


def probe_body() -> str:
    """The body of an add probe: a message every pillow reads as long expired."""
    return json.dumps({"scene": "idle", "from": "pillowd join",
                       "id": f"join-check-{uuid.uuid4()}",
                       "sent_at": "2000-01-01T00:00:00Z", "ttl": 1})


class TokenProbe:
    """One queue's token, tried for what its *role* needs, leaving nothing to play."""

    def __init__(self, account, name: str, role: str):
        self.account = account
        self.name = name
        self.role = role
        self.client = account.client(name)
        self.source = f"{account.source}: the token for queue {name!r}"

    def check(self, notes: Callable[[str], None]) -> None:
        from ..queues.azure import NO_MESSAGE

        needs = NEEDS[self.role]
        if "read" in needs:
            self._try("read", lambda: self.client.peek_messages(max_messages=1))
        sent = None
        if "add" in needs:
            sent = self._try("add", lambda: self.client.send_message(
                probe_body(), visibility_timeout=PROBE_TTL - 1, time_to_live=PROBE_TTL))
        if "process" in needs:
            message = (sent.id, sent.pop_receipt) if sent is not None else NO_MESSAGE
            self._try("process", lambda: self.client.delete_message(*message),
                      absent_ok=sent is None)
        if self.role == OWN and not self._allows(lambda: self.client.update_message(
                *NO_MESSAGE, visibility_timeout=0)):
            notes(f"the token for queue {self.name!r} cannot give back a message it "
                  "took (update; tokens of an older pillowd pair): it works, and a rerun "
                  "of pillowd pair upgrades it")

    def _try(self, permission: str, operation, *, absent_ok: bool = False):
        from azure.core.exceptions import AzureError

        from ..queues.azure import error_code
        try:
            return operation()
        except (AzureError, OSError) as err:
            code = error_code(err)
            if absent_ok and code in ("MessageNotFound", "PopReceiptMismatch"):
                return None  # allowed: Azure went on to look for the message
            if code == "AuthorizationPermissionMismatch":
                raise JoinError(
                    f"{self.source} does not allow {permission}, which the pillow needs "
                    f"to {WHY[permission]} ({self.role} needs "
                    f"{'+'.join(NEEDS[self.role])}): pair this pillow again "
                    "(pillowd pair) and copy its folder") from None
            raise self.account.error(err, f"checking queue {self.name!r}",
                                     self.source) from None

    def _allows(self, operation) -> bool:
        from azure.core.exceptions import AzureError

        from ..queues.azure import error_code
        try:
            operation()
        except (AzureError, OSError) as err:
            return error_code(err) != "AuthorizationPermissionMismatch"
        return True


class Service:
    """The installed pillowd.service, through systemctl."""

    def __init__(self, unit: str = UNIT, systemctl: str = "systemctl",
                 run: Callable[..., subprocess.CompletedProcess] = subprocess.run):
        self.unit = unit
        self._systemctl = systemctl
        self._run = run

    def _call(self, *args: str) -> subprocess.CompletedProcess:
        return self._run([self._systemctl, *args], capture_output=True, text=True,
                         timeout=300)

    def present(self) -> str | None:
        """Why the service cannot be restarted here, or None when it can."""
        if not Path("/run/systemd/system").is_dir():
            return "systemd is not running here"
        state = self._call("show", "--property=LoadState", "--value", self.unit)
        if state.stdout.strip() != "loaded":
            return f"{self.unit} is not installed (sudo ./install.sh first)"
        return None

    def restart(self) -> str | None:
        """Restarts it (Type=notify: returns once READY=1); why it failed, or None."""
        since = f"@{int(time.time())}"
        result = self._call("restart", self.unit)
        if result.returncode == 0 and self.active():
            return None
        # The daemon's own one-line reason, as its journal has it ("pillowd: azure: ...").
        journal = self._run(["journalctl", f"--unit={self.unit}", f"--since={since}",
                             "--output=cat", "--no-pager"],
                            capture_output=True, text=True, timeout=60).stdout
        reasons = [line.removeprefix("pillowd: ") for line in journal.splitlines()
                   if line.startswith("pillowd: ")]
        return reasons[-1] if reasons else f"{self.unit} is not active"

    def active(self) -> bool:
        return self._call("is-active", "--quiet", self.unit).returncode == 0


def health_url(host: str, port: int) -> str:
    """Where join asks the page whether it is well: where it listens."""
    return f"{local_url(host, port)}healthz"


def wait_healthy(url: str, timeout: float = READY_SECONDS) -> str | None:
    """None once the page's /healthz at *url* says ok, else the last reason it gave."""
    deadline = time.monotonic() + timeout
    why = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return None if response.status == 200 else f"HTTP {response.status}"
        except urllib.error.HTTPError as err:
            try:
                why = "; ".join(json.loads(err.read()).get("reasons", [])) or str(err.code)
            except ValueError:
                why = f"HTTP {err.code}"
        except OSError as err:
            why = f"{url}: {getattr(err, 'reason', err)}"
        time.sleep(1)  # the service is polled from outside: nothing to wait on here
    return why


def join(folder_path: str | Path, config: str | Path, *, service: Service,
         say: Callable[[str], None] = print, healthy=wait_healthy) -> str:
    """Installs the folder for the service at *config*; returns the page's address."""
    from ..page.addresses import page_url_for_others

    if os.geteuid() != 0:
        raise JoinError("join installs root-only credentials: run it as root "
                        f"(sudo pillowd join {folder_path})")
    config = Path(config)
    folder = Folder.read(folder_path)
    settings = settings_with(config, folder)
    why_not = service.present()
    if why_not and "not running" not in why_not:
        raise JoinError(why_not)
    checked = check_tokens(settings, folder, notes=say)
    say(f"tokens accepted by {settings.queue.account_url.rstrip('/')} for "
        f"{', '.join(checked)}")
    files = Files({config.parent / DROP_IN_DIR / DROP_IN: (folder.keys, 0o644),
                   config.parent / SAS_FILE: (folder.tokens, 0o600)})
    files.install()
    say(f"installed {config.parent / DROP_IN_DIR / DROP_IN} and "
        f"{config.parent / SAS_FILE} (root only; the service's credential azure-queue-sas)")
    address = page_url_for_others(settings.web.host,
                                  local_url(settings.web.host, settings.web.port))
    if why_not:
        say(f"{why_not}: pillowd will run as {settings.pillow.name!r} when the system "
            f"boots with systemd ({address})")
        return address
    say(f"restarting {service.unit} as {settings.pillow.name!r}")
    failed = service.restart()
    if failed:
        files.undo()
        again = service.restart()
        raise JoinError(f"{service.unit} did not start as {settings.pillow.name!r} "
                        f"({failed}; see journalctl -u pillowd -b); the previous setup "
                        f"is back{'' if again is None else ' but did not start either'}")
    why = healthy(health_url(settings.web.host, settings.web.port))
    if why:
        # Started, but not well on the new setup: the previous one comes back, as
        # for a failed start (what stays is a pillow that worked before join).
        files.undo()
        again = service.restart()
        raise JoinError(f"{service.unit} started as {settings.pillow.name!r} but its "
                        f"page is not healthy: {why} (see journalctl -u pillowd -b); "
                        f"the previous setup is back"
                        f"{'' if again is None else ' but did not start either'}")
    return address
