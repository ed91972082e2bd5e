"""The pillowd command line: run, send, check-config, poison, pair, invite, revoke, and join."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

# NumPy's OpenBLAS starts a worker thread per core when imported, for matrix work a
# pillow never does: idle, unnamed threads on a small Pi. One is enough.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from . import __version__  # noqa: E402
from .config import ConfigError, load, with_state_dir
from .errors import PillowError
from .history import iso
from .hugs.owner import OWNER_KEY_ENV, owner_command
from .hugs.pairing import DEFAULT_PREFIX, INVITE_DAYS, PAIR_DAYS
from .messages import Rejection, command_from, encode
from .queues import QueueAuthError, QueueError
from .queues.poison import list_poison, requeue_poison
from .seams.checkout import checkout_config, checkout_root, checkout_state_dir
from .seams.printable import EscapingFormatter, escape
from .settings import Settings

SYSTEM_CONFIG = "/etc/pillowd/config.toml"
# `send` takes an invite URL from here: unlike an argument, no other user sees it.
QUEUE_URL_ENV = "PILLOWD_QUEUE_URL"


def default_config(environ=os.environ, checkout: Path | None = None) -> str:
    """$PILLOWD_CONFIG, else the checkout's config.toml when pillowd runs from a
    checkout (*checkout*), else /etc/pillowd/config.toml when it exists, else
    ./config.toml."""
    if environ.get("PILLOWD_CONFIG"):
        return environ["PILLOWD_CONFIG"]
    if checkout is not None:
        return str(checkout_config(checkout))
    if Path(SYSTEM_CONFIG).exists():
        return SYSTEM_CONFIG
    return "config.toml"


CONFIG_HELP = ("config file (default: $PILLOWD_CONFIG, else the checkout's config.toml "
               f"when run from a checkout, else {SYSTEM_CONFIG} when it exists, else "
               "./config.toml)")
STATE_HELP = ("the pillow's state_dir, as given to run --state-dir (default: the "
              "config's; a checkout's config.toml keeps it in the checkout's .state, "
              "as make run does)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pillowd", description="The daemon inside the Huggable Cloud Pillow.")
    parser.add_argument("--version", action="version", version=f"pillowd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help):
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
        return sub

    run = command("run", "run the daemon in the foreground until SIGTERM/SIGINT")
    run.add_argument("--demo", action="store_true",
                     help="also feed it a scene every few seconds")
    run.add_argument("--state-dir", metavar="DIR",
                     help="keep history and the local queue here instead of "
                          "[pillow] state_dir (a checkout's config.toml: its .state)")
    run.add_argument("--port", type=_port, metavar="N",
                     help="serve the status page on port N instead of [web] port "
                          "(0: any free port)")

    send = commands.add_parser(
        "send", help="put one message on the configured queue and print its id",
        description="put one message on the configured queue, or on the queue an "
                    "invite URL names, and print the message's id")
    target = send.add_mutually_exclusive_group()
    target.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    target.add_argument("--queue-url", metavar="URL",
                        help="send with a URL printed by pillowd invite instead; '-' "
                             "reads it from standard input (default: "
                             f"${QUEUE_URL_ENV} when set), so its SAS is not in the "
                             "process list")
    send.add_argument("scene")
    send.add_argument("--color", metavar="HEX")
    send.add_argument("--brightness", type=float, metavar="0..1")
    send.add_argument("--duration", type=float, metavar="S")
    send.add_argument("--from", dest="sender", metavar="NAME")
    send.add_argument("--text")
    send.add_argument("--ttl", type=float, metavar="S",
                      help="seconds before the message expires unplayed")
    send.add_argument("--id", dest="message_id", metavar="ID",
                      help="the message's id (default: a new UUID); printed on success")
    send.add_argument("--base64", action="store_true",
                      help="encode the body as Azure Functions and the portal do")
    send.add_argument("--state-dir", metavar="DIR", help=STATE_HELP)

    command("check-config", "validate the config file")

    poison = command("poison", "inspect and empty the poison queue")
    poison.add_argument("action", choices=["list", "requeue", "purge"])
    poison.add_argument("id", nargs="?", help="with requeue: only this message")
    poison.add_argument("--state-dir", metavar="DIR", help=STATE_HELP)

    # These run on the owner's computer with the account key, never on a pillow.
    key_note = " (needs the account key in $AZURE_STORAGE_CONNECTION_STRING)"
    pair = commands.add_parser(
        "pair", help="set up pillows that hug each other on Azure Storage" + key_note,
        description="Creates the queues PREFIX+NAME and PREFIX+NAME-poison, a stored "
                    "access policy per pillow on each queue it may touch, and per "
                    "pillow DIR/NAME/queue.toml and DIR/NAME/queue-sas.toml." + key_note)
    pair.add_argument("names", nargs="+", metavar="NAME")
    pair.add_argument("--out", metavar="DIR", default=".",
                      help="where each pillow's folder is written (default: here)")
    pair.add_argument("--days", type=_days, metavar="N",
                      help=f"policies expire after N days (new ones: {PAIR_DAYS}); "
                           "given again, renews existing ones")
    pair.add_argument("--prefix", metavar="P", default=DEFAULT_PREFIX,
                      help=f"queue name prefix (default: {DEFAULT_PREFIX})")
    pair.add_argument("--color", action="append", metavar="NAME=HEX",
                      help="NAME's hugs (and hugs back) play in this colour on its "
                           "partners, e.g. bob=#3366ff; may be given for each pillow")
    invite = commands.add_parser(
        "invite", help="print send-only URLs for a friend's phone or script" + key_note,
        description="Makes a stored access policy NAME that may only add messages to "
                    "the pillows' queues, and prints one URL per queue." + key_note)
    invite.add_argument("name", metavar="NAME")
    invite.add_argument("--days", type=_days, metavar="N",
                        help=f"the invite expires after N days (new ones: {INVITE_DAYS}); "
                             "given again, renews it")
    invite.add_argument("--to", nargs="+", metavar="NAME",
                        help="only these pillows (default: every pillow under --prefix)")
    invite.add_argument("--prefix", metavar="P", default=DEFAULT_PREFIX,
                        help=f"queue name prefix (default: {DEFAULT_PREFIX})")
    invite.add_argument("--page", action="store_true",
                        help="also publish the send page on the account's static website "
                             "and print one link for a phone (needs pillowd[owner])")
    invite.add_argument("--page-url", metavar="URL",
                        help="with --page: the static website's address, "
                             "https://ACCOUNT.zNN.web.core.windows.net (needed once, "
                             "then remembered)")
    revoke = commands.add_parser(
        "revoke", help="stop every token issued for pillow or invite NAME" + key_note,
        description="Deletes the stored access policy NAME on every queue of the "
                    "account; Azure takes up to 30 s to refuse its tokens." + key_note)
    revoke.add_argument("name", metavar="NAME")
    join = command("join", "on the pillow, as root: run the installed service on the "
                           "folder pillowd pair wrote for it")
    join.add_argument("folder", metavar="DIR",
                      help="the folder with this pillow's queue.toml and queue-sas.toml")
    return parser


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        days = 0
    if not 1 <= days <= 36500:
        raise argparse.ArgumentTypeError(f"must be a whole number of days, 1..36500, "
                                         f"not {text!r}")
    return days


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number, 0..65535, not {text!r}")
    return port


def main(args: list[str] | None = None) -> int:
    """Run the command in *args*; returns the exit code."""
    options = _parser().parse_args(args)
    debug = bool(os.environ.get("DEBUG"))
    _setup_logging(debug)
    try:
        if options.command in ("pair", "invite", "revoke"):
            return owner_command(options)
        if options.command == "send":
            url = _queue_url(options)
            if url is not None:
                return _send(None, options, url)
        if options.command == "join":
            # The installed service's config, wherever this pillowd runs from.
            return _join(options.config or default_config(), options.folder)
        checkout = checkout_root()
        path = options.config or default_config(checkout=checkout)
        if options.command == "check-config":
            return _check_config(path)
        settings = _settings(load(path), options, checkout)
        if options.command == "run":
            from .daemon import run
            return run(settings, demo=options.demo)
        if options.command == "send":
            return _send(settings, options)
        return _poison(settings, options)
    except (PillowError, OSError) as err:
        if debug:
            raise
        print(f"pillowd: {escape(err)}", file=sys.stderr)  # one line, inert
        return 1
    except KeyboardInterrupt:
        return 1


def _settings(settings: Settings, options, checkout: Path | None) -> Settings:
    """*settings* with --state-dir and --port; a checkout's config.toml keeps its
    state in the checkout's .state (where `make run` runs its pillow), not in the
    installed pillow's /var/lib/pillowd."""
    from dataclasses import replace

    state_dir = getattr(options, "state_dir", None) or checkout_state_dir(
        checkout, settings.source, settings.pillow.state_dir)
    if state_dir:
        settings = with_state_dir(settings, str(state_dir))
    if getattr(options, "port", None) is not None:
        settings = replace(settings, web=replace(settings.web, port=options.port))
    return settings


def _opened_local_queue(settings: Settings) -> None:
    """Refuses, naming the folder, a local queue no pillow has opened: a send there
    would wait for a pillow that is not looking (and would make the folder, as the
    user running it: root's, under sudo)."""
    if settings.queue.backend != "local":
        return
    folder = Path(settings.pillow.state_dir)
    try:
        opened = (folder / "queue.sqlite3").is_file()
    except PermissionError:
        raise QueueError(f"the local queue in {folder} is not yours to open (permission "
                         "denied): it is the installed pillow's; use sudo") from None
    if not opened:
        why = "no such folder" if not folder.exists() else "no queue.sqlite3 in it"
        raise QueueError(
            f"no pillow has opened the local queue in {folder} ({why}): "
            "start the pillow first (make run, or pillowd run), or give the "
            "--state-dir it runs with")


def _owner_key_first(settings: Settings, environ=os.environ) -> Settings:
    """For send and poison: the account key, when set, over the pillow's own tokens.
    A pillow (pillowd run) uses the tokens its sas_file names, key or no key; the
    owner, with the key in the environment and a copy of the pillow's config, needs
    the key: the tokens may not add to the pillow's own queue."""
    from dataclasses import replace

    q = settings.queue
    if q.backend == "azure" and q.sas_file and q.connection_string_env and \
            environ.get(q.connection_string_env, "").strip():
        return replace(settings, queue=replace(q, sas_file=""))
    return settings


def _setup_logging(debug: bool) -> None:
    handler = None
    try:
        from .seams.systemd import journal_handler
        handler = journal_handler(logging.DEBUG if debug else logging.INFO)
    except ImportError:
        pass
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        # Escaped, as the journal's are: a message's text cannot forge a log line
        # nor steer the terminal showing it.
        handler.setFormatter(EscapingFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)


def _check_config(path: str) -> int:
    try:
        settings = load(path)
    except ConfigError as err:
        for problem in err.problems:
            file = problem.file or err.path
            where = f"{file}:{problem.line}" if problem.line else file
            print(f"{where}: {problem.key}: {problem.why}", file=sys.stderr)
        return 1
    print(f"{path}: OK ({len(settings.scenes)} scenes: {', '.join(settings.scenes)})")
    return 0


def _join(path: str, folder: str) -> int:
    from .hugs.join import Service, join

    logging.getLogger("azure").setLevel(logging.WARNING)  # no request-by-request log
    address = join(folder, path, service=Service(),
                   say=lambda line: print(f"pillowd: {line}", flush=True))
    print(f"pillowd is ready: {address}")
    return 0


def _queue_url(options, environ=os.environ, stdin=None) -> str | None:
    """The invite URL `send` is to use: --queue-url, its '-' for standard input, else
    $PILLOWD_QUEUE_URL when no --config is given; None: the config's queue."""
    if options.queue_url == "-":
        line = (stdin or sys.stdin).readline().strip()
        if not line:
            raise PillowError("no queue URL on standard input (--queue-url -)")
        return line
    if options.queue_url:
        return options.queue_url  # seen by any user (ps, /proc/PID/cmdline) while it runs
    if options.config is None and environ.get(QUEUE_URL_ENV, "").strip():
        return environ[QUEUE_URL_ENV].strip()
    return None


def _send(settings: Settings | None, options, queue_url: str | None = None) -> int:
    """Sends with the config's queues, or (*settings* None) with *queue_url*."""
    fields = {"scene": options.scene}
    for key, value in (("color", options.color), ("brightness", options.brightness),
                       ("duration", options.duration), ("from", options.sender),
                       ("text", options.text), ("ttl", options.ttl)):
        if value is not None:
            fields[key] = value
    # The id the history, the snapshot and the page show: the sender's, not the
    # queue's (a message id the queue makes up is unknown until after the put).
    fields["id"] = options.message_id if options.message_id is not None else str(uuid.uuid4())
    fields["sent_at"] = iso(datetime.now(timezone.utc))
    try:
        # Refuse here what the pillow would reject. Through an invite URL the
        # receiving pillow's scenes are unknown: only the fields are checked.
        command_from(fields, settings or _any_scene(options.scene))
    except Rejection as err:
        print(f"pillowd: not sent: {escape(err)}", file=sys.stderr)
        return 1
    body = encode(fields, as_base64=options.base64)
    # The message's ttl is enforced by the pillow, which records it as expired;
    # a queue-side time-to-live would make it vanish with no outcome at all.
    if settings is None:
        _send_with_invite(queue_url, body)
    else:
        from .queues.configured import open_queues
        _opened_local_queue(settings)
        _quiet_credential_log()
        queues = open_queues(_owner_key_first(settings))
        try:
            if getattr(getattr(queues.main, "account", None), "per_queue_tokens", False):
                # A pillow's own tokens may not add to its own queue (pillowd pair).
                raise QueueAuthError(
                    f"this pillow's SAS tokens may not add to its own queue "
                    f"{queues.main.name!r}: send with the account's connection string in "
                    f"${settings.queue.connection_string_env or OWNER_KEY_ENV}, or with "
                    "--queue-url and an invite URL")
            queues.main.put(body)
        finally:
            queues.close()
    print(fields["id"])
    return 0


# What a friend reads when the invite's token is refused: Azure answers a revoked
# and an expired invite alike (403 AuthenticationFailed), and neither is theirs to mend.
INVITE_REFUSED = "this invite no longer works; ask for a new one"


def _send_with_invite(queue_url: str, body: str) -> None:
    from .queues.azure import queue_from_url
    logging.getLogger("azure").setLevel(logging.WARNING)  # as the daemon does
    queue = queue_from_url(queue_url)
    try:
        queue.put(body)
    except QueueAuthError:
        raise QueueAuthError(f"{INVITE_REFUSED} (queue {queue.name!r} refused its "
                             "token: revoked, expired, or not copied whole)") from None
    finally:
        queue.account.close()


def _quiet_credential_log() -> None:
    """The daemon logs which credential it chose; a one-shot command keeps quiet."""
    logging.getLogger("pillowd.queues.azure").setLevel(logging.WARNING)


def _any_scene(scene) -> Settings:
    """Settings in which *scene* (whatever its name) exists and takes a colour."""
    from .config import parse
    name = json.dumps(scene if isinstance(scene, str) else "")
    return parse(f'[scenes.idle]\neffect = "solid"\n[scenes.{name}]\neffect = "solid"\n',
                 "<send --queue-url>")


def _poison(settings: Settings, options) -> int:
    from .queues.configured import open_queues

    _opened_local_queue(settings)
    _quiet_credential_log()
    queues = open_queues(_owner_key_first(settings))
    # A pillow's own tokens (pillowd pair's) may not add to its own queue, nor
    # clear one: that is for the owner, with the account key.
    key_hint = (f"run it with the account's connection string in "
                f"${settings.queue.connection_string_env or OWNER_KEY_ENV} instead")
    tokens = getattr(getattr(queues.main, "account", None), "per_queue_tokens", False)
    try:
        if options.action == "list":
            return list_poison(queues)
        if options.action == "purge":
            try:
                queues.poison.clear()
            except QueueAuthError as err:
                raise QueueAuthError(f"{err}; {key_hint}" if tokens else str(err)) from None
            print(f"poison queue {queues.poison.name!r} emptied")
            return 0
        if tokens:
            raise QueueAuthError(f"poison requeue needs to add to {queues.main.name!r}, "
                                 f"which this pillow's SAS tokens do not allow: {key_hint}")
        return requeue_poison(queues, options.id)
    finally:
        queues.close()


