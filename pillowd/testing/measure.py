"""What a bench reads off a running process (Linux /proc) and how it sums up figures."""

from __future__ import annotations

import os
from pathlib import Path


def threads(pid: int) -> int:
    """The process's threads now."""
    return len(os.listdir(f"/proc/{pid}/task"))


def status(pid: int, field: str) -> int | None:
    """A number field of /proc/PID/status (VmRSS, VmHWM: kB), None when absent."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def rss_mb(pid: int) -> float:
    """Resident memory in MB (VmRSS)."""
    kb = status(pid, "VmRSS")
    return kb / 1024 if kb is not None else float("nan")


def fds(pid: int) -> int:
    """Open file descriptors."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    """CPU time every thread of the process has had so far (schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / 1e9


def percentile(values, q: float):
    """The *q*th percentile (0-100) of *values*, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]
