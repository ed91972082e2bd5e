"""A newcomer's first hour (issue 29, "The first hour"): `make run` from a fresh
checkout and `pillowd send hug` with no flags reach the same pillow, a local queue
no pillow opened is named, a paired pillow keeps to its tokens whatever key is in
its environment, a revoked invite says so, the install lines work as printed, and
tools/try-pair.py runs two paired pillows side by side."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path

import pytest
import requests

from conftest import BASE_CONFIG, ROOT, PillowProcess, run_cli, wait_for
from pillowd.testing.services import answers
from test_pairing import (bare_env, one_line_error, owner, pillow_config,  # noqa: F401
                          pillowd, prefix)

CLEAN = ("PILLOWD_", "AZURE_", "NOTIFY_SOCKET", "WATCHDOG_", "CREDENTIALS_DIRECTORY")


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLEAN)}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


class Output:
    """A child's output, read all the time by a thread; wait() for a line."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True, name="test-output").start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self.lines.append(None)  # the end
            self._changed.notify_all()

    def wait(self, pattern: str, timeout: float, count: int = 1) -> list[re.Match]:
        """The first *count* matches of *pattern*, waiting for them (the line event)."""
        def found():
            matches = [m for line in self.lines if line for m in [re.search(pattern, line)]
                       if m]
            return matches[:count] if len(matches) >= count else None
        with self._changed:
            if not self._changed.wait_for(lambda: found() or None in self.lines, timeout):
                raise AssertionError(f"no {pattern!r} within {timeout} s:\n{self.text()}")
            if not found():
                raise AssertionError(f"exited before {pattern!r}:\n{self.text()}")
            return found()

    def text(self) -> str:
        return "".join(line for line in self.lines if line)


def ipv4_addresses() -> set[str]:
    """This machine's non-loopback IPv4 addresses, as iproute2 lists them (none
    known without it: each address shown is still opened below)."""
    if shutil.which("ip") is None:
        return set()
    listed = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True,
                            check=True).stdout
    return {a for a in re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", listed)
            if not a.startswith("127.")}


def fresh_checkout(tmp_path: Path) -> Path:
    """A copy of the checkout as a clone has it, with a virtual environment that
    has pillowd's dependencies (this one's, through a .pth) but not pillowd: the
    first `make run` installs it, as on a fresh clone."""
    copy = tmp_path / "pillowd"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(
        ".git", ".venv", "node_modules", ".state", "__pycache__", "*.egg-info",
        ".pytest_cache", ".hypothesis", "build", "dist"))
    (copy / "web/static/vendor/socket.io.min.js").touch()  # newer than the lock: kept
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(copy / ".venv")],
                   check=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = copy / ".venv/lib" / version / "site-packages"
    (site / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # pip itself comes from this environment too (--without-pip: no download).
    (copy / ".venv/bin/pip").write_text(
        f"#!/bin/sh\nexec {shlex.quote(str(copy / '.venv/bin/python'))} -m pip \"$@\"\n")
    (copy / ".venv/bin/pip").chmod(0o755)
    return copy


def test_make_run_from_a_fresh_checkout_and_send_with_no_flags_reach_one_pillow(tmp_path):
    copy = fresh_checkout(tmp_path)
    before = ipv4_addresses()
    make = subprocess.Popen(["make", "run", "PORT=0"], cwd=copy, env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    out = Output(make)
    try:
        (started,) = out.wait(r"^pillowd: status page at (http://\S+/)", timeout=300)
        url = started.group(1)
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        assert port not in (0, 8080), url            # PORT=0 reached pillowd run
        out.wait(r"^pillowd: controls are", timeout=30)
        text = out.text()
        # pip's chatter stays in .venv/pip.log: the first lines are make's and pillowd's.
        assert "Editable installation" not in text and "!!" not in text, text
        assert (copy / ".venv/pip.log").is_file()   # where it went instead
        # Every LAN address the page opens at, and each one does open it.
        also = re.findall(r"^pillowd: also at (http://\S+/)$", text, re.M)
        shown = {re.match(r"http://([\d.]+):", u).group(1) for u in also
                 if re.match(r"http://[\d.]+:", u)}
        assert before & ipv4_addresses() <= shown, (before, text)
        for address in shown:
            assert requests.get(f"http://{address}:{port}/", timeout=5).status_code == 200
        assert re.search(r"^pillowd: controls are off .*: the page is read-only; to turn "
                         r"them on, .*\$PILLOWD_CONTROL_TOKEN", text, re.M), text

        # From anywhere, with no flags: the checkout's pillowd sends to this pillow.
        pillowd_bin = str(copy / ".venv/bin/pillowd")
        sent = subprocess.run([pillowd_bin, "send", "hug", "--from", "Newcomer"],
                              cwd=tmp_path, env=clean_env(), capture_output=True,
                              text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
        ident = sent.stdout.strip()

        def played():
            items = requests.get(f"{url}api/history", timeout=5).json()["items"]
            return any(i["id"] == ident and i["outcome"] == "applied" for i in items)
        wait_for(played, timeout=30, message="the hug sent with no flags, played")
        listed = subprocess.run([pillowd_bin, "poison", "list"], cwd=tmp_path,
                                env=clean_env(), capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0 and listed.stdout == "the poison queue is empty\n", \
            listed
        assert (copy / ".state" / "queue.sqlite3").is_file()
    finally:
        os.killpg(make.pid, signal.SIGINT)   # Ctrl-C in make run's terminal
        assert make.wait(30) is not None
    assert "stopping (SIGINT)" in out.text()


def test_a_send_to_a_local_queue_no_pillow_opened_names_it_and_makes_nothing(tmp_path):
    state = tmp_path / "nobody" / "state"
    config = tmp_path / "config.toml"
    config.write_text(BASE_CONFIG.format(state_dir=state))
    for command in (["send", "hug"], ["poison", "list"], ["poison", "purge"]):
        result = run_cli(*command, "--config", str(config), env=clean_env(), check=False)
        line = one_line_error(result, "no pillow has opened the local queue in "
                                      f"{state}", "no such folder", "--state-dir")
        assert "Traceback" not in result.stderr, line
        assert not state.exists() and not state.parent.exists()
    # A folder with no queue in it yet: named the same way, and still nothing made.
    state.mkdir(parents=True)
    one_line_error(run_cli("send", "hug", "--config", str(config), env=clean_env(),
                           check=False), f"{state}", "no queue.sqlite3 in it")
    assert list(state.iterdir()) == []


def test_a_paired_pillow_uses_its_tokens_with_an_account_key_in_its_environment(
        azurite, owner, prefix, tmp_path):
    """docs/pairing.md exports AZURE_STORAGE_CONNECTION_STRING: a pillow started in
    that shell must still run on the tokens pair gave it, and say which it chose."""
    out = tmp_path / "pair"
    pillowd(owner, "pair", "alice", "bob", "--out", str(out), "--prefix", prefix)
    config = pillow_config(out / "alice", tmp_path)
    alice = PillowProcess(config, clean_env(
        AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string())).start()
    try:
        log = "".join(alice.output)
        assert re.search(r"azure credential: per-queue SAS tokens, from the SAS tokens in "
                         r"queue.sas_file \(.*queue-sas.toml\); "
                         r"\$AZURE_STORAGE_CONNECTION_STRING is set and not used", log), log
        # Only tokens can be revoked: on the key, alice would go on polling.
        pillowd(owner, "revoke", "alice")
        offline = wait_for(lambda: (s := alice.state())["queue"]["online"] is False and s,
                           timeout=40, message="alice's tokens refused after revoke")
        assert "was refused (403" in str(offline["queue"])
    finally:
        alice.stop()
    log = "".join(alice.output)
    assert "AccountKey" not in log and azurite.connection_string() not in log
    assert "sig=" not in log


def test_the_daemon_on_an_account_key_names_that_kind_of_credential(
        azurite, make_config, tmp_path):
    config = make_config()
    config.write_text(config.read_text().replace(
        'backend = "local"\nname = "pillow"', 'backend = "azure"\nname = "firsthour-key"'))
    p = PillowProcess(config, clean_env(
        AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string())).start()
    p.stop()
    log = "".join(p.output)
    assert "azure credential: the account key (a connection string), from connection " \
           "string from $AZURE_STORAGE_CONNECTION_STRING" in log, log
    assert "not used" not in log and "AccountKey" not in log


def test_a_revoked_invite_tells_the_friend_to_ask_for_a_new_one(azurite, owner, prefix,
                                                                tmp_path):
    pillowd(owner, "pair", "alice", "bob", "--out", str(tmp_path), "--prefix", prefix)
    (url,) = pillowd(owner, "invite", "erin", "--to", "alice", "--prefix",
                     prefix).stdout.split()
    friend = clean_env()   # a friend's computer: the URL and nothing else

    def send():
        return run_cli("send", "hug", "--from", "Erin", "--queue-url", "-", env=friend,
                       input=url + "\n", check=False)
    assert send().returncode == 0
    pillowd(owner, "revoke", "erin")
    # Azure may take up to 30 s; Azurite applies it at once. Wait for the refusal.
    result = wait_for(lambda: (r := send()).returncode == 1 and r, timeout=40,
                      interval=0.5, message="the revoked invite refused")
    line = one_line_error(result, "this invite no longer works; ask for a new one",
                          f"'{prefix}alice'")
    assert "sig=" not in line and "AuthenticationFailed" not in line, line


def _install_lines() -> list[str]:
    """Every command in docs/*.md that installs pillowd with an extra: a line of a
    code block, or an inline `code` span."""
    found = []
    for doc in sorted((ROOT / "docs").glob("*.md")):
        for line in doc.read_text().splitlines():
            spans = re.findall(r"`([^`]+)`", line) or [line.split("#")[0]]
            found += [span.strip() for span in spans
                      if re.search(r"pip install .*(pillowd\[|\.\[(owner|identity|pi|"
                                   r"systemd)\]|rpi-ws281x)", span)]
    return found


def test_every_install_line_in_the_docs_and_errors_works_as_printed(monkeypatch):
    from pillowd.hugs.sendpage import _blob_sdk
    lines = _install_lines()
    assert any("[owner]" in line for line in lines), lines
    # The CLI's own line, as `invite --page` prints it without azure-storage-blob.
    monkeypatch.setitem(sys.modules, "azure.storage.blob", None)
    with pytest.raises(Exception) as err:
        _blob_sdk()
    lines.append(str(err.value).split("(never on a pillow): ", 1)[1])
    # And the LED driver's, as `pillowd run` prints it on a Pi without rpi_ws281x.
    from pillowd.hardware.ws281x import Ws281xStrip
    monkeypatch.setitem(sys.modules, "_rpi_ws281x", None)
    with pytest.raises(Exception) as err:
        Ws281xStrip(5)
    lines.append(str(err.value).split("not installed: ", 1)[1].split(" (with sudo")[0])
    for line in lines:
        # As printed, from the checkout; --dry-run resolves it without changing
        # this environment ("No matching distribution found" fails it).
        command = line.replace(".venv/bin/pip", str(ROOT / ".venv/bin/pip"))
        result = subprocess.run(f"{command} --dry-run", shell=True, cwd=ROOT,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, (line, result.stderr[-2000:])


def test_try_pair_starts_two_paired_pillows_that_hug_and_stops_on_ctrl_c(tmp_path):
    tool = subprocess.Popen([sys.executable, str(ROOT / "tools/try-pair.py"), "--port", "0",
                             "--dir", str(tmp_path / "try")], cwd=ROOT, env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = Output(tool)
    try:
        pages = {m.group(1): (m.group(2), m.group(3)) for m in out.wait(
            r"^(alice|bob):\s+(http://127\.0\.0\.1:\d+/)\?token=(\S+)$", 120, count=2)}
        assert set(pages) == {"alice", "bob"}
        (alice, token), (bob, _) = pages["alice"], pages["bob"]
        # Both are up, each on its own page; alice's hug reaches bob.
        hugged = requests.post(f"{alice}api/hug", timeout=5,
                               headers={"Authorization": f"Bearer {token}"})
        assert hugged.status_code == 202, hugged.text
        ident = hugged.json()["id"]

        def arrived():
            items = requests.get(f"{bob}api/history", timeout=5).json()["items"]
            return [i for i in items if i["id"] == ident]
        (played,) = wait_for(arrived, timeout=60, message="alice's hug on bob's pillow")
        assert played["from"] == "alice" and played["outcome"] == "applied"
    finally:
        tool.send_signal(signal.SIGINT)     # Ctrl-C
        code = tool.wait(60)
    text = out.text()
    assert code == 0, text
    assert "stopped alice (exit 0), bob (exit 0) and Azurite" in text, text
    # Everything it started has ended: the two pages and Azurite no longer answer.
    for page in (alice, bob):
        with pytest.raises(requests.ConnectionError):
            requests.get(page, timeout=2)
    (azurite_port,) = re.findall(r"Azurite on 127\.0\.0\.1:(\d+)", text)
    assert not answers(int(azurite_port))
    # The pillows ran on what pair wrote, on their tokens, with no key in sight.
    for name in ("alice", "bob"):
        log = (tmp_path / "try" / "pillows" / name / "pillowd.log").read_text()
        assert "azure credential: per-queue SAS tokens" in log, log


def test_only_a_checkouts_own_config_keeps_its_state_in_dot_state(tmp_path):
    """The rule behind `send` with no flags: a checkout's pillowd uses the checkout's
    config.toml and .state; an installed one, /etc/pillowd and the config's state_dir."""
    from pillowd.seams.checkout import checkout_root, checkout_state_dir
    from pillowd.cli import SYSTEM_CONFIG, default_config
    assert checkout_root() == ROOT
    installed = tmp_path / "lib/python3/site-packages/pillowd"
    installed.mkdir(parents=True)
    assert checkout_root(installed) is None
    assert default_config({}, checkout=ROOT) == str(ROOT / "config.toml")
    assert default_config({"PILLOWD_CONFIG": "/x.toml"}, checkout=ROOT) == "/x.toml"
    assert default_config({}, checkout=None) in (SYSTEM_CONFIG, "config.toml")
    own = str(ROOT / "config.toml")
    assert checkout_state_dir(ROOT, own, "/var/lib/pillowd") == ROOT / ".state"
    # Another config, a state_dir of one's own, or an installed pillowd: as written.
    assert checkout_state_dir(ROOT, str(tmp_path / "config.toml"), "/var/lib/pillowd") is None
    assert checkout_state_dir(ROOT, own, str(tmp_path / "mine")) is None
    assert checkout_state_dir(None, own, "/var/lib/pillowd") is None
