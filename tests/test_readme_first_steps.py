"""README's first steps, as written: `make run`'s command, the page on a phone, the
README's send line, and the hug glowing on the page."""

import os
import re
import shlex
import shutil
import signal
import subprocess
import threading

import pytest

from conftest import ROOT, wait_for
from test_page import browser, open_page  # noqa: F401

pytest.importorskip("playwright.sync_api")


def readme_lines() -> list[str]:
    """The lines of README.md's shell blocks, in order."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:sh|bash|shell|console)\n(.*?)```", text, re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def make_run_command(checkout) -> list[str]:
    """What `make run` runs, as make itself says (`make -n`), without its set-up steps;
    on a free port (make run PORT=0), so that tests may run side by side."""
    assert any(line.split("#")[0].split() == ["make", "run"] for line in readme_lines()), \
        "README no longer says to type `make run`"
    shown = subprocess.run(["make", "-n", "-s", "run", "PORT=0"], cwd=checkout,
                           capture_output=True, text=True, check=True).stdout
    commands = [shlex.split(line) for line in shown.splitlines()]
    (command,) = [c for c in commands if len(c) > 1 and c[0].endswith("/pillowd")
                  and c[1] == "run"]
    return command


def send_line() -> str:
    """README's first `pillowd send` line."""
    return next(line for line in readme_lines() if re.search(r"\bpillowd send\b", line))


# What a fresh clone holds that the first steps use: the package, the page, the
# config, and what `make run` looks at. Copied with their times, so make sees the
# same up-to-date tree as here; the .venv is this checkout's.
CLONE = ["Makefile", "README.md", "config.toml", "package-lock.json", "pyproject.toml",
         "setup.py", "tools/socketio_client.py", "pillowd", "web"]


@pytest.fixture
def checkout(tmp_path):
    """A fresh checkout's first minutes, in a copy of this one: `make run` keeps its
    state in the copy's .state and `pillowd send` finds it there, as in a clone."""
    folder = tmp_path / "pillowd"
    for name in CLONE:
        source, target = ROOT / name, folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, copy_function=shutil.copy2,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    (folder / ".venv").symlink_to(ROOT / ".venv")
    return folder


def test_readme_first_steps_as_written(checkout, open_page):
    # The copy's pillowd, not the one the .venv was installed from: a checkout's
    # pillowd finds its config.toml and .state beside its own package.
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PILLOWD_")},
           "PYTHONPATH": str(checkout)}
    command = make_run_command(checkout)
    started = threading.Event()
    found, output = [], []
    run = subprocess.Popen(command, cwd=checkout, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)

    def read():
        for line in run.stdout:
            output.append(line)
            m = re.match(r"pillowd: status page at (http://\S+/)", line)
            if m:
                found.append(m.group(1))
                started.set()
        started.set()
    threading.Thread(target=read, name="make-run-output", daemon=True).start()
    try:
        assert started.wait(60) and found, "".join(output)
        page = open_page(found[0], viewport={"width": 390, "height": 844},
                         device_scale_factor=2, is_mobile=True, has_touch=True)
        page.wait_for_selector("#connection.ok")

        line = send_line()
        sent = subprocess.run(line, shell=True, cwd=checkout, env=env,
                              capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, f"{line}\n{sent.stdout}{sent.stderr}"
        assert (checkout / ".state" / "queue.sqlite3").is_file()
        sender = re.search(r"--from (\S+)", line)
        if sender:
            page.wait_for_function(
                f"document.getElementById('sender').textContent === {sender.group(1)!r}")
        # The hug glows on the page: every LED of the cloud in the hug's pink
        # (config.toml's #ff6ec7), near the top of its breath.
        wait_for(lambda: page.evaluate("""() => {
            const ctx = document.getElementById('leds').getContext('2d');
            const leds = window.pillowPage.ledPositions();
            return leds.length > 0 && leds.every(({x, y}) => {
                const [r, g, b] = ctx.getImageData(x, y, 1, 1).data;
                return r >= 180 && r > b && b > g; }); }"""),
                 timeout=20, message="the hug glowing pink")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        run.send_signal(signal.SIGTERM)
        assert run.wait(20) == 0, "".join(output)
