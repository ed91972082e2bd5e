"""Where pillowd runs from: a checkout (`make run`, `.venv/bin/pillowd`) or an install.

A checkout's pillowd (the package imported from a source tree, as `pip install -e .`
and `make run` set it up) uses the checkout's own `config.toml` and keeps that
config's state in the checkout's `.state/`, which is where `make run` runs its
pillow: so `.venv/bin/pillowd send hug`, with no flags, reaches that pillow. An
installed pillowd (install.sh's, in its own virtual environment) uses
/etc/pillowd/config.toml and the state_dir it names.
"""

from __future__ import annotations

import shlex
from pathlib import Path

# What config.toml ships with: the installed pillow's state (systemd's
# StateDirectory=), root's to create. A checkout never uses it.
INSTALLED_STATE_DIR = "/var/lib/pillowd"
# Where a checkout keeps its pillow's state (`make run` passes the same).
CHECKOUT_STATE_DIR = ".state"


def checkout_root(package: Path | None = None) -> Path | None:
    """The source tree pillowd is imported from, or None when it is installed."""
    root = (package or Path(__file__).resolve().parents[1]).parent
    if (root / "pyproject.toml").is_file() and (root / "config.toml").is_file():
        return root
    return None


def checkout_config(root: Path | None) -> Path | None:
    return root / "config.toml" if root is not None else None


def checkout_state_dir(root: Path | None, config_source: str,
                       state_dir: str) -> Path | None:
    """The checkout's .state when *config_source* is the checkout's own config.toml
    and its state_dir is the installed pillow's; else None (the config's own)."""
    if root is None or state_dir.rstrip("/") != INSTALLED_STATE_DIR:
        return None
    try:
        own = Path(config_source).resolve() == (root / "config.toml").resolve()
    except OSError:
        return None
    return root / CHECKOUT_STATE_DIR if own else None


def install_line(extra: str, root: Path | None = None) -> str:
    """A command that installs pillowd's *extra* and works as printed: pillowd is not
    on PyPI, so it installs from the checkout this pillowd runs from (editable, as
    `make run` does); an installed pillow gets it from install.sh."""
    root = checkout_root() if root is None else root
    if root is not None:
        import sys
        return (f"{shlex.quote(sys.executable)} -m pip install -e "
                f"{shlex.quote(f'{root}[{extra}]')}")
    if extra == "owner":  # the owner's computer, never a pillow
        return f"from a checkout of pillowd: .venv/bin/pip install -e '.[{extra}]'"
    return (f"from a checkout of pillowd: sudo ./install.sh --extras systemd,{extra} "
            f"(pi,systemd,{extra} on a Raspberry Pi)")
