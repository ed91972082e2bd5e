"""Helpers for testing and benchmarking pillowd with real parts: the daemon, Azurite, a fault proxy.

Like flask.testing, this ships with the package and imports nothing beyond the
standard library at import time; pytest fixtures built on it live in tests/conftest.py.
    from pillowd.testing import PillowProcess, run_cli
    from pillowd.testing.azurite import Azurite
    from pillowd.testing.faultproxy import FaultProxy
"""

from pillowd.testing.process import NotStarted, PillowProcess, run_cli

__all__ = ["NotStarted", "PillowProcess", "run_cli"]
