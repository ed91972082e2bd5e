"""How a conversation is kept: conversation.json, checked when read, written whole."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..seams import files
from .sent import partner_entry

log = logging.getLogger(__name__)


class ConversationFile:
    """The conversation's state in *path* (JSON), so a restart forgets no answer
    that may still come: the reply target, the own hugs, ``last_sent`` and
    ``while_quiet``. What is read is checked (``checked_state``); a write replaces
    the file whole, and one that fails is logged: the hug still goes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def load(self) -> dict:
        return load_state(self.path)

    def save(self, state: dict) -> None:
        try:
            files.write(self.path, json.dumps(state))
        except OSError as err:  # the hug still goes; a restart forgets the answer
            log.warning("cannot keep the conversation in %s: %s", self.path, err)


def load_state(path: Path) -> dict:
    """conversation.json as kept, checked: an entry that is not as this pillow writes
    it (edited by hand, a bug, a torn write) is dropped, with one log line naming
    them, so that no press or message ever trips on it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        log.warning("starting a new conversation: %s cannot be read (%s)", path, err)
        return {}
    if not isinstance(data, dict):
        log.warning("starting a new conversation: %s holds no object", path)
        return {}
    kept, dropped = checked_state(data)
    if dropped:
        log.warning("%s: dropped what is not as pillowd writes it: %s", path,
                    "; ".join(dropped))
    return kept
def checked_state(data: dict) -> tuple[dict, list[str]]:
    """(the conversation's state with only well-formed entries, what was dropped)."""
    dropped: list[str] = []
    kept: dict = {}
    target = data.get("target")
    if target is not None:
        if _is_target(target):
            kept["target"] = target
        else:
            dropped.append("target")
    own = data.get("own", {})
    if not isinstance(own, dict):
        dropped.append("own")
        own = {}
    kept["own"] = {}
    for ident, entry in own.items():
        if _is_own(entry):
            kept["own"][ident] = entry
        else:
            dropped.append(f"own[{ident!r}]"[:80])
    last = data.get("last_sent")
    if last is not None:
        if _is_last_sent(last):
            kept["last_sent"] = last
        else:
            dropped.append("last_sent")
    items = data.get("while_quiet", [])
    if not isinstance(items, list):
        dropped.append("while_quiet")
        items = []
    kept["while_quiet"] = [i for i in items if _is_quiet_item(i)]
    if len(kept["while_quiet"]) != len(items):
        dropped.append(f"{len(items) - len(kept['while_quiet'])} of while_quiet")
    return kept, dropped


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text_or_none(value) -> bool:
    return value is None or isinstance(value, str)


def _is_target(value) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("id"), str)
            and _text_or_none(value.get("from")) and _number(value.get("at")))


def _is_own(value) -> bool:
    if not isinstance(value, dict) or not _number(value.get("at")):
        return False
    played = value.setdefault("played", {})
    answered = value.setdefault("answered", [])
    return (isinstance(played, dict) and all(_number(v) for v in played.values())
            and isinstance(answered, list) and all(isinstance(a, str) for a in answered))


def _is_last_sent(value) -> bool:
    if not (isinstance(value, dict) and isinstance(value.get("id"), str)
            and isinstance(value.get("at"), str)
            and isinstance(value.get("partners"), dict)):
        return False
    for name, entry in value["partners"].items():
        if not isinstance(entry, dict):
            return False
        value["partners"][name] = {**partner_entry(), **entry}
    return True


def _is_quiet_item(value) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("id"), str)
            and all(_text_or_none(value.get(k)) for k in ("from", "text", "at")))


