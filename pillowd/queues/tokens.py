"""A pillow's SAS tokens file (pillowd pair's queue-sas.toml): its tokens and its family key."""

# No Azure SDK here: a pillow on the embedded queue may still hold a family key.

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from ..errors import PillowError
from ..family import TOKENS_ENTRY, FamilyKey, FamilyKeyError
from ..seams.credentials import CredentialError, credential as read_credential

# The systemd credential (LoadCredential=) that stands in for queue.sas_file.
SAS_CREDENTIAL = "azure-queue-sas"


def credential(environ, name: str) -> str:
    """The systemd credential *name*, stripped; "" when absent or blank."""
    try:
        return read_credential(name, environ).strip()
    except CredentialError as err:
        raise PillowError(f"azure: {err}") from None


def tokens_source(sas_file: str, config_dir: str | Path = ".",
                  environ=os.environ) -> tuple[str, str]:
    """(the tokens file's text, where it came from): the systemd credential
    azure-queue-sas, else *sas_file* relative to *config_dir*; ("", "") when neither."""
    text = credential(environ, SAS_CREDENTIAL)
    if text:
        return text, f"the SAS tokens in the systemd credential {SAS_CREDENTIAL}"
    if not sas_file:
        return "", ""
    path = Path(config_dir) / sas_file
    source = f"the SAS tokens in queue.sas_file ({path})"
    try:
        return path.read_text(encoding="utf-8"), source
    except (OSError, UnicodeDecodeError) as err:
        raise PillowError(f"azure: cannot read {source}: "
                          f"{getattr(err, 'strerror', None) or type(err).__name__}"
                          ) from None


def _entries(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        # tomllib's message gives a position, never the text around it.
        raise PillowError(f"azure: {source} is not valid TOML ({err})") from None


def read_tokens(text: str, source: str) -> dict[str, str]:
    """{queue name: SAS token} from the TOML *text* (its family key is no queue's);
    errors name *source*, never a token."""
    tokens = {}
    for queue, token in _entries(text, source).items():
        if queue == TOKENS_ENTRY:
            continue
        if not isinstance(token, str) or not token.strip():
            raise PillowError(f"azure: {source}: {queue!r} must be a SAS token string")
        tokens[queue] = token.strip().lstrip("?")
    if not tokens:
        raise PillowError(f"azure: {source} holds no tokens")
    return tokens


def read_family_key(text: str, source: str) -> FamilyKey | None:
    """The family key in the TOML *text*, or None when it holds none (a pair made
    before keys: running `pillowd pair` again adds one)."""
    found = _entries(text, source).get(TOKENS_ENTRY)
    if found is None:
        return None
    if not isinstance(found, str):
        raise PillowError(f"{source}: {TOKENS_ENTRY} must be a string, as pillowd pair "
                          "writes it")
    try:
        return FamilyKey.from_text(found)
    except FamilyKeyError as err:
        raise PillowError(f"{source}: {err}") from None


def family_key(sas_file: str, config_dir: str | Path = ".",
               environ=os.environ) -> FamilyKey | None:
    """The family key beside the pillow's tokens; None when there is none (nor a
    tokens file: a pillow on a connection string may have no sas_file to read)."""
    if sas_file and not credential(environ, SAS_CREDENTIAL) and \
            not (Path(config_dir) / sas_file).exists():
        return None
    text, source = tokens_source(sas_file, config_dir, environ)
    return read_family_key(text, source.replace("the SAS tokens", "the family key")
                           ) if text else None
