"""Helpers for testing and benchmarking pillowd with real parts: the daemon, Azurite, a fault proxy.

Like flask.testing, this ships with the package and imports nothing beyond the
standard library at import time; pytest fixtures built on it live in tests/conftest.py.
    from pillowd.testing import PillowProcess, run_cli
    from pillowd.testing.azurite import Azurite
    from pillowd.testing.faultproxy import FaultProxy
    from pillowd.testing.mosquitto import Mosquitto
    from pillowd.testing.config import pillow_config, toml   # a config.toml to start it on
    from pillowd.testing.wait import wait_for                # what cannot be waited on
    from pillowd.testing.measure import rss_mb, threads, cpu_seconds, percentile
    from pillowd.testing.sources import SourceAdapter        # requests from 127.0.0.N

Every bench in bench/ starts its daemons, Azurite, broker and proxies with these,
as the tests do: neither repeats the other's set-up.

It starts pillowd as a process, so it imports nothing of it; nothing in pillowd
imports it (floor 13, pillowd/__init__.py).
"""

from pillowd.testing.process import NotStarted, PillowProcess, run_cli

__all__ = ["NotStarted", "PillowProcess", "run_cli"]
