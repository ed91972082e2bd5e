"""The Azure backend against Azurite: credentials, encodings, poison, expiry, outages."""

import base64
import json
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from conftest import run_cli, wait_for
from pillowd.testing.azurite import KEY, Azurite, free_port
from pillowd.testing.faultproxy import FaultProxy

pytestmark = pytest.mark.parametrize("backend", ["azure"], indirect=True)

WRONG_KEY = base64.b64encode(b"not the account key, but shaped like one" * 2).decode()


def settings_for(make_config, extra=""):
    from pillowd.config import load
    return load(make_config(extra))


def outcomes(p) -> list[dict]:
    return p.get("/api/history?limit=200").json()["items"]


# -- credentials ---------------------------------------------------------------


def test_credentials_are_taken_in_order(make_config, azurite, tmp_path, monkeypatch):
    from pillowd.queues.configured import AZURE_CREDENTIAL, azure_account
    from pillowd.errors import PillowError
    settings = settings_for(make_config)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / AZURE_CREDENTIAL).write_text(azurite.connection_string(key=WRONG_KEY) + "\n")
    good = azurite.connection_string()

    # 1. The env var named by connection_string_env wins over everything else.
    account = azure_account(settings, {"AZURE_STORAGE_CONNECTION_STRING": good,
                                       "CREDENTIALS_DIRECTORY": str(creds)})
    assert account.source == "connection string from $AZURE_STORAGE_CONNECTION_STRING"
    account.queue("order-one").put("x")
    account.close()

    # 2. Without it, the systemd credential (here the wrong key: refused, and said so).
    from pillowd.queues import QueueAuthError
    account = azure_account(settings, {"CREDENTIALS_DIRECTORY": str(creds)})
    assert "systemd credential azure-storage-connection-string" in account.source
    with pytest.raises(QueueAuthError) as refused:
        account.queue("order-two").put("x")
    assert str(refused.value) == ("azure: connection string from the systemd credential "
                                  "azure-storage-connection-string was refused "
                                  "(403 AuthenticationFailed)")
    assert WRONG_KEY not in str(refused.value)
    account.close()

    # 3. Then account_url with a SAS.
    from dataclasses import replace
    with_url = replace(settings, queue=replace(settings.queue, account_url=azurite.sas_url()))
    account = azure_account(with_url, {"CREDENTIALS_DIRECTORY": str(tmp_path / "none")})
    assert account.source == "the SAS in queue.account_url"
    assert account.queue("order-three").put("x")
    account.close()

    # 4. Then account_url without a SAS: the identity chain, a one-line error without it.
    bare = replace(settings, queue=replace(settings.queue, account_url=azurite.endpoint))
    monkeypatch.setitem(sys.modules, "azure.identity", None)
    with pytest.raises(PillowError, match=r"pip install -e .*\[identity\]"):
        azure_account(bare, {})

    # Nothing at all: one line naming every source looked at.
    with pytest.raises(PillowError) as nothing:
        azure_account(settings, {})
    assert str(nothing.value) == (
        "azure: no credentials: $AZURE_STORAGE_CONNECTION_STRING is not set, no systemd "
        "credential azure-storage-connection-string, and queue.account_url is empty")


def test_a_wrong_key_is_one_clear_line_without_the_secret(make_config, pillow_env,
                                                         azurite):
    config = make_config()
    env = {**pillow_env,
           "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string(key=WRONG_KEY)}
    for args in (["send", "hug"], ["poison", "list"], ["run"]):
        result = run_cli(*args, "--config", str(config), env=env, check=False)
        assert result.returncode == 1, result
        assert result.stdout == ""
        assert result.stderr.splitlines() == [
            "pillowd: azure: connection string from $AZURE_STORAGE_CONNECTION_STRING "
            "was refused (403 AuthenticationFailed)"], result.stderr
        assert WRONG_KEY not in result.stderr and "AccountKey" not in result.stderr

    env["AZURE_STORAGE_CONNECTION_STRING"] = "AccountKey=" + WRONG_KEY
    result = run_cli("send", "hug", "--config", str(config), env=env, check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "pillowd: azure: connection string from $AZURE_STORAGE_CONNECTION_STRING is not "
        "a valid storage connection string"]


def test_send_and_poison_work_through_a_sas_url(make_config, pillow_env, azurite,
                                                queues):
    base = make_config()
    text = base.read_text().replace('backend = "azure"',
                                    f'backend = "azure"\naccount_url = "{azurite.sas_url()}"')
    base.write_text(text)
    env = {k: v for k, v in pillow_env.items() if k != "AZURE_STORAGE_CONNECTION_STRING"}
    sent = run_cli("send", "hug", "--config", str(base), env=env)
    assert "sig=" not in sent.stdout + sent.stderr
    (message,) = queues(base).main.peek()
    assert json.loads(message.body)["id"] == sent.stdout.strip()  # the message's own id
    assert run_cli("poison", "list", "--config", str(base), env=env).stdout.strip() == \
        "the poison queue is empty"


# -- bodies --------------------------------------------------------------------


def test_plain_and_base64_bodies_written_by_the_sdk_are_told_apart(
        pillow, watch, azurite, queue_name):
    from azure.storage.queue import QueueClient, TextBase64EncodePolicy
    p = pillow("""
        [scenes.glow2]
        effect = "solid"
        color = "#0000ff"
        duration = 0
        aliases = ["aHVn"]
        """)
    watcher = watch(p.url)
    plain = QueueClient.from_connection_string(azurite.connection_string(), queue_name)
    functions = QueueClient.from_connection_string(
        azurite.connection_string(), queue_name,
        message_encode_policy=TextBase64EncodePolicy())

    functions.send_message(json.dumps({"scene": "glow", "from": "Functions"}))
    watcher.wait_state(lambda s: (s["message"] or {}).get("from") == "Functions",
                       message="the base64 message")
    plain.send_message(json.dumps({"scene": "hug", "from": "SDK"}))
    watcher.wait_state(lambda s: (s["message"] or {}).get("from") == "SDK",
                       message="the plain message")
    # "aHVn" is base64 for "hug", and also glow2's own name for itself: plain wins.
    plain.send_message("aHVn")
    watcher.wait_state(lambda s: s["scene"] == "glow2", message="the alias, not a hug")
    # Valid base64 whose decoding is not a message: kept exactly as sent.
    plain.send_message("aGVsbG8gd29ybGQ=")
    watcher.wait_state(lambda s: s["queue"]["rejected"] == 1, message="the rejection")
    listed = p.cli("poison", "list").stdout
    assert "aGVsbG8gd29ybGQ=" in listed and "hello world" not in listed
    plain.close()
    functions.close()


# -- poison and expiry -----------------------------------------------------------


@pytest.fixture
def request_stop():
    stops = []
    yield stops
    for stop in stops:
        stop()


def test_too_many_deliveries_go_to_poison_copied_then_deleted(
        make_config, pillow, queues, watch):
    config = make_config()
    found = queues(config)
    found.main.put(json.dumps({"scene": "hug", "from": "Dora"}))
    for count in (1, 2, 3):  # delivered three times, never settled
        (message,) = wait_for(lambda: found.main.receive(32, 30), message="a delivery")
        assert message.dequeue_count == count
        found.main.release(message, 0)
    p = pillow()
    watcher = watch(p.url)
    rejected = watcher.wait_state(lambda s: s["queue"]["rejected"] == 1,
                                  message="the rejection")
    assert rejected["recent"][0]["reason"] == "delivered 4 times without an outcome"
    (poisoned,) = found.poison.peek()
    wrapper = json.loads(poisoned.body)
    assert wrapper["dequeue_count"] == 4
    assert json.loads(wrapper["original"]) == {"scene": "hug", "from": "Dora"}
    assert found.main.peek() == []
    assert rejected["queue"]["applied"] == 0


def test_expiry_counts_from_sent_at_else_from_insertion(make_config, pillow_env, queues,
                                                        watch, request_stop):
    from conftest import ROOT, PillowProcess
    config = make_config("")
    config.write_text(config.read_text().replace(
        "max_dequeue_count = 3", "max_dequeue_count = 3\nmessage_max_age_seconds = 2"))
    found = queues(config)
    now = datetime.now(timezone.utc)
    old = (now - timedelta(hours=1)).isoformat()
    found.main.put(json.dumps({"scene": "hug", "id": "by-sent-at", "sent_at": old}))
    # No sent_at: its age comes from the queue. Hidden 3 s, it is 3 s old when seen.
    found.main.put(json.dumps({"scene": "hug", "id": "by-insertion"}))
    for message in found.main.receive(32, 30):
        found.main.release(message, 0 if "sent-at" in message.body else 3)
    p = PillowProcess(config, pillow_env, cwd=ROOT).start()  # not pillow(): it rewrites the config
    request_stop.append(p.stop)
    state = wait_for(lambda: (s := p.state())["queue"]["expired"] == 2 and s,
                     timeout=15, message="both expired")
    reasons = {o["id"]: o["reason"] for o in state["recent"]}
    assert reasons["by-sent-at"].startswith("360")
    assert reasons["by-sent-at"].endswith(" s old; the limit is 2 s")
    age = float(reasons["by-insertion"].split(" s old")[0])
    assert 2 < age < 10, reasons
    assert state["queue"]["applied"] == 0
    # A fresh one still plays.
    found.main.put(json.dumps({"scene": "hug", "id": "fresh",
                               "sent_at": datetime.now(timezone.utc).isoformat()}))
    watcher = watch(p.url)
    watcher.wait_state(lambda s: s["queue"]["applied"] == 1, message="the fresh one")


# -- staying up ------------------------------------------------------------------


@pytest.fixture
def own_azurite(tmp_path):
    """An Azurite of this test's own, to stop and start without disturbing others."""
    server = Azurite(tmp_path / "azurite", free_port())
    yield server
    server.stop()


def test_unreachable_at_start_is_shown_and_the_queues_come_later(
        make_config, pillow, own_azurite, queues, watch):
    env = {"AZURE_STORAGE_CONNECTION_STRING": own_azurite.connection_string()}
    p = pillow(env=env)  # nothing listening yet: the daemon still starts
    state = wait_for(lambda: (s := p.state())["queue"]["reason"] and s,
                     message="the offline reason")
    assert state["queue"]["online"] is False
    assert "connection refused" in state["queue"]["reason"]
    assert "AccountKey" not in json.dumps(state)
    own_azurite.start()
    wait_for(lambda: p.state()["queue"]["online"], timeout=15, message="online")
    watcher = watch(p.url)
    run_cli("send", "hug", "--from", "Late", "--config", str(p.config), env=p.env)
    watcher.wait_state(lambda s: s["queue"]["applied"] == 1, message="the late hug")
    assert "Traceback" not in "".join(p.output)


def test_azurite_down_for_30_s_mid_stream_loses_and_repeats_nothing(
        pillow, own_azurite, watch, queue_name):
    from azure.storage.queue import QueueClient
    own_azurite.start()
    env = {"AZURE_STORAGE_CONNECTION_STRING": own_azurite.connection_string()}
    p = pillow(env=env)
    watcher = watch(p.url)
    sender = QueueClient.from_connection_string(own_azurite.connection_string(),
                                                queue_name)
    sent = []

    def send(n):
        ident = f"m{n}"
        sender.send_message(json.dumps({"scene": "hug", "id": ident, "from": ident}))
        sent.append(ident)

    for n in range(4):
        send(n)
        time.sleep(0.2)
    own_azurite.stop()
    down_at = time.monotonic()
    offline = watcher.wait_state(lambda s: s["queue"]["online"] is False and
                                 s["queue"]["reason"], timeout=10, message="offline")
    assert "cannot reach" in offline["queue"]["reason"]
    time.sleep(max(0.0, 30 - (time.monotonic() - down_at)))  # the outage itself
    assert p.proc.poll() is None, "the daemon died during the outage"
    assert p.get("/healthz").status_code == 200
    watcher.states.clear()
    own_azurite.start()
    watcher.wait_state(lambda s: s["queue"]["online"] is True, timeout=15,
                       message="online again")
    for n in range(4, 8):
        send(n)
        time.sleep(0.2)
    wait_for(lambda: len(outcomes(p)) >= len(sent), timeout=20,
             message="an outcome for every message")
    history = outcomes(p)
    ids = [o["id"] for o in history]
    assert sorted(ids) == sorted(sent), history  # each exactly once: none lost, none twice
    assert {o["outcome"] for o in history} <= {"applied", "superseded"}
    sender.close()
    assert "Traceback" not in "".join(p.output)


def test_throttling_answers_back_off_up_to_poll_max(make_config, pillow, azurite,
                                                   queue_name, watch):
    proxy = FaultProxy(azurite.port)
    try:
        env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string(
            proxy.endpoint("/devstoreaccount1"))}
        p = pillow(env=env)
        watcher = watch(p.url)
        watcher.wait_state(lambda s: s["queue"]["online"], message="online")
        for status, code in ((503, "ServerBusy"), (500, "InternalError")):
            proxy.fail(status, code)
            offline = watcher.wait_state(
                lambda s: s["queue"]["online"] is False and str(status) in (
                    s["queue"]["reason"] or ""), message=f"offline on {status}")
            assert f"{status} {code}" in offline["queue"]["reason"]
            proxy.reset_counts()
            # Eight refused polls in a row: how far apart did it ask?
            wait_for(lambda: len(proxy.times) >= 8, timeout=30,
                     message=f"eight polls answered {status}")
            times = list(proxy.times)
            gaps = [b - a for a, b in zip(times, times[1:])]
            # poll_min is 0.05 s: without back-off every gap would be that. It
            # doubles to poll_max (0.5 s), so the last ones are at least 0.25 s
            # (a slow machine only widens them) ...
            assert min(gaps[-3:]) >= 0.25, gaps
            assert max(gaps) <= 0.5 + 0.3, gaps  # ... and capped by poll_max_seconds
            proxy.fail(None)
            watcher.states.clear()
            watcher.wait_state(lambda s: s["queue"]["online"] is True,
                               message="online after the fault")
        run_cli("send", "hug", "--from", "After", "--config", str(p.config), env=p.env)
        watcher.wait_state(lambda s: s["queue"]["applied"] == 1, message="a hug after")
        assert "AccountKey" not in "".join(p.output) and KEY not in "".join(p.output)
    finally:
        proxy.close()
