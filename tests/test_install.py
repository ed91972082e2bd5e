"""install.sh: stages the whole tree under --root, idempotently, keeping the config."""

# These tests build a real virtual environment and pip-install the project
# into it (twice), so they take a minute or more; they run in the default test
# run like everything else. They never install onto the live system: only
# --root, and --dry-run, are exercised here.

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "install.sh"
EDIT = "\n# edited by the owner; an upgrade must keep this line\n"
NODE = {"node", "nodejs", "npm", "npx", "corepack"}


def install(*args, check=True, script=INSTALL, path=None):
    env = dict(os.environ, PYTHON=sys.executable)
    if path is not None:
        env["PATH"] = path
    result = subprocess.run(["bash", str(script), *args], capture_output=True,
                            text=True, env=env, timeout=1800)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def path_without_node(bin_dir: Path) -> str:
    """A PATH with every command of this one except Node's, as on a Pi."""
    bin_dir.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not Path(directory).is_dir():
            continue
        for command in Path(directory).iterdir():
            link = bin_dir / command.name
            if command.name not in NODE and not link.exists() and not link.is_symlink():
                link.symlink_to(command)
    assert shutil.which("npm", path=str(bin_dir)) is None
    return str(bin_dir)


@pytest.fixture(scope="module")
def checkout_without_client(tmp_path_factory):
    """A copy of the checkout as git gives it: no vendored client, no node_modules."""
    source = tmp_path_factory.mktemp("checkout") / "pillowd"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "node_modules", "vendor", ".state", "build", "*.egg-info",
        "__pycache__", ".pytest_cache", ".hypothesis"))
    return source


@pytest.fixture(scope="module")
def no_node(tmp_path_factory):
    """PATH without node or npm; the npm registry's URL (asked of npm here, before)
    in $npm_config_registry, as a Pi's owner would set it."""
    registry = subprocess.run(["npm", "config", "get", "registry"], capture_output=True,
                              text=True, check=True).stdout.strip()
    os.environ.setdefault("npm_config_registry", registry)
    return path_without_node(tmp_path_factory.mktemp("nonode") / "bin")


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
def staged(tmp_path_factory, checkout_without_client, no_node):
    """A tree staged twice, the config edited in between: (root, before, after, 2nd
    run). Staged from a checkout without the vendored client, with no Node on PATH."""
    root = tmp_path_factory.mktemp("stage") / "root"
    script = checkout_without_client / "install.sh"
    first = install("--root", str(root), script=script, path=no_node)
    config = root / "etc/pillowd/config.toml"
    before = snapshot(root)
    with config.open("a") as f:
        f.write(EDIT)
    again = install("--root", str(root), script=script, path=no_node)
    return root, before, snapshot(root), again, first


def test_stages_the_whole_tree(staged):
    root, before = staged[:2]
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
    # On PATH, for the owner's `sudo pillowd join DIR` (docs/pairing.md).
    assert before["usr/local/bin/pillowd"] == ("link", str(root / "opt/pillowd/bin/pillowd"))


def test_second_run_changes_nothing_and_keeps_the_edited_config(staged):
    root, before, after, again = staged[:4]
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
    code = ("import pathlib, pillowd.seams.systemd, pillowd.page.app; "
            "print(pillowd.page.app.page_files() / 'static/vendor/socket.io.min.js')")
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
    assert not (root / "usr/local/bin/pillowd").is_symlink()
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


def test_staging_needed_no_node_and_fetched_a_verified_client(staged):
    # The fixture staged from a checkout without web/static/vendor and a PATH without npm.
    first = staged[4]
    assert "socketio_client: fetching socket.io-client" in first.stdout
    assert "verified" in first.stdout
    client = list((staged[0] / "opt/pillowd/lib").glob(
        "python3*/site-packages/pillowd/_page/static/vendor/socket.io.min.js"))
    assert len(client) == 1 and client[0].stat().st_size > 10_000


def test_the_pi5_udev_rule_gives_leds0_to_a_group_the_unit_has(staged):
    rule = staged[0] / "etc/udev/rules.d/60-pillowd-leds.rules"
    assert rule.read_bytes() == (REPO / "systemd/60-pillowd-leds.rules").read_bytes()
    active = [line for line in rule.read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert active == ['KERNEL=="leds[0-9]*", GROUP="gpio", MODE="0660"']
    unit = (staged[0] / "etc/systemd/system/pillowd.service").read_text()
    groups = [line.split("=", 1)[1].split() for line in unit.splitlines()
              if line.startswith("SupplementaryGroups=")]
    assert groups == [["gpio", "spi"]]


def test_a_pwm_pin_in_the_config_brings_the_root_dropin_and_spi_takes_it_away(staged, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(staged[0], root, symlinks=True)
    dropin = root / "etc/systemd/system/pillowd.service.d/pwm-root.conf"
    config = root / "etc/pillowd/config.toml"
    shipped = config.read_text()
    assert re.search(r"(?m)^pin = 10$", shipped)  # SPI: the shipped unit, no root

    config.write_text(re.sub(r"(?m)^pin = 10$", "pin = 18", shipped))  # driver "auto"
    result = install("--root", str(root), "--extras", "systemd")
    assert dropin.read_bytes() == (REPO / "systemd/pillowd-pwm-root.conf").read_bytes()
    assert "PWM/PCM on GPIO 18, which needs root: installing the root drop-in" in result.stdout

    config.write_text(shipped)
    result = install("--root", str(root), "--extras", "systemd")
    assert not dropin.exists() and not dropin.parent.exists()
    assert "needs no root" in result.stdout and "removing the root drop-in" in result.stdout


def test_a_live_install_takes_pythons_packages_from_apt_without_recommends():
    # --dry-run on this Debian machine walks the live path (apt, user, venv) and
    # prints each step instead of doing it.
    result = install("--dry-run", "--extras", "pi,systemd")
    apt_installs = [line for line in result.stdout.splitlines() if "apt-get install" in line]
    assert all("--no-install-recommends" in line for line in apt_installs), apt_installs
    pip = [line for line in result.stdout.splitlines() if "/pip install" in line]
    assert len(pip) == 1 and "rpi-ws281x" in pip[0]
    assert "lgpio" not in pip[0] and "systemd-python" not in pip[0]
    assert "--system-site-packages" in result.stdout
    if "python3-lgpio" not in subprocess.run(["apt-cache", "policy", "python3-lgpio"],
                                             capture_output=True, text=True).stdout:
        assert "python3-lgpio is not in this system's apt sources" in result.stderr


def test_an_unknown_extra_is_one_clear_line(tmp_path):
    result = install("--root", str(tmp_path / "root"), "--extras", "pi,frobnicate",
                     check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == ("install.sh: error: unknown extra 'frobnicate': "
                                     "pyproject.toml has identity, owner, pi, systemd, test")


def test_a_random_control_token_is_made_once_for_root_only(staged):
    root, before, after, again, first = staged
    token = root / "etc/pillowd/control-token"
    assert before["etc/pillowd/control-token"][1] == 0o600
    text = token.read_text().strip()
    assert len(text) >= 22 and text.isascii()  # 128 random bits, URL-safe base64
    assert "sudo cat /etc/pillowd/control-token" in first.stdout
    assert "keeping the control token" in again.stdout  # and unchanged (snapshots)
    unit = (REPO / "systemd/pillowd.service").read_text()
    assert "LoadCredential=control-token:/etc/pillowd/control-token" in unit


def test_every_package_of_the_source_tree_is_installed():
    # pillowd.homeassistant once existed only in the checkout: an editable install
    # found it, the installed pillow (install.sh, a wheel) did not start.
    import tomllib
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())
                 ["tool"]["setuptools"]["packages"])
    found = {".".join(path.parent.relative_to(REPO).parts)
             for path in (REPO / "pillowd").rglob("__init__.py")}
    assert found <= listed, f"not in pyproject.toml's packages: {sorted(found - listed)}"
