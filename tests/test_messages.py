"""Message bodies: JSON, bare words and base64, with clear reasons for rejections."""

import base64
import json

import pytest

from pillowd.config import parse
from pillowd.family import FamilyKey
from pillowd.messages import MAX_BODY, Rejection, command_from, decode, encode

SETTINGS = parse('''
[scenes.idle]
effect = "solid"
[scenes.hug]
effect = "breathe"
color = "#ff6ec7"
duration = 10
max_duration = 60
aliases = ["HUGGING"]
''')


def reason(body):
    with pytest.raises(Rejection) as caught:
        decode(body, SETTINGS)
    return str(caught.value)


def test_full_message():
    c = decode(json.dumps({"scene": "hug", "color": "#ff8800", "brightness": 0.8,
                           "duration": 10, "from": "Alice", "text": "thinking of you",
                           "id": "abc", "sent_at": "2026-11-24T10:00:00Z", "ttl": 600}),
               SETTINGS)
    assert c.scene.name == "hug" and c.color == (1.0, 0x88 / 255, 0.0)
    assert c.brightness == 0.8 and c.duration == 10 and c.sender == "Alice"
    assert c.text == "thinking of you" and c.id == "abc" and c.ttl == 600
    assert c.sent_at.isoformat() == "2026-11-24T10:00:00+00:00"


@pytest.mark.parametrize("body", ["hug", " hug\n", "HUGGING", "hugging"])
def test_bare_words_and_aliases(body):
    assert decode(body, SETTINGS).scene.name == "hug"


def test_base64_is_detected_per_message():
    plain = json.dumps({"scene": "hug", "from": "Bob"})
    encoded = base64.b64encode(plain.encode()).decode()
    assert decode(encoded, SETTINGS).sender == "Bob"
    assert decode(encode({"scene": "hug"}, as_base64=True), SETTINGS).scene.name == "hug"
    assert decode(base64.b64encode(b"hug").decode(), SETTINGS).scene.name == "hug"


def test_a_word_that_is_also_base64_stays_a_word():
    # "idle" is valid base64 (4 letters) but is a scene name: it must not be decoded.
    assert decode("idle", SETTINGS).scene.name == "idle"
    # Valid base64 that decodes to no message is not a scene either: a clear reason.
    assert "unknown scene 'abcd'" in reason("abcd")


def test_duration_is_capped_by_the_scene():
    assert decode('{"scene": "hug", "duration": 3600}', SETTINGS).duration == 60
    assert decode('{"scene": "hug", "duration": 0}', SETTINGS).duration == 60


@pytest.mark.parametrize("body, why", [
    ("", "body is empty"),
    ("{", "neither JSON nor a scene name"),
    ("[1, 2]", "must be a JSON object"),
    ('{"from": "x"}', "scene is missing"),
    ('{"scene": "nap"}', "unknown scene 'nap'"),
    ('{"scene": 3}', "scene must be a non-empty string"),
    ('{"scene": "hug", "brightness": 2}', "brightness must be between 0 and 1"),
    ('{"scene": "hug", "brightness": true}', "brightness must be a number"),
    ('{"scene": "hug", "duration": -1}', "duration must be between"),
    ('{"scene": "hug", "color": "red"}', "is not a colour"),
    ('{"scene": "hug", "from": "' + "x" * 65 + '"}', "from is 65 characters; at most 64"),
    ('{"scene": "hug", "text": "' + "x" * 281 + '"}', "text is 281 characters; at most 280"),
    ('{"scene": "hug", "text": "a\\u0000b"}', "control characters"),
    ('{"scene": "hug", "sent_at": "yesterday"}', "not an ISO-8601 time"),
    ('{"scene": "hug", "ttl": 0}', "ttl must be between"),
    ('{"scene": "hug", "mood": "happy"}', "unknown field 'mood'"),
    ('{"scene": "hug", "brightness": NaN}', "brightness must be between"),
    ("[" * 100_000 + "]" * 100_000, "larger than"),
    ("[" * 20_000 + "]" * 20_000, "neither JSON nor a scene name"),
])
def test_rejections_say_why(body, why):
    assert why in reason(body)


def test_size_limits():
    assert "larger than" in reason(json.dumps({"scene": "hug", "pad": "x" * MAX_BODY}))
    assert "not UTF-8" in reason(b"\xff\xfe{}")
    assert decode(b'{"scene": "hug"}', SETTINGS).scene.name == "hug"


def test_an_integer_too_large_for_a_float_is_rejected_not_a_crash():
    huge = "1" + "0" * 400
    assert "duration must be between" in reason('{"scene": "hug", "duration": %s}' % huge)
    assert "brightness must be between" in reason('{"scene": "hug", "brightness": -%s}' % huge)


FAMILY = FamilyKey.generate()
HUG = {"scene": "hug", "from": "bob", "id": "e-1", "ttl": 600,
       "sent_at": "2026-11-24T10:00:00Z", "event": "hug", "pillow": "bob",
       "reply_to": {"id": "e-0", "from": "alice"}}


def test_a_signed_hug_event_carries_event_pillow_and_reply_to():
    c = decode(json.dumps(FAMILY.signed(HUG)), SETTINGS, FAMILY)
    assert (c.event, c.pillow, c.reply_to) == ("hug", "bob", {"id": "e-0", "from": "alice"})
    assert c.partner is True and c.forged is False
    # Base64 as Azure Functions sends it, keys in another order: the same event.
    again = decode(encode(dict(reversed(FAMILY.signed(HUG).items())), as_base64=True),
                   SETTINGS, FAMILY)
    assert again.partner and again.reply_to == c.reply_to
    signed = FAMILY.signed({"scene": "hug", "reply_to": None})
    assert decode(json.dumps(signed), SETTINGS, FAMILY).reply_to is None
    signed = FAMILY.signed({"scene": "hug", "reply_to": {"id": "x"}})
    assert decode(json.dumps(signed), SETTINGS, FAMILY).reply_to == {"id": "x", "from": None}


def guessed(sig: str) -> str:
    """*sig* with its first character changed: the last one of base64url carries
    unused bits, so changing it could leave the same signature (1 time in 16)."""
    return ("B" if sig[0] != "B" else "C") + sig[1:]


@pytest.mark.parametrize("body, key", [
    (HUG, FAMILY),                                    # no sig (an invite's forgery)
    ({**FAMILY.signed(HUG), "from": "mallory"}, FAMILY),   # a field changed after signing
    ({**FAMILY.signed(HUG), "text": "hi"}, FAMILY),        # a field added
    (FamilyKey.generate().signed(HUG), FAMILY),       # another family's key
    ({**HUG, "sig": guessed(FAMILY.sign(HUG))}, FAMILY),   # a guessed sig
    (FAMILY.signed(HUG), None),                       # a pillow with no key trusts none
])
def test_a_partner_claim_without_a_valid_sig_plays_as_an_ordinary_message(body, key):
    c = decode(json.dumps(body), SETTINGS, key)
    assert (c.event, c.pillow, c.reply_to, c.partner) == (None, None, None, False)
    assert c.forged is True
    assert c.sender == body["from"] and c.id == "e-1" and c.scene.name == "hug"


def test_an_ordinary_message_is_neither_partner_nor_forged():
    c = decode('{"scene": "hug", "from": "carol"}', SETTINGS, FAMILY)
    assert (c.partner, c.forged) == (False, False)
    # A web request or Home Assistant command never speaks for a partner either.
    c = command_from(FAMILY.signed({"scene": "hug", "event": "hug", "pillow": "bob"}),
                     SETTINGS)
    assert (c.event, c.pillow, c.partner, c.forged) == (None, None, False, True)


@pytest.mark.parametrize("sig, why", [
    (5, "sig must be a string, not int"),
    ("s" * 129, "sig is 129 characters; at most 128"),
    ("ab\ncd", "sig contains control or format characters (U+000A)"),
])
def test_sig_is_bounded(sig, why):
    assert why in reason(json.dumps({"scene": "hug", "sig": sig}))


@pytest.mark.parametrize("field, value, char", [
    ("id", "x\nERROR pillowd: FORGED LOG LINE", "U+000A"),   # the issue's
    ("id", "a\rb", "U+000D"),
    ("from", "\x1b]0;owned\x07Bob", "U+001B"),             # a window title
    ("from", "Bob\x9b2J", "U+009B"),                        # C1 CSI
    ("from", "bob\u202egnp.exe", "U+202E"),                 # bidi override (Cf)
    ("from", "bo\u200db", "U+200D"),                        # zero-width joiner (Cf)
    ("id", "a\u2028b", "U+2028"),                           # line separator (Zl)
    ("id", "a\u2029b", "U+2029"),                           # paragraph separator (Zp)
    ("from", "tab\there", "U+0009"),
])
def test_id_and_from_hold_no_control_or_format_character(field, value, char):
    assert f"{field} contains control or format characters ({char})" in \
        reason(json.dumps({"scene": "hug", field: value}))


def test_text_may_hold_line_breaks_and_no_other_control_character():
    note = "roses are red\nviolets are blue\r\nsee you soon 👨\u200d👩\u200d👧"
    assert decode(json.dumps({"scene": "hug", "text": note}), SETTINGS).text == note
    for bad, char in (("\x1b[2J\x1b[H", "U+001B"), ("a\tb", "U+0009"),
                      ("\x9b2J", "U+009B"), ("a\u2028b", "U+2028"),
                      ("evil\u202etxt", "U+202E"), ("\x00", "U+0000")):
        assert f"text contains control characters ({char}; only line breaks" in \
            reason(json.dumps({"scene": "hug", "text": bad}))

def test_a_partners_receipt_has_no_scene_and_counts_only_when_signed():
    from pillowd.family import FamilyKey
    family = FamilyKey.generate()
    receipt = {"event": "receipt", "of": "e-1", "pillow": "bob",
               "played_at": "2026-11-24T10:00:01.000Z", "quiet": True}
    c = decode(json.dumps(family.signed(receipt)), SETTINGS, family)
    assert (c.scene, c.event, c.of, c.pillow, c.sender, c.quiet, c.partner) == (
        None, "receipt", "e-1", "bob", "bob", True, True)
    assert c.played_at.isoformat() == "2026-11-24T10:00:01+00:00"
    for body in (receipt, FamilyKey.generate().signed(receipt)):
        with pytest.raises(Rejection, match="signed by the family's key"):
            decode(json.dumps(body), SETTINGS, family)
    with pytest.raises(Rejection, match="unknown field 'scenery' in a receipt"):
        decode(json.dumps(family.signed({**receipt, "scenery": 1})), SETTINGS, family)


@pytest.mark.parametrize("fields, why", [
    ({"reply_to": "e-0"}, "reply_to must be an object"),
    ({"reply_to": {"id": "e-0", "at": "now"}}, "unknown field 'at' in reply_to"),
    ({"reply_to": {"from": "alice"}}, "reply_to.id must be a non-empty string"),
    ({"reply_to": {"id": 7}}, "reply_to.id must be a non-empty string"),
    ({"reply_to": {"id": "e" * 257}}, "reply_to.id is 257 characters; at most 256"),
    ({"reply_to": {"id": "e-0", "from": "a" * 65}}, "reply_to.from is 65 characters"),
    ({"event": "h" * 33}, "event is 33 characters; at most 32"),
    ({"event": 1}, "event must be a string, not int"),
    ({"pillow": "p" * 65}, "pillow is 65 characters; at most 64"),
    ({"pillow": "bob\u202e"}, "pillow contains control or format characters"),
])
def test_hug_event_fields_are_bounded_and_say_why(fields, why):
    assert why in reason(json.dumps({"scene": "hug", **fields}))
