"""Debian's mosquitto broker, run by the tests on a free loopback port."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from pillowd.testing.services import answers, await_listening, free_port, terminate

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


class Mosquitto:
    """One broker with a config of its own; stop() and start() keep its port.

    ``users`` ({name: password}) turns on a password file and refuses anonymous
    clients; ``tls`` ((certfile, keyfile)) makes the listener TLS-only.
    """

    def __init__(self, directory: Path, *, users: dict[str, str] | None = None,
                 tls: tuple[Path, Path] | None = None, port: int | None = None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        # "user root": run as root (a CI container), mosquitto would switch to its
        # own user and could no longer read these files.
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "user root",
                 f"log_dest file {self.dir / 'mosquitto.log'}", "log_type all"]
        if users:
            passwords = self.dir / "passwords"
            passwords.touch(mode=0o600)
            for name, password in users.items():
                subprocess.run([MOSQUITTO_PASSWD, "-b", str(passwords), name, password],
                               check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if tls:
            lines += [f"certfile {tls[0]}", f"keyfile {tls[1]}"]
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.tls = tls

    def start(self, timeout: float = 10) -> "Mosquitto":
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        await_listening(self.proc, self.port, "mosquitto", timeout)
        return self

    def answers(self) -> bool:
        return answers(self.port)

    def stop(self) -> None:
        if self.proc is None:
            return
        terminate(self.proc)
        self.proc = None

    def log(self) -> str:
        path = self.dir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> "Mosquitto":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
