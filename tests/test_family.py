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


def test_a_key_mangled_by_hand_is_refused_not_read_as_another_key():
    # base64 decoding skips characters outside its alphabet: a stray one would give
    # a different key, and every partner's hug would then play as a stranger's.
    text = FamilyKey.generate().text()
    for mangled in (text[:10] + "!" + text[10:], text[:10] + " " + text[10:],
                    text[:10] + "\n" + text[10:], text[:10] + "/" + text[11:]):
        with pytest.raises(FamilyKeyError, match="not base64url"):
            FamilyKey.from_text(mangled)
    assert FamilyKey.from_text(f"  {text}\n").text() == text   # around it: fine


def test_the_tokens_file_holds_the_family_key_beside_the_tokens(tmp_path):
    from pillowd.errors import PillowError
    from pillowd.queues.tokens import family_key, read_family_key, read_tokens
    key = FamilyKey.generate()
    text = f'"pillow-alice" = "?sv=1&sig=x"\nfamily_key = "{key.text()}"\n'
    assert read_tokens(text, "f") == {"pillow-alice": "sv=1&sig=x"}   # no queue of it
    assert read_family_key(text, "f").text() == key.text()
    assert read_family_key('"pillow-alice" = "sv=1"\n', "f") is None  # a pair before keys
    with pytest.raises(PillowError, match="holds no tokens"):
        read_tokens(f'family_key = "{key.text()}"\n', "f")
    for bad in ('family_key = 5\n', 'family_key = "c2hvcnQ"\n'):
        with pytest.raises(PillowError) as err:
            read_family_key(bad, "the file")
        assert str(err.value).startswith("the file: ") and "c2hvcnQ" not in str(err.value)

    # Where the daemon finds it: the credential azure-queue-sas, else queue.sas_file.
    (tmp_path / "queue-sas.toml").write_text(text)
    assert family_key("queue-sas.toml", tmp_path, {}).text() == key.text()
    other = FamilyKey.generate()
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "azure-queue-sas").write_text(f'family_key = "{other.text()}"\n')
    environ = {"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")}
    assert family_key("queue-sas.toml", tmp_path, environ).text() == other.text()
    assert family_key("", tmp_path, {}) is None
    assert family_key("missing.toml", tmp_path, {}) is None  # a connection string's pillow
