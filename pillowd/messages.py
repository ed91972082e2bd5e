"""Turns a queue message body into a command for the pillow, or says why it cannot."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from .seams.printable import unsafe
from .settings import SceneSettings, Settings

if TYPE_CHECKING:
    from .family import FamilyKey

MAX_BODY = 64 * 1024
MAX_FROM = 64
MAX_TEXT = 280
MAX_ID = 256
MAX_EVENT = 32    # "hug"; room for the kinds of event a later pillow may send
MAX_REASON = 300  # a reason is shown on the page and kept in the history
MAX_SIG = 128     # an HMAC-SHA256 in base64url is 43 characters
_FIELDS = {"scene", "color", "brightness", "duration", "from", "text", "id",
           "sent_at", "ttl", "vibration", "warmer", "event", "pillow", "reply_to", "sig",
           "hold", "strength"}
# How long a hug was held, and how hard (SPEC "Queue messages"): any message may say.
HOLD_RANGE = (0.1, 30.0)
STRENGTH_RANGE = (0.1, 1.0)
# What only a partner may say: kept only when the family key verifies `sig`.
PARTNER_FIELDS = ("event", "pillow", "reply_to")
# A partner's receipt for a hug (SPEC "Hugs between pillows"): it plays no scene.
_RECEIPT = {"event", "of", "pillow", "played_at", "quiet", "expired", "superseded",
            "id", "sent_at", "ttl", "sig"}
_REPLY_TO = {"id", "from"}
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
# A note may run over lines (a textarea's line breaks); nothing else that steers a
# terminal or turns text around: controls, bidi overrides and isolates, separators.
_TEXT_UNSAFE = re.compile(r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f"
                          r"\u2028-\u202e\u2066-\u2069\ud800-\udfff]")


@dataclass(frozen=True)
class Command:
    """What one valid message asks the pillow to do."""

    scene: SceneSettings | None     # None only for a partner's receipt
    color: tuple[float, float, float] | None = None
    brightness: float = 1.0
    duration: float | None = None   # None: the scene's own duration
    sender: str | None = None
    text: str | None = None
    id: str | None = None
    sent_at: datetime | None = None
    ttl: float | None = None
    # Messages may only lower what the scene does to the actuators, never raise it.
    vibration: float = 1.0          # 0..1, times the scene's vibration level
    warmer: bool = True             # false keeps the scene's warmer off
    # A pillow's own event (SPEC "Hugs between pillows"): what happened, which
    # pillow sent it, and the message it answers ({"id", "from"}).
    event: str | None = None
    pillow: str | None = None
    reply_to: dict | None = None
    # True only when the body's `sig` verified under the family key. Otherwise the
    # three fields above are None: the message plays as an ordinary one from its
    # `from`, and never counts as a partner's hug, a hug back or a receipt.
    partner: bool = False
    # It claimed to be a partner's (event, pillow or reply_to) without a valid sig:
    # played as an ordinary message, but never the target of a reply either.
    forged: bool = False
    # A receipt: the hug it answers, when that played there, in quiet hours or not,
    # or that it expired before it could.
    of: str | None = None
    played_at: datetime | None = None
    quiet: bool = False
    expired: bool = False
    superseded: bool = False        # delivered there, though a newer message played
    # How long the hug was held (seconds) and how hard (0.1..1): None when the
    # message did not say (it plays as the scene says, at full strength).
    hold: float | None = None
    strength: float | None = None


class Rejection(ValueError):
    """Why a body is not a valid message (data, not a failure of the daemon)."""


def unwrap(body: str) -> str:
    """The message text, whether it was sent plain or base64-encoded.

    Azure Functions and the portal base64-encode bodies; the v12 SDK sends them
    plain. A body is taken as base64 only if it decodes to UTF-8 that looks like a
    message itself (a JSON object or a word), so plain JSON is never touched; a
    bare word that is also valid base64 is settled by decode(), which tries the
    word as a scene first.
    """
    stripped = body.strip()
    if len(stripped) < 4 or len(stripped) % 4 or not _BASE64.fullmatch(stripped):
        return body
    try:
        decoded = base64.b64decode(stripped, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return body
    inner = decoded.strip()
    if inner.startswith("{") or _WORD.fullmatch(inner):
        return decoded
    return body


def _text(value, name: str, limit: int, lines: bool = False) -> str:
    """*value* as a name (no control or format character at all), or with *lines*
    as a note (line breaks allowed, nothing else that steers a terminal)."""
    if not isinstance(value, str):
        raise Rejection(f"{name} must be a string, not {type(value).__name__}")
    if len(value) > limit:
        raise Rejection(f"{name} is {len(value)} characters; at most {limit}")
    found = _TEXT_UNSAFE.search(value) if lines else next(
        (c for c in value if unsafe(c)), None)
    if found:
        char = found.group() if lines else found
        raise Rejection(f"{name} contains control characters (U+{ord(char):04X}; only "
                        "line breaks may be in it)" if lines else
                        f"{name} contains control or format characters (U+{ord(char):04X})")
    return value


def check_text(value) -> str:
    """*value* if it may be a message's ``text`` (at most MAX_TEXT characters, line
    breaks but no other control character); else Rejection says why."""
    return _text(value, "text", MAX_TEXT, lines=True)


def _number(value, name: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Rejection(f"{name} must be a number, not {type(value).__name__}")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        finite = False
    if not finite or not lo <= value <= hi:
        raise Rejection(f"{name} must be between {lo} and {hi}, not {value}")
    return float(value)


def held(data: dict) -> dict:
    """The ``hold`` and ``strength`` *data* gives, checked ({} when it gives
    neither); Rejection says why one is out of range or not a number."""
    fields = {}
    for name, (lo, hi) in (("hold", HOLD_RANGE), ("strength", STRENGTH_RANGE)):
        if data.get(name) is not None:
            fields[name] = _number(data[name], name, lo, hi)
    return fields


def parse_time(value) -> datetime:
    if not isinstance(value, str) or len(value) > 40:
        raise Rejection("sent_at must be an ISO-8601 time string")
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise Rejection(f"sent_at is not an ISO-8601 time: {value!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when


def _scene(settings: Settings, word) -> SceneSettings:
    if not isinstance(word, str) or not word.strip():
        raise Rejection("scene must be a non-empty string")
    scene = settings.scene_named(word)
    if scene is None:
        shown = word if len(word) <= 40 else word[:40] + "…"
        raise Rejection(f"unknown scene {shown!r} (known: {', '.join(settings.scenes)})")
    return scene


def decode(body: str | bytes, settings: Settings,
           family: FamilyKey | None = None) -> Command:
    """The command in *body*; raises Rejection with a reason a person can read.

    A partner's event counts as one only when *family* verifies its `sig` over the
    body exactly as sent (no key: none does)."""
    if isinstance(body, bytes):
        if len(body) > MAX_BODY:
            raise Rejection(f"body is {len(body)} bytes; at most {MAX_BODY}")
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Rejection("body is not UTF-8 text") from None
    if len(body.encode("utf-8", "surrogatepass")) > MAX_BODY:
        raise Rejection(f"body is larger than {MAX_BODY} bytes")
    text = body.strip()
    if not (_WORD.fullmatch(text) and settings.scene_named(text)):
        text = unwrap(text).strip()
    if not text:
        raise Rejection("body is empty")
    if _WORD.fullmatch(text):
        return Command(scene=_scene(settings, text))
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise Rejection("body is neither JSON nor a scene name") from None
    if not isinstance(data, dict):
        raise Rejection(f"body must be a JSON object, not {type(data).__name__}")
    return command_from(data, settings, family)


def claimed_id(body: str) -> str | None:
    """The `id` a body names, when it can be read and shown safely (the same limits
    as a playable message's), else None; for a message that cannot be played, so
    that its rejection is kept under the id its sender was told."""
    return _claimed(body, "id", MAX_ID)


def claimed_sender(body: str) -> str | None:
    """The `from` a body names, under the same rules as claimed_id: a rejected
    message keeps its sender on the page and in the history."""
    return _claimed(body, "from", MAX_FROM)


def _claimed(body: str, key: str, limit: int) -> str | None:
    try:
        if len(body.encode("utf-8", "surrogatepass")) > MAX_BODY:
            return None
        data = json.loads(unwrap(body.strip()))
        value = data.get(key) if isinstance(data, dict) else None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return None
        value = _text(str(value), key, limit)
        value.encode("utf-8")  # a lone surrogate could not be kept
    except (ValueError, RecursionError, UnicodeError):  # Rejection is a ValueError
        return None
    return value or None


def _verified(data: dict, family: FamilyKey | None) -> bool:
    if family is None or "sig" not in data:
        return False
    try:
        return family.verify(data)
    except (ValueError, RecursionError, TypeError):  # not signable: not a partner's
        return False


def command_from(data: dict, settings: Settings,
                 family: FamilyKey | None = None) -> Command:
    """The command in an already parsed JSON object (a queue body or a web request).

    It is a partner's only when *family* verifies its `sig` over *data* as it came
    (no key, as for the page and Home Assistant: never); if not, whatever it says
    of `event`, `pillow` and `reply_to` is checked and dropped.
    """
    try:
        # A lone surrogate ("\ud800" in JSON) parses, but no UTF-8 file or page can
        # hold it: found here it is a rejection, found later it would fail the write
        # of the outcome and bring the message back again and again.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise Rejection("body holds text that is not valid Unicode (a lone surrogate)"
                        ) from None
    except (ValueError, RecursionError, TypeError):
        raise Rejection("body is not plain JSON data") from None
    try:
        partner = _verified(data, family)
        if "scene" not in data and data.get("event") == "receipt":
            return _receipt(data, partner)
        return _command_from(data, settings, partner)
    except Rejection as err:
        reason = str(err)
        if len(reason) > MAX_REASON:  # e.g. a 60 KiB "colour" quoted back
            raise Rejection(reason[:MAX_REASON - 1] + "…") from None
        raise


def _command_from(data: dict, settings: Settings, partner: bool) -> Command:
    unknown = sorted(set(data) - _FIELDS)
    if unknown and partner:
        # A partner's signed event from a newer pillow: what this one does not know
        # yet (as hold and strength were once) it plays without, as before.
        data = {k: v for k, v in data.items() if k in _FIELDS}
        unknown = []
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise Rejection(f"unknown field {shown} (known: {', '.join(sorted(_FIELDS))})")
    if "scene" not in data:
        raise Rejection("scene is missing")
    scene = _scene(settings, data["scene"])
    fields: dict = {"scene": scene}
    if data.get("color") is not None:
        if not isinstance(data["color"], str):
            raise Rejection("color must be a string like '#ff8800'")
        if "color" not in scene.params:
            raise Rejection(f"scene {scene.name!r} has no colour to set")
        try:
            fields["color"] = parse_color(data["color"])
        except ValueError as err:
            raise Rejection(str(err)) from None
    if data.get("brightness") is not None:
        fields["brightness"] = _number(data["brightness"], "brightness", 0, 1)
    if data.get("duration") is not None:
        duration = _number(data["duration"], "duration", 0, 86400)
        if duration == 0:  # "until the next message", within the scene's limit
            duration = scene.max_duration
        fields["duration"] = min(duration, scene.max_duration)
    if data.get("from") is not None:
        fields["sender"] = _text(data["from"], "from", MAX_FROM)
    if data.get("text") is not None:
        fields["text"] = _text(data["text"], "text", MAX_TEXT, lines=True)
    if data.get("id") is not None:
        if not isinstance(data["id"], (str, int)) or isinstance(data["id"], bool):
            raise Rejection("id must be a string")
        fields["id"] = _text(str(data["id"]), "id", MAX_ID)
    if data.get("sent_at") is not None:
        fields["sent_at"] = parse_time(data["sent_at"])
    if data.get("ttl") is not None:
        fields["ttl"] = _number(data["ttl"], "ttl", 1, 7 * 24 * 3600)
    if data.get("vibration") is not None:
        fields["vibration"] = _number(data["vibration"], "vibration", 0, 1)
    if data.get("warmer") is not None:
        if not isinstance(data["warmer"], bool):
            raise Rejection("warmer must be true or false")
        fields["warmer"] = data["warmer"]
    fields.update(held(data))
    if data.get("event") is not None:
        fields["event"] = _text(data["event"], "event", MAX_EVENT)
    if data.get("pillow") is not None:
        fields["pillow"] = _text(data["pillow"], "pillow", MAX_FROM)
    if data.get("reply_to") is not None:
        fields["reply_to"] = _reply_to(data["reply_to"])
    if data.get("sig") is not None:
        _text(data["sig"], "sig", MAX_SIG)
    claimed = [name for name in PARTNER_FIELDS if name in fields]
    if not partner:
        for name in claimed:
            del fields[name]
    return Command(**fields, partner=partner, forged=bool(claimed) and not partner)


def _receipt(data: dict, partner: bool) -> Command:
    if not partner:
        raise Rejection("scene is missing (a receipt counts only when signed by the "
                        "family's key)")
    unknown = sorted(set(data) - _RECEIPT)
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise Rejection(f"unknown field {shown} in a receipt "
                        f"(known: {', '.join(sorted(_RECEIPT))})")
    pillow = _text(data.get("pillow"), "pillow", MAX_FROM)
    of = _text(data.get("of"), "of", MAX_ID)
    played_at = data.get("played_at")
    if played_at is not None:
        try:
            played_at = parse_time(played_at)
        except Rejection:
            raise Rejection("played_at must be an ISO-8601 time string") from None
    # id, sent_at and ttl as a hug event has them: one receipt kept per id, and a
    # stale one expired (a receipt from an older pillow has none: kept as it comes).
    ident = data.get("id")
    if ident is not None:
        ident = _text(ident, "id", MAX_ID) if isinstance(ident, str) else None
        if ident is None:
            raise Rejection("id must be a string")
    sent_at = parse_time(data["sent_at"]) if data.get("sent_at") is not None else None
    ttl = _number(data["ttl"], "ttl", 1, 7 * 24 * 3600) if data.get("ttl") is not None \
        else None
    return Command(scene=None, event="receipt", pillow=pillow, sender=pillow,
                   partner=True, of=of, played_at=played_at, id=ident or None,
                   sent_at=sent_at, ttl=ttl,
                   quiet=data.get("quiet") is True, expired=data.get("expired") is True,
                   superseded=data.get("superseded") is True)


def _reply_to(value) -> dict:
    """reply_to as {"id", "from"}: the message a hug answers (its from may be null)."""
    if not isinstance(value, dict):
        raise Rejection(f'reply_to must be an object like {{"id": "…", "from": "…"}}, '
                        f"not {type(value).__name__}")
    unknown = sorted(set(value) - _REPLY_TO)
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise Rejection(f"unknown field {shown} in reply_to (known: from, id)")
    if not isinstance(value.get("id"), str) or not value["id"]:
        raise Rejection("reply_to.id must be a non-empty string")
    sender = value.get("from")
    return {"id": _text(value["id"], "reply_to.id", MAX_ID),
            "from": None if sender is None else _text(sender, "reply_to.from", MAX_FROM)}


def encode(fields: dict, as_base64: bool = False) -> str:
    """A message body for *fields*, plain JSON or base64 as Azure Functions writes it."""
    text = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
    if as_base64:
        return base64.b64encode(text.encode("utf-8")).decode("ascii")
    return text


_HEX = re.compile(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})")


def parse_color(text: str) -> tuple[float, float, float]:
    """Return *text* ("#rrggbb", "rrggbb" or "#rgb") as an (r, g, b) tuple in 0..1."""
    match = _HEX.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        shown = repr(text if not isinstance(text, str) or len(text) <= 40
                     else text[:40] + "…")
        raise ValueError(f"{shown} is not a colour: expected '#rrggbb', 'rrggbb' or '#rgb'")
    digits = match.group(1)
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return tuple(int(digits[i:i + 2], 16) / 255 for i in (0, 2, 4))
