"""The pillowd command line: run, send, check-config and poison."""

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
from .messages import Rejection, command_from, encode
from .queues import QueueError
from .settings import Settings

SYSTEM_CONFIG = "/etc/pillowd/config.toml"


def default_config(environ=os.environ) -> str:
    """$PILLOWD_CONFIG, else /etc/pillowd/config.toml when it exists, else ./config.toml."""
    if environ.get("PILLOWD_CONFIG"):
        return environ["PILLOWD_CONFIG"]
    if Path(SYSTEM_CONFIG).exists():
        return SYSTEM_CONFIG
    return "config.toml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pillowd", description="The daemon inside the Huggable Cloud Pillow.")
    parser.add_argument("--version", action="version", version=f"pillowd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help):
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("--config", metavar="PATH",
                         help="config file (default: $PILLOWD_CONFIG, else "
                              f"{SYSTEM_CONFIG} when it exists, else ./config.toml)")
        return sub

    run = command("run", "run the daemon in the foreground until SIGTERM/SIGINT")
    run.add_argument("--demo", action="store_true",
                     help="also feed it a scene every few seconds")
    run.add_argument("--state-dir", metavar="DIR",
                     help="keep history and the local queue here instead of "
                          "[pillow] state_dir")

    send = command("send", "put one message on the configured queue and print its id")
    send.add_argument("scene")
    send.add_argument("--color", metavar="HEX")
    send.add_argument("--brightness", type=float, metavar="0..1")
    send.add_argument("--duration", type=float, metavar="S")
    send.add_argument("--from", dest="sender", metavar="NAME")
    send.add_argument("--text")
    send.add_argument("--ttl", type=float, metavar="S",
                      help="seconds before the message expires unplayed")
    send.add_argument("--base64", action="store_true",
                      help="encode the body as Azure Functions and the portal do")
    send.add_argument("--state-dir", metavar="DIR",
                      help="the local queue's state_dir, as given to run --state-dir")

    command("check-config", "validate the config file")

    poison = command("poison", "inspect and empty the poison queue")
    poison.add_argument("action", choices=["list", "requeue", "purge"])
    poison.add_argument("id", nargs="?", help="with requeue: only this message")
    poison.add_argument("--state-dir", metavar="DIR",
                        help="the local queue's state_dir, as given to run --state-dir")
    return parser


def main(args: list[str] | None = None) -> int:
    """Run the command in *args*; returns the exit code."""
    options = _parser().parse_args(args)
    debug = bool(os.environ.get("DEBUG"))
    _setup_logging(debug)
    try:
        path = options.config or default_config()
        if options.command == "check-config":
            return _check_config(path)
        settings = load(path)
        if getattr(options, "state_dir", None):
            settings = with_state_dir(settings, options.state_dir)
        if options.command == "run":
            from .daemon import run
            return run(settings, demo=options.demo)
        if options.command == "send":
            return _send(settings, options)
        return _poison(settings, options)
    except (PillowError, OSError) as err:
        if debug:
            raise
        print(f"pillowd: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 1


def _setup_logging(debug: bool) -> None:
    handler = None
    try:
        from .systemd import journal_handler
        handler = journal_handler(logging.DEBUG if debug else logging.INFO)
    except ImportError:
        pass
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)


def _check_config(path: str) -> int:
    try:
        settings = load(path)
    except ConfigError as err:
        for problem in err.problems:
            where = f"{err.path}:{problem.line}" if problem.line else err.path
            print(f"{where}: {problem.key}: {problem.why}", file=sys.stderr)
        return 1
    print(f"{path}: OK ({len(settings.scenes)} scenes: {', '.join(settings.scenes)})")
    return 0


def _send(settings: Settings, options) -> int:
    from .daemon import open_queues

    fields = {"scene": options.scene}
    for key, value in (("color", options.color), ("brightness", options.brightness),
                       ("duration", options.duration), ("from", options.sender),
                       ("text", options.text), ("ttl", options.ttl)):
        if value is not None:
            fields[key] = value
    fields["id"] = str(uuid.uuid4())
    fields["sent_at"] = iso(datetime.now(timezone.utc))
    try:
        command_from(fields, settings)  # refuse here what the pillow would reject
    except Rejection as err:
        print(f"pillowd: not sent: {err}", file=sys.stderr)
        return 1
    queues = open_queues(settings)
    try:
        # The message's ttl is enforced by the pillow, which records it as expired;
        # a queue-side time-to-live would make it vanish with no outcome at all.
        queue_message_id = queues.main.put(encode(fields, as_base64=options.base64))
    finally:
        queues.close()
    print(queue_message_id)
    return 0


def _poison(settings: Settings, options) -> int:
    from .daemon import open_queues

    queues = open_queues(settings)
    try:
        if options.action == "list":
            return _poison_list(queues)
        if options.action == "purge":
            queues.poison.clear()
            print(f"poison queue {queues.poison.name!r} emptied")
            return 0
        return _poison_requeue(queues, options.id)
    finally:
        queues.close()


def _wrapper(body: str) -> dict:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("original"), str):
        return data
    # Not ours (written by another tool): the body itself is the original.
    return {"reason": "(not written by pillowd)", "original": body}


def _poison_list(queues) -> int:
    messages = queues.poison.peek(32)
    if not messages:
        print("the poison queue is empty")
        return 0
    for message in messages:
        data = _wrapper(message.body)
        original = data["original"]
        if len(original) > 80:
            original = original[:77] + "..."
        print(f"{message.id}  {data.get('at', iso(message.inserted_on))}  "
              f"{data.get('reason')}\n    {original}")
    if len(messages) == 32:
        print("(showing the first 32)")
    return 0


def _poison_requeue(queues, wanted: str | None) -> int:
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
                queues.main.put(_wrapper(message.body)["original"])
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
