"""pillowd pair, invite and revoke on Azurite: each token may do what its pillow needs and
nothing else, a second run changes nothing, a full queue is named, a paired pillow runs."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tomllib

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.storage.queue import AccessPolicy, QueueClient

from conftest import BASE_CONFIG, PillowProcess, fill, run_cli, wait_for
from pillowd.config import load as load_config

WRONG_KEY = "bm90IHRoZSBhY2NvdW50IGtleSwgYnV0IHNoYXBlZCBsaWtlIG9uZQ=="


@pytest.fixture
def prefix(request):
    # Azurite is shared by the session: every test pairs under a prefix of its own.
    return "p" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:10] + "-"


@pytest.fixture
def owner(azurite):
    """The owner's environment: the account key, and nothing of the test runner's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "PILLOWD_"))}
    env["AZURE_STORAGE_CONNECTION_STRING"] = azurite.connection_string()
    return env


def pillowd(env, *args, check=True):
    return run_cli(*args, env=env, check=check)


def one_line_error(result, *words):
    """The command failed with exit 1 and one line naming *words*, no traceback."""
    assert result.returncode == 1, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pillowd: "), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def tokens_of(folder):
    return tomllib.loads((folder / "queue-sas.toml").read_text())


def queue_tokens(folder):
    """The SAS tokens alone, without the family key."""
    return {q: t for q, t in tokens_of(folder).items() if q != "family_key"}


def client(azurite, queue, token):
    return QueueClient(azurite.endpoint, queue, credential=token)


def policies(azurite, queue):
    """{policy: (permission, expiry, start)} as Azure keeps them on *queue*."""
    found = azurite.service().get_queue_client(queue).get_queue_access_policy()
    return {name: (p.permission, p.expiry, p.start) for name, p in found.items()}


def until(expiry):
    """A policy's expiry as a datetime (Azure gives the ISO text back)."""
    from datetime import datetime
    return datetime.fromisoformat(expiry.replace("Z", "+00:00"))


def refused(operation):
    with pytest.raises(HttpResponseError) as err:
        operation()
    assert err.value.status_code == 403, err.value
    return True


def check_least_privilege(azurite, owner_service, name, partners, prefix, tokens):
    """Every operation a pillow's tokens should allow works; every other one is 403."""
    own, poison = f"{prefix}{name}", f"{prefix}{name}-poison"
    assert set(tokens) == {own, poison, *(f"{prefix}{p}" for p in partners)}

    mine = client(azurite, own, tokens[own])
    owner_service.get_queue_client(own).send_message(f"for {name}")
    assert [m.content for m in mine.peek_messages()] == [f"for {name}"]      # read
    assert mine.get_queue_properties().approximate_message_count == 1
    (message,) = mine.receive_messages(visibility_timeout=30)                # process
    mine.update_message(message, visibility_timeout=0)           # update: give it back
    (message,) = mine.receive_messages(visibility_timeout=30)    # back at once
    mine.delete_message(message)                                             # process
    refused(lambda: mine.send_message("to myself"))                          # no add
    refused(mine.clear_messages)
    refused(mine.delete_queue)
    refused(mine.create_queue)
    refused(lambda: mine.set_queue_metadata({"a": "b"}))
    refused(mine.get_queue_access_policy)
    refused(lambda: mine.set_queue_access_policy({}))

    dead_letters = client(azurite, poison, tokens[poison])
    dead_letters.send_message("bad one")                                     # add
    assert [m.content for m in dead_letters.peek_messages()] == ["bad one"]  # read
    (bad,) = dead_letters.receive_messages()
    dead_letters.delete_message(bad)                                         # process
    refused(dead_letters.delete_queue)
    refused(dead_letters.create_queue)

    for partner in partners:
        queue = f"{prefix}{partner}"
        theirs = client(azurite, queue, tokens[queue])
        theirs.send_message(f"hug from {name}")                              # add
        refused(theirs.peek_messages)                  # cannot read a partner's hugs
        refused(lambda: list(theirs.receive_messages()))
        refused(theirs.get_queue_properties)
        refused(theirs.clear_messages)
        refused(theirs.delete_queue)
        refused(theirs.create_queue)
        # Taken back by the owner: the next pillow's check starts from an empty queue.
        owner_service.get_queue_client(queue).clear_messages()
    # A token is bound to its queue: used on another one, the signature fails.
    refused(lambda: client(azurite, f"{prefix}{partners[0]}-poison",
                           tokens[own]).peek_messages())


def test_pair_two_writes_each_pillow_least_privilege_tokens(azurite, owner, prefix,
                                                            tmp_path):
    out = tmp_path / "out"
    result = pillowd(owner, "pair", "Alice", "bob", "--out", str(out), "--prefix", prefix)
    assert str(out / "alice" / "queue.toml") in result.stdout  # names lower-cased
    assert "sig=" not in result.stdout + result.stderr

    for name, partner in (("alice", "bob"), ("bob", "alice")):
        folder = out / name
        assert stat.S_IMODE((folder / "queue-sas.toml").stat().st_mode) == 0o600
        config = tomllib.loads((folder / "queue.toml").read_text())
        assert config == {
            "pillow": {"name": name, "roster_name": name},
            "queue": {"backend": "azure", "account_url": azurite.endpoint + "/",
                      "name": f"{prefix}{name}", "poison_name": f"{prefix}{name}-poison",
                      "sas_file": "queue-sas.toml"},
            # The family's roster: each partner by its name, and where its hugs go.
            "partners": {partner: {"queue": f"{prefix}{partner}"}}}
        assert "sig=" not in (folder / "queue.toml").read_text()
        check_least_privilege(azurite, azurite.service(), name, [partner], prefix,
                              queue_tokens(folder))

    # One policy per pillow on each queue it may touch, and only those.
    assert {q: sorted(policies(azurite, q)) for q in (
        f"{prefix}alice", f"{prefix}alice-poison", f"{prefix}bob", f"{prefix}bob-poison")} \
        == {f"{prefix}alice": ["alice", "bob"], f"{prefix}alice-poison": ["alice"],
            f"{prefix}bob": ["alice", "bob"], f"{prefix}bob-poison": ["bob"]}
    assert policies(azurite, f"{prefix}alice")["bob"][0] == "a"
    assert policies(azurite, f"{prefix}alice")["alice"][0] == "rup"
    assert policies(azurite, f"{prefix}alice-poison")["alice"][0] == "rap"


def test_three_pillows_each_hug_all_the_others(azurite, owner, prefix, tmp_path):
    pillowd(owner, "pair", "ann", "ben", "cat", "--out", str(tmp_path), "--prefix", prefix,
            "--color", "ben=#3366FF")
    for name in ("ann", "ben", "cat"):
        partners = [p for p in ("ann", "ben", "cat") if p != name]
        config = tomllib.loads((tmp_path / name / "queue.toml").read_text())
        assert config["partners"] == {
            p: {"queue": f"{prefix}{p}", **({"color": "#3366ff"} if p == "ben" else {})}
            for p in partners}
        settings = load_config(tmp_path / name / "queue.toml")
        assert settings.roster == {p: f"{prefix}{p}" for p in partners}
        assert settings.outbound_names == tuple(f"{prefix}{p}" for p in partners)
        assert sorted(policies(azurite, f"{prefix}{name}")) == ["ann", "ben", "cat"]
        check_least_privilege(azurite, azurite.service(), name, partners, prefix,
                              queue_tokens(tmp_path / name))
    # The written queue.toml is a valid config on its own (check-config agrees).
    assert pillowd(owner, "check-config", "--config",
                   str(tmp_path / "ann" / "queue.toml")).returncode == 0


def test_a_second_run_changes_nothing_and_days_renews_with_the_same_tokens(
        azurite, owner, prefix, tmp_path):
    queues = [f"{prefix}{n}{s}" for n in ("alice", "bob") for s in ("", "-poison")]
    pillowd(owner, "pair", "alice", "bob", "--out", str(tmp_path / "one"), "--prefix",
            prefix, "--days", "30")
    before = {q: policies(azurite, q) for q in queues}

    pillowd(owner, "pair", "bob", "alice", "--out", str(tmp_path / "two"), "--prefix", prefix)
    assert {q: policies(azurite, q) for q in queues} == before  # expiry kept too
    for name in ("alice", "bob"):
        assert (tmp_path / "one" / name / "queue.toml").read_text() == \
            (tmp_path / "two" / name / "queue.toml").read_text()
        # The same tokens; the family key is the folder's (a new folder, a new key).
        assert queue_tokens(tmp_path / "one" / name) == queue_tokens(tmp_path / "two" / name)

    # --days again renews every policy; the tokens, bound to the policies, stay.
    pillowd(owner, "pair", "alice", "bob", "--out", str(tmp_path / "three"), "--prefix",
            prefix, "--days", "400")
    after = {q: policies(azurite, q) for q in queues}
    assert after != before
    for queue in queues:
        assert {n: p[0] for n, p in after[queue].items()} == \
            {n: p[0] for n, p in before[queue].items()}
        assert all(after[queue][n][1] > before[queue][n][1] for n in after[queue])
    assert queue_tokens(tmp_path / "three" / "alice") == \
        queue_tokens(tmp_path / "one" / "alice")


def test_pair_writes_one_family_key_and_a_second_run_keeps_it_and_the_tokens(
        azurite, owner, prefix, tmp_path):
    from pillowd.family import FamilyKey
    out = tmp_path / "out"
    pillowd(owner, "pair", "alice", "bob", "--out", str(out), "--prefix", prefix)
    files = {n: (out / n / "queue-sas.toml").read_text() for n in ("alice", "bob")}
    keys = {n: tokens_of(out / n)["family_key"] for n in ("alice", "bob")}
    assert keys["alice"] == keys["bob"]                          # one key, the family's
    key = FamilyKey.from_text(keys["alice"])
    assert key.verify(key.signed({"event": "hug"}))
    assert stat.S_IMODE((out / "alice" / "queue-sas.toml").stat().st_mode) == 0o600

    tokens = queue_tokens(out / "alice")
    # Again into the same folder: the key and the tokens stay, byte for byte.
    pillowd(owner, "pair", "bob", "alice", "--out", str(out), "--prefix", prefix)
    assert {n: (out / n / "queue-sas.toml").read_text() for n in ("alice", "bob")} == files
    # A pillow joins the family: it gets the family's key.
    pillowd(owner, "pair", "alice", "bob", "cat", "--out", str(out), "--prefix", prefix)
    assert tokens_of(out / "cat")["family_key"] == keys["alice"]
    assert {q: queue_tokens(out / "alice")[q] for q in tokens} == tokens

    # A pair made before family keys: its files lack one; pair again adds it, and
    # leaves the tokens as they were.
    old = tmp_path / "old"
    pillowd(owner, "pair", "alice", "bob", "--out", str(old), "--prefix", prefix)
    before = {}
    for name in ("alice", "bob"):
        path = old / name / "queue-sas.toml"
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(x for x in lines if "family" not in x))
        before[name] = queue_tokens(old / name)
        assert "family_key" not in tokens_of(old / name)
    pillowd(owner, "pair", "alice", "bob", "--out", str(old), "--prefix", prefix)
    assert {n: queue_tokens(old / n) for n in ("alice", "bob")} == before
    assert tokens_of(old / "alice")["family_key"] == tokens_of(old / "bob")["family_key"]

    # Two families' folders side by side: said plainly, nothing written or changed.
    (old / "cat").mkdir()
    (out / "cat" / "queue-sas.toml").rename(old / "cat" / "queue-sas.toml")
    kept = (old / "alice" / "queue-sas.toml").read_text()
    line = one_line_error(pillowd(owner, "pair", "alice", "cat", "--out", str(old),
                                  "--prefix", prefix, check=False),
                          "hold different family keys")
    assert keys["alice"] not in line
    assert (old / "alice" / "queue-sas.toml").read_text() == kept


def test_a_rewrite_that_fails_on_a_full_disk_keeps_the_old_folder_whole(small_disk):
    """The family key lives only in these files: a rewrite cut short (a full disk, a
    crash) must leave the old one whole, or the next pair would make a new key."""
    from pillowd.family import FamilyKey
    from pillowd.hugs.pairing import PillowFiles, family_key_in
    key = FamilyKey.generate()
    PillowFiles("alice", "[queue]\n", {"pq-alice": "sv=1&sig=a"}, key).write(small_disk)
    before = (small_disk / "alice" / "queue-sas.toml").read_text()
    fill(small_disk)
    # Many partners: each new file needs more room than the old one freed.
    many = {f"pq-friend{n}": "sv=2&sig=" + "b" * 200 for n in range(40)}
    for queue_toml in ("[queue]\n", "[queue]\n" * 1000):
        with pytest.raises(OSError):
            PillowFiles("alice", queue_toml, many, key).write(small_disk)
        assert (small_disk / "alice" / "queue-sas.toml").read_text() == before
        assert (small_disk / "alice" / "queue.toml").read_text() == "[queue]\n"
        assert family_key_in(small_disk, ["alice"]).text() == key.text()
    assert [p.name for p in (small_disk / "alice").iterdir()] in (
        ["queue.toml", "queue-sas.toml"], ["queue-sas.toml", "queue.toml"])


def test_a_rerun_upgrades_an_older_pairs_own_queue_policy_in_place(
        azurite, owner, prefix, tmp_path):
    """pair once granted "rp" on a pillow's own queue, so it could not give a message
    back; a rerun adds update to that policy, keeping its expiry and its tokens."""
    own = f"{prefix}alice"
    pillowd(owner, "pair", "alice", "bob", "--out", str(tmp_path / "old"), "--prefix",
            prefix)
    queue = azurite.service().get_queue_client(own)
    found = queue.get_queue_access_policy()
    found["alice"] = AccessPolicy(permission="rp", expiry=found["alice"].expiry)
    queue.set_queue_access_policy(found)  # as the older pair left it
    before = policies(azurite, own)
    old_token = tokens_of(tmp_path / "old" / "alice")[own]
    mine = client(azurite, own, old_token)
    queue.send_message("held")
    (message,) = mine.receive_messages(visibility_timeout=30)
    refused(lambda: mine.update_message(message, visibility_timeout=0))

    pillowd(owner, "pair", "alice", "bob", "--out", str(tmp_path / "new"), "--prefix",
            prefix)
    after = policies(azurite, own)
    assert after["alice"] == ("rup", before["alice"][1], before["alice"][2])
    assert after["bob"] == before["bob"]
    assert queue_tokens(tmp_path / "new" / "alice") == queue_tokens(tmp_path / "old" / "alice")
    # The token already on the pillow may give the message back now.
    mine.update_message(message, visibility_timeout=0)
    (back,) = mine.receive_messages(visibility_timeout=30)
    mine.delete_message(back)
    # And invite still finds the pillow whose policy was upgraded.
    pillowd(owner, "invite", "upgrade-guest", "--prefix", prefix)
    assert policies(azurite, own)["upgrade-guest"][0] == "a"


def test_a_full_queue_is_named_and_nothing_is_changed(azurite, owner, prefix, tmp_path):
    from datetime import datetime, timedelta, timezone
    service = azurite.service()
    full = service.get_queue_client(f"{prefix}bob")
    full.create_queue()
    year = datetime.now(timezone.utc) + timedelta(days=365)
    full.set_queue_access_policy({f"other{n}": AccessPolicy(permission="a", expiry=year)
                                  for n in range(5)})
    before = policies(azurite, f"{prefix}bob")

    result = pillowd(owner, "pair", "alice", "bob", "--out", str(tmp_path), "--prefix",
                     prefix, check=False)
    one_line_error(result, f"'{prefix}bob'", "5 stored access policies", "nothing was changed")
    assert policies(azurite, f"{prefix}bob") == before
    made = [q.name for q in service.list_queues(name_starts_with=prefix)]
    assert made == [f"{prefix}bob"]  # alice's queues were not made either
    assert not (tmp_path / "alice").exists()

    # Revoking two frees room for alice's and bob's; then pairing goes through.
    pillowd(owner, "revoke", "other0")
    pillowd(owner, "revoke", "other1")
    pillowd(owner, "pair", "alice", "bob", "--out", str(tmp_path), "--prefix", prefix)
    assert sorted(policies(azurite, f"{prefix}bob")) == \
        ["alice", "bob", "other2", "other3", "other4"]


def test_bad_names_and_keys_are_one_line_each(azurite, owner, prefix, tmp_path):
    out = ["--out", str(tmp_path), "--prefix", prefix]
    one_line_error(pillowd(owner, "pair", "alice", "Alice", *out, check=False),
                   "'alice' is named twice")
    one_line_error(pillowd(owner, "pair", "alice", "b_b", *out, check=False),
                   "bad name 'b_b'")
    one_line_error(pillowd(owner, "pair", "alice", "x" * 60, *out, check=False),
                   "bad queue name", "3-63")
    one_line_error(pillowd(owner, "pair", "alice", "bob", "--prefix", "Bad_", check=False),
                   "bad queue name")
    one_line_error(pillowd(owner, "pair", "alice", *out, check=False), "at least two")
    one_line_error(pillowd(owner, "pair", "alice", "bob", "--color", "bob=blue", *out,
                           check=False), "'blue' is not a colour like #3366ff")
    one_line_error(pillowd(owner, "pair", "alice", "bob", "--color", "carol=#3366ff", *out,
                           check=False), "'carol' is not one of the pillows paired")
    one_line_error(pillowd(owner, "invite", "c@rol", check=False), "bad name 'c@rol'")
    assert pillowd(owner, "pair", "alice", "bob", "--days", "0", check=False).returncode == 2

    no_key = {k: v for k, v in owner.items() if k != "AZURE_STORAGE_CONNECTION_STRING"}
    wrong = {**owner, "AZURE_STORAGE_CONNECTION_STRING":
             azurite.connection_string(key=WRONG_KEY)}
    sas_only = {**owner, "AZURE_STORAGE_CONNECTION_STRING":
                f"QueueEndpoint={azurite.endpoint};SharedAccessSignature="
                + azurite.sas_url().split("?", 1)[1]}
    for args in (["pair", "alice", "bob", *out], ["invite", "carol"], ["revoke", "carol"]):
        one_line_error(pillowd(no_key, *args, check=False),
                       "set $AZURE_STORAGE_CONNECTION_STRING")
        line = one_line_error(pillowd(wrong, *args, check=False),
                              "was refused (403 AuthenticationFailed)")
        assert WRONG_KEY not in line
    one_line_error(pillowd(sas_only, "pair", "alice", "bob", *out, check=False),
                   "holds no account key")
    not_base64 = {**owner, "AZURE_STORAGE_CONNECTION_STRING":
                  azurite.connection_string(key="abc!")}
    one_line_error(pillowd(not_base64, "pair", "alice", "bob", *out, check=False),
                   "AccountKey", "is not base64")
    assert not (tmp_path / "alice").exists()


def test_an_invite_sends_with_pillowd_and_curl_until_revoked(azurite, owner, prefix,
                                                             tmp_path):
    pillowd(owner, "pair", "alice", "bob", "--out", str(tmp_path), "--prefix", prefix)
    # A pillow's name is not free for an invite: revoking it would cut the pillow off.
    one_line_error(pillowd(owner, "invite", "bob", "--prefix", prefix, check=False),
                   "'bob' is a pillow")
    one_line_error(pillowd(owner, "invite", "carol", "--to", "zed", "--prefix", prefix,
                           check=False), "no pillow 'zed'")

    everywhere = pillowd(owner, "invite", "dave", "--prefix", prefix).stdout.split()
    # Each URL is the queue's /messages endpoint with the SAS: it works as it is.
    assert [u.split("?")[0] for u in everywhere] == \
        [f"{azurite.endpoint}/{prefix}{n}/messages" for n in ("alice", "bob")]
    (url,) = pillowd(owner, "invite", "Carol", "--to", "alice", "--days", "7",
                     "--prefix", prefix).stdout.split()
    assert policies(azurite, f"{prefix}alice")["carol"][0] == "a"
    assert "carol" not in policies(azurite, f"{prefix}bob")
    # Again: same URL, nothing changed.
    before = policies(azurite, f"{prefix}alice")
    assert pillowd(owner, "invite", "carol", "--to", "alice", "--prefix",
                   prefix).stdout.split() == [url]
    assert policies(azurite, f"{prefix}alice") == before

    sent = pillowd(owner, "send", "hug", "--from", "Carol", "--id", "carol-1",
                   "--queue-url", url)
    assert sent.stdout == "carol-1\n"
    # send also takes the bare queue URL (the form invite printed before).
    base, sas = url.split("?", 1)
    bare = f"{base.removesuffix('/messages')}?{sas}"
    assert pillowd(owner, "send", "hug", "--from", "Carol", "--id", "carol-2",
                   "--queue-url", bare).stdout == "carol-2\n"
    # docs/pairing.md's curl line: a plain HTTP POST to the URL as printed.
    posted = requests.post(url, timeout=5, data=(
        "<QueueMessage><MessageText>{\"scene\": \"hug\", \"from\": \"curl\"}"
        "</MessageText></QueueMessage>"), headers={"Content-Type": "application/xml"})
    assert posted.status_code == 201, posted.text
    # The invite adds, and nothing more.
    assert requests.get(f"{base}?peekonly=true&{sas}", timeout=5).status_code == 403
    bodies = [json.loads(m.content) for m in
              azurite.service().get_queue_client(f"{prefix}alice").peek_messages(32)]
    assert [(b.get("id"), b["from"]) for b in bodies] == \
        [("carol-1", "Carol"), ("carol-2", "Carol"), (None, "curl")]

    revoked = pillowd(owner, "revoke", "carol")
    # Revoking is account-wide: other tests' queues on this Azurite may hold a carol.
    assert [q for q in revoked.stdout.split() if q.startswith(prefix)] == [f"{prefix}alice"]

    # Azure may take up to 30 s; Azurite applies it at once. Wait for the refusal.
    def refused_now():
        result = pillowd(owner, "send", "hug", "--queue-url", url, check=False)
        return result.returncode == 1 and result
    result = wait_for(refused_now, timeout=40, interval=1, message="the revoked invite")
    line = one_line_error(result, "this invite no longer works; ask for a new one")
    assert sas.split("sig=")[1][:10] not in line
    assert requests.post(url, timeout=5,
                         data="<QueueMessage><MessageText>hug</MessageText></QueueMessage>"
                         ).status_code == 403
    # Revoking again finds nothing, and says so.
    assert pillowd(owner, "revoke", "carol").stdout == ""
    # A new policy "carol" would bring the revoked URL back: the name is refused.
    one_line_error(pillowd(owner, "invite", "carol", "--prefix", prefix, check=False),
                   "'carol' was revoked on queue", "choose another name")
    assert "carol" not in policies(azurite, f"{prefix}alice")
    # dave's invite is untouched by carol's revocation.
    assert pillowd(owner, "send", "hug", "--queue-url", everywhere[1]).returncode == 0


def test_pair_after_invite_makes_the_invite_the_pillows_policy(azurite, owner, prefix,
                                                             tmp_path):
    """Issue 19 item 7: `pair alice bob carol` after `invite carol` kept the invite's
    policy on alice's queue, so carol's pillow lost alice after the invite's 7 days."""
    from datetime import datetime, timedelta, timezone
    pillowd(owner, "pair", "alice", "bob", "--out", str(tmp_path / "one"), "--prefix", prefix)
    pillowd(owner, "invite", "carol", "--to", "alice", "--prefix", prefix)
    week = datetime.now(timezone.utc) + timedelta(days=8)
    assert until(policies(azurite, f"{prefix}alice")["carol"][1]) < week

    result = pillowd(owner, "pair", "alice", "bob", "carol", "--out", str(tmp_path / "two"),
                     "--prefix", prefix)
    assert f"carol: the invite 'carol' on {prefix}alice is now carol's pillow policy" \
        in result.stderr, result.stderr
    years = datetime.now(timezone.utc) + timedelta(days=3000)
    for queue in (f"{prefix}alice", f"{prefix}bob"):
        permission, expiry, _ = policies(azurite, queue)["carol"]
        assert permission == "a" and until(expiry) > years, (queue, permission, expiry)
    check_least_privilege(azurite, azurite.service(), "carol", ["alice", "bob"], prefix,
                          queue_tokens(tmp_path / "two" / "carol"))
    # Done once: a second run replaces nothing and changes nothing.
    before = policies(azurite, f"{prefix}alice")
    again = pillowd(owner, "pair", "alice", "bob", "carol", "--out", str(tmp_path / "three"),
                    "--prefix", prefix)
    assert "invite" not in again.stderr and policies(azurite, f"{prefix}alice") == before
    # carol is a pillow now: the name is no longer free for an invite.
    one_line_error(pillowd(owner, "invite", "carol", "--prefix", prefix, check=False),
                   "'carol' is a pillow")


def pillow_config(folder, tmp_path, name="config.toml"):
    """A test config around the [pillow] and [queue] keys pillowd pair wrote."""
    written = (folder / "queue.toml").read_text()
    written = written.replace("[pillow]\n", f'[pillow]\nstate_dir = "{tmp_path / "state"}"\n')
    written = written.replace("[queue]\n", "[queue]\npoll_min_seconds = 0.05\n"
                              "poll_max_seconds = 0.5\nmax_dequeue_count = 3\n")
    rest = BASE_CONFIG.split("[hardware]", 1)[1]
    path = folder / name
    path.write_text(written + "\n[hardware]" + rest)
    return path


@pytest.fixture
def bare_env():
    """A pillow's environment: no account key anywhere."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PILLOWD_", "AZURE_", "NOTIFY_SOCKET", "WATCHDOG_",
                                "CREDENTIALS_DIRECTORY"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_a_paired_pillow_runs_on_its_tokens_and_shows_the_sent_id(
        azurite, owner, prefix, tmp_path, bare_env):
    out = tmp_path / "pair"
    pillowd(owner, "pair", "alice", "bob", "--out", str(out), "--prefix", prefix)
    queues_before = sorted(q.name for q in azurite.service().list_queues())
    config = pillow_config(out / "alice", tmp_path)
    alice = PillowProcess(config, bare_env).start()
    try:
        def applied(ident):
            return any(i["id"] == ident and i["outcome"] == "applied"
                       for i in alice.get("/api/history").json()["items"])

        # pillowd send prints the id alice's history and snapshot then show (the
        # owner's key here: alice's own tokens may not add to her queue).
        sent = pillowd(owner, "send", "hug", "--from", "Owner", "--config", str(config))
        ident = sent.stdout.strip()
        wait_for(lambda: applied(ident), message="the sent hug in alice's history")
        # The history is written before the snapshot changes: wait for the state.
        wait_for(lambda: (alice.state()["message"] or {}).get("id") == ident,
                 message="the sent hug playing on alice")

        # Bob's token adds to alice's queue; alice's consumes it.
        from_bob = client(azurite, f"{prefix}alice", tokens_of(out / "bob")[f"{prefix}alice"])
        from_bob.send_message(json.dumps({"scene": "hug", "from": "bob", "id": "bob-1"}))
        wait_for(lambda: applied("bob-1"), message="bob's hug in alice's history")

        # A bad one goes to alice's poison queue (add there), listed with her tokens.
        from_bob.send_message("no-such-scene")
        wait_for(lambda: alice.state()["queue"]["rejected"] == 1, message="the rejection")
        listed = pillowd(bare_env, "poison", "list", "--config", str(config)).stdout
        assert "no-such-scene" in listed
        # Sending to, or putting back on, alice's own queue needs add there: the
        # owner's job, and each says so.
        one_line_error(pillowd(bare_env, "send", "hug", "--config", str(config),
                               check=False), "may not add to its own queue", "--queue-url")
        one_line_error(pillowd(bare_env, "poison", "requeue", "--config", str(config),
                               check=False), "run it with the account's connection string")
        owner_run = pillowd(owner, "poison", "requeue", "--config", str(config))
        assert "1 message(s) put back" in owner_run.stderr
        for page in ("/api/state", "/", "/metrics", "/api/history"):
            assert "sig=" not in alice.get(page).text, page

        # A lost pillow, revoked: its queue goes offline, saying why, never the token.
        pillowd(owner, "revoke", "alice")
        offline = wait_for(lambda: (s := alice.state())["queue"]["online"] is False and s,
                           timeout=40, message="alice's queue refused after revoke")
        assert "was refused (403" in json.dumps(offline["queue"])
        assert "sig=" not in json.dumps(offline)
    finally:
        assert alice.stop() == 0
    # No queue was made or tried (the tokens would have been refused at start).
    assert sorted(q.name for q in azurite.service().list_queues()) == queues_before
    log = "".join(alice.output)
    for token in queue_tokens(out / "alice").values():
        assert token.split("sig=")[1] not in log
    assert tokens_of(out / "alice")["family_key"] not in log


def test_outbound_name_is_a_queue_name_or_a_list_of_them():
    from pillowd.config import ConfigError, parse
    base = '[queue]\nname = "pillow-ann"\nsas_file = "queue-sas.toml"\n'
    one = parse(base + 'outbound_name = "pillow-ben"\n')
    assert one.outbound_names == ("pillow-ben",) and one.queue.sas_file == "queue-sas.toml"
    assert parse(base + 'outbound_name = ["pillow-ben", "pillow-cat"]\n').outbound_names \
        == ("pillow-ben", "pillow-cat")
    assert parse(base).outbound_names == ()
    for bad, why in (('["pillow-ben", "Cat!"]', "'Cat!' must be 3-63 lowercase"),
                     ('[""]', "'' must be a queue name"),
                     ('3', "must be a string or a list, not int 3"),
                     ('["pillow-ann"]', "must differ from queue.name")):
        with pytest.raises(ConfigError) as err:
            parse(base + f"outbound_name = {bad}\n")
        assert err.value.problems[0].key == "queue.outbound_name"
        assert err.value.problems[0].line == 4
        assert why in err.value.problems[0].why, err.value.problems[0]


def test_the_systemd_credential_stands_in_for_the_sas_file(azurite, owner, prefix,
                                                          tmp_path, bare_env):
    from pillowd.config import load
    from pillowd.queues.configured import open_queues
    out = tmp_path / "pair"
    pillowd(owner, "pair", "alice", "bob", "--out", str(out), "--prefix", prefix)
    config = pillow_config(out / "alice", tmp_path)
    creds = tmp_path / "creds"
    creds.mkdir()
    # As on a Pi: the file beside the config is root's; systemd hands over a copy.
    (out / "alice" / "queue-sas.toml").rename(creds / "azure-queue-sas")
    queues = open_queues(load(config), {"CREDENTIALS_DIRECTORY": str(creds)}, family=True)
    try:
        assert "systemd credential azure-queue-sas" in queues.main.account.source
        # The family key comes from the same credential, and is no queue's token.
        written = tomllib.loads((creds / "azure-queue-sas").read_text())["family_key"]
        assert queues.family.text() == written
        assert "family_key" not in queues.main.account.tokens
        queues.outbound[0].put("hug")   # one per partner: bob
        assert queues.main.peek() == []
    finally:
        queues.close()

    # Without either: one line naming the file, and no secret anywhere.
    result = pillowd(bare_env, "send", "hug", "--config", str(config), check=False)
    one_line_error(result, "queue.sas_file", "queue-sas.toml")
    # A refused token is named by its queue, never quoted; it stops a start, as a
    # refused connection string does (the queues are checked, not created).
    tokens = (creds / "azure-queue-sas").read_text()
    (out / "alice" / "queue-sas.toml").write_text(tokens.replace(
        f'"{prefix}alice-poison" = "sv', f'"{prefix}alice-poison" = "sig=A&sv'))
    for command in (["poison", "list"], ["run"]):
        result = pillowd(bare_env, *command, "--config", str(config), check=False)
        line = one_line_error(result, f"the token for queue '{prefix}alice-poison' was "
                                      "refused (403 AuthenticationFailed)")
        assert "sig" not in line
    # Its queue gone (deleted by hand, its policies with it): refused the same way,
    # and not made again.
    (out / "alice" / "queue-sas.toml").write_text(tokens)
    azurite.service().delete_queue(f"{prefix}alice-poison")
    one_line_error(pillowd(bare_env, "run", "--config", str(config), check=False),
                   f"the token for queue '{prefix}alice-poison' was refused (403")
    assert f"{prefix}alice-poison" not in [q.name for q in azurite.service().list_queues()]


def _held_by_a_killed_run(state, queue_name, token_client, body):
    """What SIGKILL leaves behind mid-batch: a message taken with the pillow's own
    token (hidden for 10 minutes) and its pop receipt in the history's held table."""
    from pillowd.history import History
    token_client.owner.send_message(body)
    (taken,) = token_client.receive_messages(visibility_timeout=600)
    history = History(state / "history.sqlite3")
    history.hold(queue_name, [(taken.id, taken.pop_receipt)])
    history.close()


def test_a_paired_pillow_killed_holding_a_message_gives_it_back_on_its_own_tokens(
        azurite, owner, prefix, tmp_path, bare_env):
    out = tmp_path / "pair"
    pillowd(owner, "pair", "alice", "bob", "--out", str(out), "--prefix", prefix)
    config = pillow_config(out / "alice", tmp_path)
    own = f"{prefix}alice"
    mine = client(azurite, own, tokens_of(out / "alice")[own])
    mine.owner = azurite.service().get_queue_client(own)
    alice = PillowProcess(config, bare_env).start()
    alice.kill()
    _held_by_a_killed_run(tmp_path / "state", own, mine,
                          json.dumps({"scene": "glow", "id": "in-flight"}))
    alice.start()
    try:
        # Hidden for 10 minutes unless alice's token may give it back: it plays now.
        wait_for(lambda: (alice.state()["message"] or {}).get("id") == "in-flight",
                 timeout=30, message="the message the killed run held playing")
        assert "taken before a crash are back" in "".join(alice.output)
    finally:
        assert alice.stop() == 0

    # Tokens of an older pair (no update): the give-back is refused, and the log says
    # what that is (a missing permission, fixed by running pair again), not a
    # revocation; the message comes back by itself when its visibility timeout ends.
    queue = azurite.service().get_queue_client(own)
    found = queue.get_queue_access_policy()
    found["alice"] = AccessPolicy(permission="rp", expiry=found["alice"].expiry)
    queue.set_queue_access_policy(found)
    _held_by_a_killed_run(tmp_path / "state", own, mine, "glow")
    alice.start()
    try:
        line = wait_for(lambda: next((l for l in alice.output if "comes back" in l), None),
                        message="the give-back's log line")
        assert "does not allow" in line and "pillowd pair" in line, line
        assert "was refused" not in line and "sig=" not in line, line
        # A missing grant is not an outage: the queue is polled and shown online.
        wait_for(lambda: alice.state()["queue"]["online"], message="alice online")
    finally:
        assert alice.stop() == 0
