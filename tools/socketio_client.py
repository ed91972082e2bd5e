"""Fetches the status page's Socket.IO client from its npm archive, checked against package-lock.json.

    python3 tools/socketio_client.py [CHECKOUT]     (default: this script's checkout)

The page needs one 46 KB file from socket.io-client; Node and npm are 177 MB of
Debian packages on a Pi. So this reads the version and the sha512 (SRI format)
that package-lock.json pins, downloads the same archive npm would, with the
standard library only, refuses it unless the hash matches, and extracts
dist/socket.io.min.js into web/static/vendor/. The Makefile, setup.py's build
hook (so `pip install .` and wheels carry the file) and install.sh all use it.

Where the archive is: the lock's `resolved` URL when it has one. This project's
lock has none (npm's omit-lockfile-registry-resolved), and the repository names
no registry host, so the URL is built as npm builds it from the configured
registry: $npm_config_registry, else `registry=` in .npmrc (the checkout's,
~/.npmrc, /etc/npmrc), else what `npm config get registry` says where npm is
installed. Nothing else about the download is trusted: only the hash.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

PACKAGE = "socket.io-client"
MEMBER = "package/dist/socket.io.min.js"
TARGET = Path("web/static/vendor/socket.io.min.js")
# Next to the file: the integrity of the archive it came from, so a lock that
# moves to another version fetches again, and an unchanged one does not.
STAMP = TARGET.with_name(TARGET.name + ".integrity")
LIMIT = 20 * 1024 * 1024  # the 4.8 archive is 330 KB; refuse to buffer a runaway answer


class ClientError(RuntimeError):
    """The client could not be fetched or did not verify; the message is one line."""


def locked(lock: Path) -> tuple[str, str, str | None]:
    """(version, integrity, resolved URL or None) of socket.io-client in *lock*."""
    try:
        data = json.loads(lock.read_text())
    except (OSError, ValueError) as e:
        raise ClientError(f"cannot read {lock}: {e}") from None
    entry = data.get("packages", {}).get(f"node_modules/{PACKAGE}") \
        or data.get("dependencies", {}).get(PACKAGE)  # lockfileVersion 1
    if not entry or "version" not in entry or "integrity" not in entry:
        raise ClientError(f"{lock} has no {PACKAGE} entry with a version and an integrity hash")
    return entry["version"], entry["integrity"], entry.get("resolved")


def _npmrc_registry(path: Path) -> str | None:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key.strip() == "registry" and value.strip():
            return value.strip().strip("\"'")
    return None


def registry(checkout: Path, env=os.environ) -> str | None:
    """The npm registry URL, found where npm itself looks, or None."""
    for name in ("npm_config_registry", "NPM_CONFIG_REGISTRY"):
        if env.get(name):
            return env[name]
    home = env.get("HOME")
    for rc in (checkout / ".npmrc", Path(home) / ".npmrc" if home else None,
               Path("/etc/npmrc")):
        if rc is not None and (found := _npmrc_registry(rc)):
            return found
    npm = shutil.which("npm", path=env.get("PATH"))
    if npm:
        try:
            out = subprocess.run([npm, "config", "get", "registry"], capture_output=True,
                                 text=True, timeout=60, env=dict(env)).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out.startswith(("http://", "https://")):
            return out
    return None


def archive_url(checkout: Path, version: str, resolved: str | None, env=os.environ) -> str:
    if resolved:
        return resolved
    base = registry(checkout, env)
    if not base:
        raise ClientError(
            f"package-lock.json has no resolved URL for {PACKAGE} and no npm registry is "
            "configured: set npm_config_registry to your npm registry's URL "
            "(or `registry=URL` in /etc/npmrc)")
    # npm's layout for an unscoped package: REGISTRY/NAME/-/NAME-VERSION.tgz
    return f"{base.rstrip('/')}/{PACKAGE}/-/{PACKAGE}-{version}.tgz"


def verify(data: bytes, integrity: str) -> None:
    """Raises ClientError unless *data* matches the SRI string *integrity* (sha512 only)."""
    # SRI allows several "alg-base64" entries; npm writes sha512, and anything
    # weaker (sha1 in very old locks) is not accepted as proof.
    wanted = [part.split("-", 1)[1] for part in integrity.split()
              if part.startswith("sha512-")]
    if not wanted:
        raise ClientError(f"the lock's integrity for {PACKAGE} is not sha512: {integrity[:40]}")
    got = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if got not in wanted:
        raise ClientError(f"{PACKAGE} archive does not match package-lock.json: sha512-{got[:16]}… "
                          f"instead of sha512-{wanted[0][:16]}…; refusing it")


def extract(data: bytes, member: str = MEMBER) -> bytes:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            found = archive.extractfile(member)
            if found is None:
                raise KeyError(member)
            return found.read()
    except (tarfile.TarError, KeyError, OSError, EOFError) as e:
        raise ClientError(f"{PACKAGE} archive has no readable {member}: {e}") from None


def download(url: str, timeout: float = 60) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read(LIMIT + 1)
    except (OSError, ValueError) as e:  # URLError is an OSError
        raise ClientError(f"cannot download {PACKAGE} ({url}): {e}") from None
    if len(data) > LIMIT:
        raise ClientError(f"{PACKAGE} archive from {url} is over {LIMIT // 2**20} MB; refusing it")
    return data


def ensure_client(checkout: Path, env=os.environ, log=print) -> Path:
    """Puts the verified client at CHECKOUT/web/static/vendor; returns its path."""
    checkout = Path(checkout)
    version, integrity, resolved = locked(checkout / "package-lock.json")
    target, stamp = checkout / TARGET, checkout / STAMP
    if target.is_file() and stamp.is_file() and stamp.read_text().strip() == integrity:
        return target
    url = archive_url(checkout, version, resolved, env)
    log(f"socketio_client: fetching {PACKAGE} {version}")
    data = download(url)
    verify(data, integrity)
    script = extract(data)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written whole or not at all: a page must never load half a client.
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        tmp.write(script)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, target)
    stamp.write_text(integrity + "\n")
    return target


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and args[0].startswith("-")):
        print("usage: socketio_client.py [CHECKOUT]", file=sys.stderr)
        return 2
    checkout = Path(args[0]) if args else Path(__file__).resolve().parent.parent
    try:
        path = ensure_client(checkout)
    except ClientError as e:
        print(f"socketio_client: error: {e}", file=sys.stderr)
        return 1
    print(f"socketio_client: {path} ({path.stat().st_size} bytes, verified)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
