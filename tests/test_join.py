"""pillowd join on Azurite: the pair folder becomes a drop-in and a root-only credential,
each token is checked first, a bad one is named and nothing is half-installed."""

from __future__ import annotations

import functools
import os
import shutil
import socket
import stat
import tempfile
from pathlib import Path

import pytest
import requests
from azure.storage.queue import AccessPolicy

from conftest import BASE_CONFIG, PillowProcess, run_cli, wait_for
from pillowd.hugs.join import JoinError, join
from pillowd.testing.services import free_port
from test_pairing import owner, pillowd, prefix  # noqa: F401 (fixtures)


class Supervisor:
    """What systemd does for the unit, for a config under a test folder: restart runs
    `pillowd run` on the installed files, with the token file handed over as the
    credential azure-queue-sas (LoadCredential=), and fails when the daemon does."""

    unit = "pillowd.service"

    def __init__(self, config: Path, env: dict):
        self.config = config
        self.env = env
        self.process: PillowProcess | None = None
        self.restarts = 0
        self.credentials = Path(tempfile.mkdtemp(prefix="pillowd-creds-"))

    def present(self):
        return None

    def restart(self):
        self.restarts += 1
        self.stop()
        tokens = self.config.parent / "queue-sas.toml"
        (self.credentials / "azure-queue-sas").unlink(missing_ok=True)
        if tokens.exists():
            shutil.copy(tokens, self.credentials / "azure-queue-sas")
        self.process = PillowProcess(self.config, {
            **self.env, "CREDENTIALS_DIRECTORY": str(self.credentials)})
        try:
            self.process.start(timeout=60)
        except Exception as err:
            self.process = None
            return str(err).splitlines()[-1]
        return None

    def stop(self):
        if self.process is not None:
            self.process.stop()
            self.process = None


@pytest.fixture
def pi(tmp_path, owner, prefix):  # noqa: F811
    """An installed pillow's /etc/pillowd (the shipped-like test config, local queue),
    and the folder pair wrote for alice."""
    etc = tmp_path / "etc" / "pillowd"
    etc.mkdir(parents=True)
    port = free_port()
    config = etc / "config.toml"
    config.write_text(BASE_CONFIG.format(state_dir=tmp_path / "state")
                      .replace("port = 0", f"port = {port}"))
    out = tmp_path / "pair"
    pillowd(owner, "pair", "alice", "bob", "--out", str(out), "--prefix", prefix)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PILLOWD_", "AZURE_", "NOTIFY_SOCKET", "WATCHDOG_",
                                "CREDENTIALS_DIRECTORY"))}
    supervisor = Supervisor(config, env)
    yield config, out / "alice", supervisor, port
    supervisor.stop()
    shutil.rmtree(supervisor.credentials, ignore_errors=True)


def tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def test_join_installs_the_keys_and_root_only_tokens_and_the_service_runs_on_them(pi):
    config, folder, supervisor, port = pi
    said = []
    old_umask = os.umask(0o077)  # as a careful admin's shell, or pillowd's own
    try:
        address = join(folder, config, service=supervisor, say=said.append)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((config.parent / "config.d").stat().st_mode) == 0o755
    dropin = config.parent / "config.d" / "50-pair.toml"
    tokens = config.parent / "queue-sas.toml"
    assert dropin.read_text() == (folder / "queue.toml").read_text()
    assert tokens.read_text() == (folder / "queue-sas.toml").read_text()
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600 and tokens.stat().st_uid == 0
    assert stat.S_IMODE(dropin.stat().st_mode) == 0o644
    assert address == f"http://127.0.0.1:{port}/"  # [web] host as configured
    assert supervisor.restarts == 1
    # The daemon runs as alice, on her azure queue, from the credential.
    # Healthy comes before the first poll: "online" is waited for, not read at once.
    state = wait_for(lambda: (lambda s: s if s["queue"]["online"] else None)(
        requests.get(f"{address}api/state", timeout=10).json()),
        message="alice's queue online")
    assert state["pillow"] == "alice"
    assert state["queue"]["backend"] == "azure" and state["queue"]["online"] is True
    assert any("tokens accepted" in line for line in said)
    secret = (folder / "queue-sas.toml").read_text()
    for line in said + supervisor.process.output:
        assert "sig=" not in line and secret not in line
    # Again with the same folder: the same files, a restart, nothing else.
    before = tree(config.parent)
    join(folder, config, service=supervisor, say=said.append)
    assert tree(config.parent) == before


@pytest.mark.parametrize("fault", ["bad signature", "missing token", "queue deleted"])
def test_a_refused_or_missing_token_is_named_and_nothing_is_installed(pi, fault, prefix,  # noqa: F811
                                                                      azurite):
    config, folder, supervisor, _ = pi
    sas = folder / "queue-sas.toml"
    text = sas.read_text()
    partner = f"{prefix}bob"
    if fault == "bad signature":
        sas.write_text(text.replace(f'"{partner}" = "', f'"{partner}" = "sig=A&'))
    elif fault == "missing token":
        sas.write_text("\n".join(line for line in text.splitlines()
                                 if not line.startswith(f'"{partner}"')) + "\n")
    else:
        azurite.service().delete_queue(f"{prefix}alice-poison")
        partner = f"{prefix}alice-poison"
    before = tree(config.parent)
    with pytest.raises(JoinError) as err:
        join(folder, config, service=supervisor, say=lambda line: None)
    assert f"queue '{partner}'" in str(err.value)
    assert "sig=" not in str(err.value) and "sv=" not in str(err.value)
    assert tree(config.parent) == before and supervisor.restarts == 0


@pytest.mark.parametrize("queue, permission, lacks", [
    ("bob", "r", "add"),            # a partner's token that cannot send
    ("alice", "ru", "process"),     # its own token that cannot take messages off
    ("alice-poison", "rp", "add"),  # its poison token that cannot set a message aside
])
def test_a_token_that_cannot_do_its_part_is_named_and_nothing_is_installed(
        pi, prefix, azurite, queue, permission, lacks):  # noqa: F811
    # Real tokens from pillowd pair; the owner narrows alice's stored access policy
    # on one queue, as Azure enforces it (the token is the same signature).
    config, folder, supervisor, _ = pi
    name = f"{prefix}{queue}"
    client = azurite.service().get_queue_client(name)
    held = client.get_queue_access_policy()
    held["alice"] = AccessPolicy(permission=permission, expiry=held["alice"].expiry)
    client.set_queue_access_policy(held)
    before = tree(config.parent)
    with pytest.raises(JoinError) as err:
        join(folder, config, service=supervisor, say=lambda line: None)
    assert f"queue '{name}' does not allow {lacks}" in str(err.value)
    assert "sig=" not in str(err.value)
    assert tree(config.parent) == before and supervisor.restarts == 0
    # Nothing was left where a pillow would see it.
    for left in (f"{prefix}alice", f"{prefix}alice-poison", f"{prefix}bob"):
        assert azurite.service().get_queue_client(left).peek_messages() == []


@pytest.mark.parametrize("queue, permission, lacks", [
    ("alice", "p", "read"),             # its own queue: it would never see a message
    ("alice", "ru", "process"),         # its own queue: each message would come back
    ("alice-poison", "ap", "read"),     # its poison queue
])
def test_the_service_does_not_start_on_a_token_that_cannot_do_its_part(
        pi, prefix, azurite, queue, permission, lacks):  # noqa: F811
    # join checked every token; later the owner (or a bad pair) narrows one policy.
    # A restart must not come up "online" on a queue it cannot take messages off:
    # it stops, naming what is missing and what mends it. (bob's token only adds,
    # which is right for a partner's queue: it passes, as the first start shows.)
    config, folder, supervisor, _ = pi
    join(folder, config, service=supervisor, say=lambda line: None)
    client = azurite.service().get_queue_client(f"{prefix}{queue}")
    held = client.get_queue_access_policy()
    held["alice"] = AccessPolicy(permission=permission, expiry=held["alice"].expiry)
    client.set_queue_access_policy(held)
    failed = supervisor.restart()
    assert failed is not None, f"the daemon started on a token without {lacks}"
    assert f"the token for queue '{prefix}{queue}' does not allow {lacks}" in failed
    assert "sudo pillowd join DIR" in failed and "sig=" not in failed


def test_the_token_check_leaves_nothing_that_would_play(pi, prefix, azurite):  # noqa: F811
    from datetime import datetime, timezone

    from pillowd.config import parse
    from pillowd.hugs.join import Folder, check_tokens, probe_body, settings_with
    from pillowd.messages import decode
    config, folder, _, _ = pi
    said = []
    checked = check_tokens(settings_with(config, Folder.read(folder)), Folder.read(folder),
                           notes=said.append)
    assert checked == [f"{prefix}alice", f"{prefix}alice-poison", f"{prefix}bob"]
    assert said == []  # pair's tokens may do all the pillow does
    service = azurite.service()
    # The poison queue's probe was deleted at once; bob's queue shows nothing.
    poison = service.get_queue_client(f"{prefix}alice-poison").get_queue_properties()
    assert poison.approximate_message_count == 0
    assert service.get_queue_client(f"{prefix}bob").peek_messages() == []
    # Were bob to take the probe in the last second of its life, it is long expired.
    command = decode(probe_body(), parse(BASE_CONFIG.format(state_dir="/nonexistent")))
    assert command.scene.name == "idle" and command.ttl == 1
    assert (datetime.now(timezone.utc) - command.sent_at).total_seconds() > 86400


def test_join_asks_the_page_where_it_listens(pi):
    # [web] host set to one address (a LAN address; here another loopback one): the
    # page is not on 127.0.0.1, and join must not wait there for it.
    config, folder, supervisor, port = pi
    config.write_text(config.read_text().replace('host = "127.0.0.1"',
                                                 'host = "127.0.0.2"'))
    address = join(folder, config, service=supervisor, say=lambda line: None)
    assert address == f"http://127.0.0.2:{port}/"
    assert requests.get(f"{address}api/state", timeout=10).json()["pillow"] == "alice"


def test_health_is_asked_where_the_page_listens():
    from pillowd.hugs.join import health_url
    assert health_url("192.168.1.20", 8080) == "http://192.168.1.20:8080/healthz"
    assert health_url("0.0.0.0", 80) == "http://127.0.0.1:80/healthz"
    assert health_url("::", 80) == "http://[::1]:80/healthz"
    assert health_url("fe80::1%eth0", 80) == "http://[fe80::1%25eth0]:80/healthz"
    assert health_url("pillow.local", 80) == "http://pillow.local:80/healthz"


def test_a_failed_restart_puts_the_previous_setup_back(pi):
    config, folder, supervisor, port = pi
    dropin = config.parent / "config.d" / "50-pair.toml"
    dropin.parent.mkdir()
    dropin.write_text('[pillow]\nname = "before"\n')
    before = tree(config.parent)
    # The page's port is taken: the daemon cannot start on the new setup (nor the old).
    with socket.create_server(("127.0.0.1", port)):
        with pytest.raises(JoinError) as err:
            join(folder, config, service=supervisor, say=lambda line: None)
    assert "did not start as 'alice'" in str(err.value)
    assert "the previous setup is back" in str(err.value)
    assert tree(config.parent) == before
    assert not (config.parent / "queue-sas.toml").exists()


def test_a_setup_that_starts_unhealthy_is_undone(pi):
    # The folder asks for a Pi's LEDs on a machine that has none: the daemon starts
    # (on mock LEDs, for the page to say why) but /healthz answers 503. join puts the
    # previous setup back, as for a start that failed.
    from pillowd.hugs.join import wait_healthy
    config, folder, supervisor, port = pi
    (folder / "queue.toml").write_text((folder / "queue.toml").read_text()
                                       + '\n[hardware]\nbackend = "pi"\n')
    (config.parent / "config.d").mkdir()  # drop-ins of its own may live there
    before = tree(config.parent)
    with pytest.raises(JoinError) as err:
        join(folder, config, service=supervisor, say=lambda line: None,
             healthy=functools.partial(wait_healthy, timeout=5))
    assert "started as 'alice' but its page is not healthy" in str(err.value)
    assert "needs a Raspberry Pi" in str(err.value)
    assert "the previous setup is back" in str(err.value)
    assert tree(config.parent) == before and supervisor.restarts == 2
    state = requests.get(f"http://127.0.0.1:{port}/api/state", timeout=10).json()
    assert state["pillow"] == "test-pillow"


def test_join_on_the_command_line_is_one_line_for_a_wrong_folder(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("")
    result = run_cli("join", str(tmp_path / "nope"), "--config", str(config), check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"pillowd: {tmp_path / 'nope'} has no queue.toml: give "
                                     "the folder pillowd pair wrote for this pillow "
                                     "(OUT/NAME)")


def test_the_unit_hands_the_installed_tokens_to_the_daemon(pi, tmp_path):
    # What systemd does with the unit's LoadCredential= lines, on join's files: the
    # daemon (not root) must find its tokens in the credential, as it cannot read
    # the root-only file. Before the unit loaded azure-queue-sas, it found none.
    from pillowd.config import load
    from pillowd.queues.configured import open_queues
    config, folder, supervisor, _ = pi
    join(folder, config, service=supervisor, say=lambda line: None)
    supervisor.stop()
    unit = Path(__file__).resolve().parent.parent / "systemd" / "pillowd.service"
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    for line in unit.read_text().splitlines():
        if line.startswith("LoadCredential="):
            name, path = line.removeprefix("LoadCredential=").split(":", 1)
            installed = config.parent / Path(path).relative_to("/etc/pillowd")
            if installed.exists():
                shutil.copy(installed, credentials / name)
    # The service user's view of the root-only file: not there for it to read.
    (config.parent / "queue-sas.toml").rename(config.parent / "root-only.toml")
    queues = open_queues(load(config), {"CREDENTIALS_DIRECTORY": str(credentials)})
    try:
        assert "systemd credential azure-queue-sas" in queues.main.account.source
        assert queues.main.peek() == []
    finally:
        queues.close()


def test_an_unreadable_drop_in_is_a_one_line_error_naming_it(tmp_path):
    from pillowd.hugs.join import Folder, settings_with
    config = tmp_path / "config.toml"
    config.write_text(BASE_CONFIG.format(state_dir=tmp_path / "state"))
    (tmp_path / "config.d").mkdir()
    bad = tmp_path / "config.d" / "90-local.toml"
    bad.write_bytes(b'[pillow]\nname = "caf\xe9"\n')   # Latin-1, not UTF-8
    folder = Folder(tmp_path / "alice", '[queue]\nbackend = "azure"\n', "")
    with pytest.raises(JoinError, match="90-local.toml"):
        settings_with(config, folder)
