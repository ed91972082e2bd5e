"""The family key: a partner's signature holds for exactly the fields it signed."""

from __future__ import annotations

import pytest

from pillowd.family import FamilyKey, FamilyKeyError


def test_a_signed_event_verifies_whatever_its_key_order():
    key = FamilyKey.generate()
    event = {"scene": "hug", "from": "alice", "event": "hug", "pillow": "alice", "id": "e1"}
    signed = key.signed(event)
    assert key.verify(dict(reversed(list(signed.items()))))


def test_a_changed_field_or_another_family_fails():
    key = FamilyKey.generate()
    signed = key.signed({"event": "hug", "pillow": "alice", "from": "alice"})
    assert not key.verify({**signed, "from": "mallory"})
    assert not key.verify({**signed, "extra": 1})
    assert not FamilyKey.generate().verify(signed)
    assert not key.verify({k: v for k, v in signed.items() if k != "sig"})
    assert not key.verify({**signed, "sig": 42})
    assert not key.verify({**signed, "sig": "\ud800"})


def test_the_key_round_trips_as_text_and_is_never_shown():
    key = FamilyKey.generate()
    again = FamilyKey.from_text(key.text())
    assert again.verify(key.signed({"event": "hug"}))
    assert key.text() not in repr(key)
    with pytest.raises(FamilyKeyError):
        FamilyKey.from_text("c2hvcnQ")  # "short"
    with pytest.raises(FamilyKeyError):
        FamilyKey.from_text("not base64 ✗")
