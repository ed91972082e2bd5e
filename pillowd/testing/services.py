"""What the tests' helper servers share: a free port, waiting until one listens, ending one."""

from __future__ import annotations

import socket
import subprocess
import time


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def answers(port: int, timeout: float = 0.2, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on *host*:*port*."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def await_listening(proc: subprocess.Popen, port: int, what: str,
                    timeout: float, host: str = "127.0.0.1") -> None:
    """Return once *proc* listens on *port*; RuntimeError (with its stderr) if it
    exits first or does not listen within *timeout* (it is ended then)."""
    # A child process cannot tell us it is ready, so this one wait polls the port.
    deadline = time.monotonic() + timeout
    while not answers(port, host=host):
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"{what} exited {proc.returncode}: {err}")
        if time.monotonic() > deadline:
            terminate(proc)
            raise RuntimeError(f"{what} did not listen on port {port}")
        time.sleep(0.02)


def terminate(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not exited within *timeout*; its pipe closed."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stderr is not None:
        proc.stderr.close()
