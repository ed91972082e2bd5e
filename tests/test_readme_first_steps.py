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


def make_run_command() -> list[str]:
    """What `make run` runs, as make itself says (`make -n`), without its set-up steps."""
    assert any(line.split("#")[0].split() == ["make", "run"] for line in readme_lines()), \
        "README no longer says to type `make run`"
    shown = subprocess.run(["make", "-n", "-s", "run", "PORT=0"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout
    (line,) = [line for line in shown.splitlines() if re.search(r"\bpillowd run\b", line)]
    return shlex.split(line)


def send_line() -> str:
    """README's first `pillowd send` line."""
    return next(line for line in readme_lines() if re.search(r"\bpillowd send\b", line))


@pytest.fixture
def checkout(tmp_path):
    """A place to run the first steps as a newcomer would in a fresh checkout: its
    config.toml and .venv. The only change: a free port, so that tests may run side
    by side (the page's address is read from what the pillow prints)."""
    folder = tmp_path / "pillowd"
    folder.mkdir()
    config = (ROOT / "config.toml").read_text()
    (folder / "config.toml").write_text(re.sub(r"(?m)^port = \d+$", "port = 0", config))
    if (ROOT / "config.d").is_dir():
        shutil.copytree(ROOT / "config.d", folder / "config.d")
    (folder / ".venv").symlink_to(ROOT / ".venv")
    return folder


def test_readme_first_steps_as_written(checkout, open_page):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PILLOWD_")}
    command = make_run_command()
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
