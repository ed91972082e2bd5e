"""Hostile input, fuzzed: every bad body is rejected with a reason and the pillow keeps going."""

from __future__ import annotations

import base64
import json
import math
import random
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import BASE_CONFIG, PillowProcess, wait_for

import pillowd.queues.local as local
from pillowd.config import parse
from pillowd.messages import (MAX_BODY, MAX_FROM, MAX_REASON, MAX_TEXT, Command,
                              Rejection, decode)

SETTINGS = parse(BASE_CONFIG.format(state_dir="/nonexistent"))
CONTROL = {chr(c) for c in [*range(0, 9), *range(11, 32), 127]}

# -- what hostile bodies look like ------------------------------------------------

nasty_text = st.one_of(
    st.text(st.characters(codec=None, exclude_categories=()), max_size=300),  # surrogates too
    st.sampled_from(["<img src=x onerror=alert(1)>", "<script>alert(1)</script>",
                     "\u202eevil", "a\x00b", "\x1b[31mred", "&lt;b&gt;", "\ud800",
                     "x" * 65, "y" * 281, "💖" * 70, "", " "]))
nasty_number = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-10 ** 30, 10 ** 30),
    st.sampled_from([1e308, -1e308, -0.0, 0, 5e-324, 2 ** 63, True, False]))
json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), nasty_number, nasty_text),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(nasty_text, inner, max_size=4),
    max_leaves=12)
field_value = st.one_of(json_value, nasty_text, nasty_number,
                        st.sampled_from(["hug", "glow", "HUGGING", "idle", "#ff8800", "#fff",
                                         "2026-11-24T10:00:00Z", "not a time", "9" * 50]))
message_dict = st.dictionaries(
    st.one_of(st.sampled_from(["scene", "color", "brightness", "duration", "from", "text",
                               "id", "sent_at", "ttl"]), nasty_text),
    field_value, max_size=9)


def as_body(data, how: str) -> str:
    text = json.dumps(data, ensure_ascii=(how == "ascii"))
    if how == "base64":
        return base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()
    return text


def deep(depth: int, opener="[", closer="]") -> str:
    return opener * depth + closer * depth


bodies = st.one_of(
    st.binary(max_size=400),
    st.binary(max_size=200).map(lambda b: b"\xff\xfe" + b),             # never UTF-8
    st.text(st.characters(codec=None, exclude_categories=()), max_size=400),
    st.builds(as_body, message_dict, st.sampled_from(["plain", "ascii", "base64"])),
    st.builds(as_body, st.fixed_dictionaries({"scene": st.sampled_from(["hug", "glow"])},
                                             optional={"from": nasty_text, "text": nasty_text,
                                                       "brightness": nasty_number,
                                                       "duration": nasty_number,
                                                       "ttl": nasty_number,
                                                       "id": field_value}),
              st.sampled_from(["plain", "ascii", "base64"])),
    st.integers(1, 40_000).map(deep),
    st.integers(1, 20_000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.integers(MAX_BODY - 10, MAX_BODY + 10).map(lambda n: "x" * n),
    st.integers(0, 70_000).map(lambda n: json.dumps({"scene": "hug", "text": "z" * n})),
    st.sampled_from(["NaN", "-0", "1e308", "Infinity", "null", "[]", "\"hug\"", "hug ",
                     '{"scene": "hug", "brightness": NaN}', '{"scene": "hug", "duration": -0}',
                     '{"scene": "hug", "brightness": 1e999}', "aHVn", "e30=",
                     '{"scene": "hug", "id": ' + "9" * 5000 + "}"]),
)


def check_decoded(body) -> str | None:
    """Decode *body*: a valid command that keeps every promise, or a reason; never a crash."""
    try:
        command = decode(body, SETTINGS)
    except Rejection as err:
        reason = str(err)
        assert reason and len(reason) <= MAX_REASON
        reason.encode("utf-8")  # a reason is stored and shown: it must be real text
        return reason
    assert isinstance(command, Command)
    assert command.scene.name in SETTINGS.scenes
    assert 0 <= command.brightness <= 1 and math.isfinite(command.brightness)
    if command.duration is not None:
        assert 0 <= command.duration <= command.scene.max_duration
    for value, limit in ((command.sender, MAX_FROM), (command.text, MAX_TEXT),
                         (command.id, 256)):
        if value is not None:
            assert len(value) <= limit and not CONTROL & set(value)
            value.encode("utf-8")
    return None


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(bodies)
def test_decode_never_raises_anything_but_a_rejection(body):
    check_decoded(body)


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(message_dict)
def test_wrong_types_and_extreme_values_are_rejected_not_coerced(data):
    reason = check_decoded(json.dumps(data))
    if reason is None:  # the fuzz made a valid message: it must really be one
        assert isinstance(data.get("scene"), str)
        for key in ("brightness", "duration", "ttl"):
            value = data.get(key)
            assert value is None or (type(value) in (int, float) and math.isfinite(value))


@pytest.mark.parametrize("body, reason", [
    (b"\xc3\x28", "not UTF-8"),
    (deep(30_000), "neither JSON"),
    ('{"scene": "hug", "from": "\\ud800"}', "lone surrogate"),
    ('{"scene": "hug", "color": "' + "f" * 60_000 + '"}', "colour"),
    ('{"scene": "hug", "brightness": NaN}', "brightness"),
    ('{"scene": "hug", "duration": 1e308}', "duration"),
    ('{"scene": "hug", "from": "a\\u0007b"}', "control or format characters"),
    ("x" * (MAX_BODY + 1), "larger than"),
])
def test_known_nasty_bodies_are_rejected_with_a_readable_reason(body, reason):
    assert reason in check_decoded(body)


# -- end to end, through the real daemon ----------------------------------------

ONE_AT_A_TIME = BASE_CONFIG.replace("max_dequeue_count = 3",
                                    "max_dequeue_count = 3\nbatch_size = 1")


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
def test_a_stream_of_fuzzed_bodies_through_the_daemon(make_config, pillow_env):
    """Bad bodies are rejected with decode's reason and poisoned; valid ones between
    them all play (batch_size 1, so none is superseded); the loop never dies."""
    rng = random.Random(8)
    nasty = [bodies.example() for _ in range(60)]  # hypothesis draws, one batch
    nasty += ["\x00\x01\x02", '{"scene": "hug", "from": "\\ud800"}', deep(30_000),
              '{"scene": "hug", "from": "<script>alert(1)</script>", "text": "<b>x</b>"}']
    p = PillowProcess(make_config(base=ONE_AT_A_TIME), pillow_env).start()
    store = local.LocalStore(p.config.parent / "state" / "queue.sqlite3")
    queue = store.queue("pillow")
    expected = {}
    try:
        for n, body in enumerate(nasty):
            if isinstance(body, bytes):  # a queue holds text: bytes arrive as Latin-1
                body = body.decode("latin-1")
            try:
                queue_id = queue.put(body)
            except UnicodeEncodeError:  # SQLite refuses a raw lone surrogate outright
                continue
            expected[queue_id] = check_decoded(body)
            valid = queue.put(json.dumps({"scene": rng.choice(["hug", "glow"]),
                                          "id": f"valid-{n}", "from": "fuzz"}))
            expected[valid] = None
        wait_for(lambda: p.state()["queue"]["applied"] + p.state()["queue"]["rejected"]
                 + p.state()["queue"]["duplicate"] >= len(expected), timeout=60,
                 message="every fuzzed message to have an outcome")
        assert p.get("/healthz").status_code == 200
        assert p.state()["queue"]["online"] is True
        items = p.get("/api/history", params={"limit": 1000}).json()["items"]
        poison = [json.loads(m.body)["original"] for m in
                  store.queue("pillow-poison").peek(32)]
    finally:
        store.close()
        p.stop()
    db = sqlite3.connect(p.config.parent / "state" / "history.sqlite3")
    rows = dict(db.execute("SELECT queue_message_id, outcome || ':' || coalesce(reason, '')"
                           " FROM outcomes"))
    db.close()
    assert len(items) == len(rows) == len(expected)
    for queue_id, reason in expected.items():
        outcome, _, recorded = rows[queue_id].partition(":")
        if reason is None:
            # A fuzzed body may by chance repeat an id already applied.
            assert outcome in ("applied", "duplicate"), (queue_id, rows[queue_id])
        else:
            assert (outcome, recorded) == ("rejected", reason)
    assert sum(r is None for r in expected.values()) > 60
    # Each rejected body is kept whole in poison (peek shows the first 32).
    assert len(poison) == min(32, sum(r is not None for r in expected.values()))
