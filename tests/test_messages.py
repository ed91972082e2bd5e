"""Message bodies: JSON, bare words and base64, with clear reasons for rejections."""

import base64
import json

import pytest

from pillowd.config import parse
from pillowd.messages import MAX_BODY, Rejection, decode, encode

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


def test_a_hug_event_carries_event_pillow_and_reply_to():
    from pillowd.family import FamilyKey
    family = FamilyKey.generate()
    hug = {"scene": "hug", "from": "bob", "id": "e-1", "ttl": 600,
           "sent_at": "2026-11-24T10:00:00Z", "event": "hug",
           "pillow": "bob", "reply_to": {"id": "e-0", "from": "alice"}}
    c = decode(json.dumps(family.signed(hug)), SETTINGS, family)
    assert (c.event, c.pillow, c.reply_to, c.partner) == (
        "hug", "bob", {"id": "e-0", "from": "alice"}, True)
    # Unsigned, or signed by another family: an ordinary message from its `from`.
    for body in (hug, FamilyKey.generate().signed(hug)):
        c = decode(json.dumps(body), SETTINGS, family)
        assert (c.event, c.pillow, c.reply_to, c.partner, c.sender) == (
            None, None, None, False, "bob")
    signed = {"scene": "hug", "event": "hug", "pillow": "bob"}
    assert decode(json.dumps(family.signed({**signed, "reply_to": None})), SETTINGS,
                  family).reply_to is None
    assert decode(json.dumps(family.signed({**signed, "reply_to": {"id": "x"}})),
                  SETTINGS, family).reply_to == {"id": "x", "from": None}


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
    ({"pillow": "bob\u202e"}, "pillow contains control characters"),
])
def test_hug_event_fields_are_bounded_and_say_why(fields, why):
    assert why in reason(json.dumps({"scene": "hug", **fields}))
