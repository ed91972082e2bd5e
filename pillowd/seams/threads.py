"""Threads a person can tell apart: each one's name in the kernel, for `ps -L` and top."""

# Python before 3.14 never tells the kernel a thread's name, so every thread of
# the daemon shows as "python" (or "pillowd") in `ps -L -o comm`, top and
# /proc/PID/task/*/comm. A profile hook installed with threading.setprofile()
# runs first thing in every thread the threading module starts, ours and the
# libraries' (werkzeug's request threads, engine.io's, paho's); it names the
# thread and removes itself, so it costs one call per thread and nothing after.

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
import threading

log = logging.getLogger(__name__)

_PR_SET_NAME = 15          # prctl(2)
_KERNEL_NAME_BYTES = 15    # TASK_COMM_LEN less its NUL

# Library threads, by the function they run, as a person would call them.
_LIBRARY_THREADS = {
    "process_request_thread": "pillowd-http",  # werkzeug: one per HTTP request
    "_service_task": "pillowd-sio-ping",       # engine.io: pings and timeouts
    "_websocket_handler": "pillowd-sio-ws",
    "writer": "pillowd-sio-out",                # engine.io: a client's send queue
    "_thread_main": "pillowd-mqtt",             # paho-mqtt's network loop
}

try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    _prctl = _libc.prctl
except (OSError, AttributeError):  # not Linux: names stay Python's own
    _prctl = None


def kernel_name(thread: threading.Thread) -> str:
    """What *thread* is called in the kernel: its own name if it is one of ours."""
    name = thread.name
    if not name.startswith("pillowd"):
        target = getattr(getattr(thread, "_target", None), "__name__", "") or \
            type(thread).__name__
        name = _LIBRARY_THREADS.get(target) or "pillowd-" + target.strip("_")
    return name.encode("utf-8")[:_KERNEL_NAME_BYTES].decode("utf-8", "ignore")


def set_kernel_name(name: str) -> None:
    """Name the calling thread in the kernel (15 bytes at most, as Linux keeps)."""
    if _prctl is not None:
        _prctl(_PR_SET_NAME, name.encode("utf-8")[:_KERNEL_NAME_BYTES], 0, 0, 0)


def _name_this_thread(frame, event, arg):
    sys.setprofile(None)  # once per thread: the hook removes itself
    try:
        set_kernel_name(kernel_name(threading.current_thread()))
    except Exception:  # a name is never worth a thread
        log.debug("could not name a thread", exc_info=True)


def name_threads(main: str = "pillowd") -> None:
    """From now on every new thread carries its name into the kernel; *main* too."""
    set_kernel_name(main)
    threading.setprofile(_name_this_thread)


def start(name: str, target, *args) -> threading.Thread:
    """A daemon thread called *name* (keep it "pillowd-…", ≤ 15 bytes), started."""
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    thread.start()
    return thread
