"""What the pillow keeps stays its own: state files 0600 in a 0700 folder, and an invite
URL that reaches `pillowd send` without showing in the process list."""

import json
import os
import stat

from conftest import run_cli, wait_for
from test_pairing import one_line_error, owner, pillowd, prefix  # noqa: F401


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_daemon_makes_its_state_private_whatever_the_umask_it_was_given(
        pillow, tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o755)   # made by an older pillowd, or StateDirectory=
    os.chmod(state, 0o755)
    old = os.umask(0o022)     # a login shell's: `make run` from a terminal
    try:
        p = pillow()
    finally:
        os.umask(old)
    p.cli("send", "hug", "--from", "Alice", "--text", "spare key under the mat")
    wait_for(lambda: p.state()["queue"]["applied"] == 1, message="the hug played")
    assert p.stop() == 0
    assert mode(state) == 0o700
    made = [f for f in state.iterdir() if f.is_file()]
    assert {"history.sqlite3", "mock-hardware.json"} <= {f.name for f in made}
    assert {f.name: mode(f) for f in made} == {f.name: 0o600 for f in made}


def test_make_runs_state_dir_is_private_too(pillow, tmp_path):
    dot_state = tmp_path / ".state"
    p = pillow(args=("--state-dir", str(dot_state)))
    assert p.stop() == 0
    assert mode(dot_state) == 0o700
    assert all(mode(f) == 0o600 for f in dot_state.iterdir())


def test_send_takes_the_invite_url_from_standard_input_or_the_environment(
        azurite, owner, prefix, tmp_path):
    pillowd(owner, "pair", "alice", "bob", "--out", str(tmp_path), "--prefix", prefix)
    (url,) = pillowd(owner, "invite", "carol", "--to", "alice",
                     "--prefix", prefix).stdout.split()
    friend = {k: v for k, v in owner.items() if k != "AZURE_STORAGE_CONNECTION_STRING"}

    sent = run_cli("send", "hug", "--id", "from-stdin", "--queue-url", "-", env=friend,
                   input=url + "\n")
    assert sent.stdout == "from-stdin\n"
    sent = run_cli("send", "hug", "--id", "from-env", env={**friend,
                                                          "PILLOWD_QUEUE_URL": url})
    assert sent.stdout == "from-env\n"
    queue = azurite.service().get_queue_client(f"{prefix}alice")
    assert [json.loads(m.content)["id"] for m in queue.peek_messages(32)] == \
        ["from-stdin", "from-env"]

    one_line_error(run_cli("send", "hug", "--queue-url", "-", env=friend, input="",
                           check=False), "no queue URL on standard input")
    # The URL is never quoted back, from wherever it came.
    refused = run_cli("send", "hug", "--queue-url", "-", env=friend, check=False,
                      input=url.replace("sig=", "sig=A") + "\n")
    line = one_line_error(refused, "this invite no longer works")
    assert url.split("sig=")[1][:10] not in line
