"""Files written whole or not at all: a full disk or a crash never leaves one cut short."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class Files:
    """Writes each file to a temporary beside it and moves them all into place
    together; undo() puts back what was there. A full disk or a crash midway
    leaves the old files as they were (queue-sas.toml holds the only copy of the
    family key a rerun of pair reuses; cut short, the rerun would make a new one)."""

    def __init__(self, files: dict[Path, tuple[str, int]]):
        self._files = files
        self._before: dict[Path, tuple[str, int] | None] = {}

    def install(self) -> None:
        staged = []
        try:
            for path, (text, mode) in self._files.items():
                if not path.parent.is_dir():
                    path.parent.mkdir(parents=True)
                    # Readable by the service user whatever this process's umask.
                    path.parent.chmod(0o755)
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
                staged.append((Path(tmp), path))
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    os.fchmod(f.fileno(), mode)  # before the secret is written
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
            for tmp, path in staged:
                self._before[path] = (path.read_text(encoding="utf-8"),
                                      path.stat().st_mode & 0o777) if path.exists() else None
            for tmp, path in staged:
                os.replace(tmp, path)
        finally:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)

    def undo(self) -> None:
        for path, before in self._before.items():
            if before is None:
                path.unlink(missing_ok=True)
            else:
                Files({path: before}).install()


def write(path: Path, text: str, mode: int = 0o600) -> None:
    """*text* as the whole of *path*: written beside it, flushed to the disk, then
    moved into place, so a power cut leaves the old file or the new one, never an
    empty one. Raises OSError (a full disk) with the old file untouched."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), mode)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
