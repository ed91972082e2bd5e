"""Takes the README's screenshots of the status page: a hug playing, at desktop and phone sizes.

Run by hand from a checkout after `make test-deps` (it needs Chromium and Playwright),
not in CI:

    .venv/bin/python tools/screenshots.py       # docs/screenshot.png and docs/screenshot-phone.png
    .venv/bin/python tools/screenshots.py --out /tmp/shots --dark --all

It starts a real `pillowd run` on the shipped config.toml (its own state directory, a
free port, mock hardware), sends it a few messages with `pillowd send`, and waits
until the hug glows near the top of its breath before each picture.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from pillowd.testing import PillowProcess

ROOT = Path(__file__).resolve().parent.parent

CHROMIUM = "/usr/bin/chromium"
TOKEN = "screenshot-token-0123456789"
SIZES = {
    "desktop": {"viewport": {"width": 1280, "height": 1000}, "device_scale_factor": 1},
    "phone": {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2},
}


def pillow_config(folder: Path) -> Path:
    """The shipped config.toml, on a free port of this machine only, state in *folder*."""
    text = (ROOT / "config.toml").read_text()
    text = re.sub(r'(?m)^host = "[^"]*"', 'host = "127.0.0.1"', text, count=1)
    text = re.sub(r"(?m)^port = \d+", "port = 0", text, count=1)
    text = re.sub(r'(?m)^name = "[^"]*"', 'name = "cloud-pillow"', text, count=1)
    config = folder / "config.toml"
    config.write_text(text)
    return config


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs",
                        help="where the pictures go (default: docs/)")
    parser.add_argument("--dark", action="store_true", help="the dark theme")
    parser.add_argument("--all", action="store_true",
                        help="light and dark, named screenshot-SIZE-THEME.png")
    parser.add_argument("--full", action="store_true",
                        help="the whole page, not only the screen (for a review)")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    themes = ["light", "dark"] if args.all else ["dark" if args.dark else "light"]
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pillowd-shots-") as folder:
        folder = Path(folder)
        pillow = PillowProcess(pillow_config(folder),
                               env={**_env(), "PILLOWD_CONTROL_TOKEN": TOKEN},
                               args=["--state-dir", str(folder / "state")])
        with pillow.start():
            pillow.cli("send", "hug", "--from", "Carol", "--text",
                       "Good luck today!\nSee you tonight", "--state-dir",
                       str(folder / "state"))
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM,
                                             args=["--headless", "--no-sandbox"])
                try:
                    for theme in themes:
                        for size, options in SIZES.items():
                            path = args.out / _name(size, theme, args.all)
                            _shoot(browser, pillow, options, theme, path, args.full)
                            print(f"{path}")
                finally:
                    browser.close()
    return 0


def _env() -> dict:
    import os
    return dict(os.environ)


def _name(size: str, theme: str, every: bool) -> str:
    if every:
        return f"screenshot-{size}-{theme}.png"
    return "screenshot.png" if size == "desktop" else "screenshot-phone.png"


def _shoot(browser, pillow, options: dict, theme: str, path: Path, full: bool) -> None:
    # bypass_csp: the waits below are scripts of ours, which the page's policy forbids.
    context = browser.new_context(color_scheme=theme, bypass_csp=True, **options)
    try:
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.goto(pillow.url + f"?token={TOKEN}")
        page.wait_for_selector("#connection.ok")
        pillow.cli("send", "hug", "--from", "Alice", "--text", "thinking of you",
                   "--state-dir", str(Path(pillow.args[-1])))
        page.wait_for_function("document.getElementById('sender').textContent === 'Alice'")
        # Near the top of the hug's breath, so the picture shows it glowing.
        page.wait_for_function("""() => {
            const seen = window.pillowPage.seenColours().filter(Boolean);
            return seen.length && Math.max(...seen.map((c) => Math.max(...c))) >= 205; }""")
        page.screenshot(path=str(path), full_page=full)
    finally:
        context.close()


if __name__ == "__main__":
    sys.exit(main())
