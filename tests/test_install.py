"""install.sh: stages the whole tree under --root, idempotently, keeping the config."""

# These tests build a real virtual environment and pip-install the project
# into it (twice), so they take a minute or more; they run in the default test
# run like everything else. They never install onto the live system: only
# --root, and --dry-run, are exercised here.

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "install.sh"
EDIT = "\n# edited by the owner; an upgrade must keep this line\n"


def install(*args, check=True):
    env = dict(os.environ, PYTHON=sys.executable)
    result = subprocess.run(["bash", str(INSTALL), *args], capture_output=True,
                            text=True, env=env, timeout=1800)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file, directory and link under root, minus bytecode caches."""
    tree = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if "__pycache__" in rel.parts or path.suffix == ".pyc":
            continue
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            tree[str(rel)] = ("link", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            tree[str(rel)] = ("dir", stat.S_IMODE(st.st_mode))
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            tree[str(rel)] = ("file", stat.S_IMODE(st.st_mode), digest)
    return tree


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """A tree staged twice, the config edited in between: (root, before, after)."""
    root = tmp_path_factory.mktemp("stage") / "root"
    install("--root", str(root))
    config = root / "etc/pillowd/config.toml"
    before = snapshot(root)
    with config.open("a") as f:
        f.write(EDIT)
    again = install("--root", str(root))
    return root, before, snapshot(root), again


def test_stages_the_whole_tree(staged):
    root, before, _, _ = staged
    for path in ["opt/pillowd/bin/pillowd", "opt/pillowd/bin/python",
                 "etc/pillowd/config.toml", "etc/systemd/system/pillowd.service",
                 "var/lib/pillowd"]:
        assert path in before, path
    assert (root / "etc/pillowd/config.toml").read_bytes().startswith(
        (REPO / "config.toml").read_bytes())
    assert (root / "etc/systemd/system/pillowd.service").read_bytes() == \
        (REPO / "systemd/pillowd.service").read_bytes()
    # The root drop-in only on request.
    assert not (root / "etc/systemd/system/pillowd.service.d").exists()


def test_second_run_changes_nothing_and_keeps_the_edited_config(staged):
    root, before, after, again = staged
    config = "etc/pillowd/config.toml"
    assert "keeping" in again.stdout
    assert (root / config).read_text().endswith(EDIT)
    assert {k: v for k, v in after.items() if k != config} == \
        {k: v for k, v in before.items() if k != config}
    assert after[config][:2] == before[config][:2]  # same kind and mode


def test_staged_pillowd_runs(staged):
    root = staged[0]
    pillowd = root / "opt/pillowd/bin/pillowd"
    result = subprocess.run([str(pillowd), "--help"], capture_output=True, text=True,
                            timeout=120, cwd="/")
    assert result.returncode == 0, result.stderr
    assert "run" in result.stdout
    result = subprocess.run(
        [str(pillowd), "check-config", "--config", str(root / "etc/pillowd/config.toml")],
        capture_output=True, text=True, timeout=120, cwd="/")
    assert result.returncode == 0, result.stdout + result.stderr


def test_staged_package_has_the_web_client_and_the_systemd_module(staged):
    python = staged[0] / "opt/pillowd/bin/python"
    code = ("import pathlib, pillowd.systemd, pillowd.web; "
            "print(pillowd.web.page_files() / 'static/vendor/socket.io.min.js')")
    result = subprocess.run([str(python), "-I", "-c", code], capture_output=True,
                            text=True, timeout=120, cwd="/")
    assert result.returncode == 0, result.stderr
    vendored = Path(result.stdout.strip())
    assert vendored.is_file() and vendored.stat().st_size > 10_000


def test_uninstall_keeps_config_and_state(staged, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(staged[0], root, symlinks=True)
    (root / "var/lib/pillowd/history.sqlite").write_bytes(b"state")
    install("--root", str(root), "--pwm-root", "--extras", "systemd")
    assert (root / "etc/systemd/system/pillowd.service.d/pwm-root.conf").is_file()

    result = install("--root", str(root), "--uninstall")
    assert not (root / "opt/pillowd").exists()
    assert not (root / "etc/systemd/system/pillowd.service").exists()
    assert not (root / "etc/systemd/system/pillowd.service.d").exists()
    assert (root / "etc/pillowd/config.toml").read_text().endswith(EDIT)
    assert (root / "var/lib/pillowd/history.sqlite").read_bytes() == b"state"
    assert "kept" in result.stdout


def test_dry_run_prints_and_touches_nothing(tmp_path):
    root = tmp_path / "root"
    result = install("--root", str(root), "--dry-run")
    assert not root.exists()
    assert f"+ install -m 0644 {REPO}/systemd/pillowd.service {root}/etc/systemd/system/pillowd.service" \
        in result.stdout
    assert "-m venv" in result.stdout


def test_bad_usage_exits_2():
    result = install("--frobnicate", check=False)
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_install_sh_is_shellcheck_clean():
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck not found: apt-get install shellcheck")
    result = subprocess.run(["shellcheck", str(INSTALL)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
