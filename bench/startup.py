"""How long `pillowd run` takes to be ready, as systemd sees it (READY=1), and why.

    .venv/bin/python bench/startup.py [--runs 10]

Starts `pillowd run` on the shipped config.toml (mock hardware off a Pi, local
queue, port 0) --runs times with a real Unix datagram socket as NOTIFY_SOCKET, and
prints the time from exec to READY=1: min, median, max, against the goal (≤ 0.5 s
here). Then prints the modules that `python -X importtime` finds slowest to import
on the way (cumulative ms).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL = 0.5


def config_for(tmp: Path) -> Path:
    """The shipped config, on mock hardware, a free port and a temporary state_dir."""
    text = (ROOT / "config.toml").read_text()
    text = re.sub(r'(?m)^state_dir = .*$', f'state_dir = "{tmp}/state"', text)
    text = re.sub(r'(?m)^port = .*$', "port = 0", text)
    text = re.sub(r'(?m)^host = .*$', 'host = "127.0.0.1"', text)
    text = re.sub(r'(?m)^backend = "auto"$', 'backend = "mock"', text)
    path = tmp / "config.toml"
    path.write_text(text)
    return path


def time_to_ready(config: Path, tmp: Path) -> float:
    address = str(tmp / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(30)
        env = {**os.environ, "NOTIFY_SOCKET": address}
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "pillowd", "run", "--config",
                                 str(config)], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            while b"READY=1" not in sock.recv(4096):
                pass
            return time.monotonic() - started
        finally:
            proc.terminate()
            proc.wait(15)
            os.unlink(address)


def slowest_imports(count: int = 12) -> list[tuple[int, str]]:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c",
         "import pillowd.cli, pillowd.daemon, pillowd.page.app"],
        capture_output=True, text=True, check=True)
    rows = []
    for line in result.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(2)) <= 3:   # top-level and their direct imports
            rows.append((int(m.group(1)), m.group(3)))
    return sorted(rows, reverse=True)[:count]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    options = parser.parse_args(argv)
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        config = config_for(Path(tmp))
        time_to_ready(config, Path(tmp))  # warm the page cache and .pyc files
        for _ in range(options.runs):
            times.append(time_to_ready(config, Path(tmp)))
    median = statistics.median(times)
    print(f"exec → READY=1, shipped config on mock hardware, {options.runs} runs: "
          f"min {min(times):.3f} s, median {median:.3f} s, max {max(times):.3f} s "
          f"(goal ≤ {GOAL} s: {'met' if median <= GOAL else 'MISSED'})")
    print("\nslowest imports on the way (cumulative ms, python -X importtime):")
    for us, name in slowest_imports():
        print(f"  {us / 1000:7.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
