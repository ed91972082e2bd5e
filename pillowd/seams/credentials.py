"""Reads the systemd credentials (LoadCredential=) the unit hands the daemon."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import PillowError


class CredentialError(PillowError, OSError):
    """A credential the unit handed over cannot be read."""


def credential(name: str, environ=os.environ) -> str:
    """The text of the systemd credential *name* in $CREDENTIALS_DIRECTORY, as it
    is; "" when there is no such directory or file (each of the unit's credentials
    is optional: its SetCredential= default is a lone newline). An unreadable one
    raises CredentialError naming it, never its text."""
    folder = environ.get("CREDENTIALS_DIRECTORY")
    if not folder:
        return ""
    try:
        return (Path(folder) / name).read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as err:
        raise CredentialError(f"cannot read the systemd credential {name}: "
                              f"{getattr(err, 'strerror', None) or type(err).__name__}"
                              ) from None
