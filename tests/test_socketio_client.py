"""tools/socketio_client.py: the page's Socket.IO client without Node, verified against the lock."""

import base64
import hashlib
import io
import json
import os
import runpy
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOOL = runpy.run_path(str(REPO / "tools" / "socketio_client.py"))
ClientError = TOOL["ClientError"]
ensure_client = TOOL["ensure_client"]
VENDOR = "web/static/vendor/socket.io.min.js"


def sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def checkout_with_lock(tmp_path: Path, *, integrity: str, resolved: str | None = None,
                       version: str = "4.8.3") -> Path:
    entry = {"version": version, "integrity": integrity}
    if resolved:
        entry["resolved"] = resolved
    (tmp_path / "package-lock.json").write_text(json.dumps(
        {"lockfileVersion": 3, "packages": {"node_modules/socket.io-client": entry}}))
    return tmp_path


def tarball(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.fixture(scope="module")
def real_archive(tmp_path_factory):
    """The published socket.io-client archive that package-lock.json pins, downloaded once."""
    version, integrity, resolved = TOOL["locked"](REPO / "package-lock.json")
    url = TOOL["archive_url"](REPO, version, resolved)
    data = TOOL["download"](url)
    return data, integrity


def test_the_published_archive_verifies_and_holds_the_client(real_archive):
    data, integrity = real_archive
    TOOL["verify"](data, integrity)
    script = TOOL["extract"](data)
    assert len(script) > 10_000 and b"io" in script[:2000]


def test_a_tampered_published_archive_is_refused(real_archive):
    data, integrity = real_archive
    tampered = bytearray(data)
    tampered[len(tampered) // 2] ^= 0x01
    with pytest.raises(ClientError, match="does not match package-lock.json"):
        TOOL["verify"](bytes(tampered), integrity)


def test_a_local_archive_with_the_wrong_hash_is_refused_and_nothing_is_written(tmp_path):
    good = tarball({"package/dist/socket.io.min.js": b"window.io = function () {};"})
    other = tarball({"package/dist/socket.io.min.js": b"window.io = 'someone else';"})
    (tmp_path / "client.tgz").write_bytes(good)
    checkout = checkout_with_lock(tmp_path, integrity=sri(other),
                                  resolved=(tmp_path / "client.tgz").as_uri())
    with pytest.raises(ClientError, match="refusing it"):
        ensure_client(checkout, log=lambda *_: None)
    assert not (checkout / VENDOR).exists()


def test_a_local_archive_with_the_right_hash_is_extracted_once(tmp_path):
    script = b"window.io = function () {};"
    archive = tarball({"package/dist/socket.io.min.js": script})
    (tmp_path / "client.tgz").write_bytes(archive)
    checkout = checkout_with_lock(tmp_path, integrity=sri(archive),
                                  resolved=(tmp_path / "client.tgz").as_uri())
    fetched = []
    assert ensure_client(checkout, log=fetched.append).read_bytes() == script
    # Same lock: not fetched again, even with the archive gone.
    (tmp_path / "client.tgz").unlink()
    assert ensure_client(checkout, log=fetched.append).read_bytes() == script
    assert len(fetched) == 1
    # A lock that moves on: fetched again (and here it fails: the archive is gone).
    checkout_with_lock(tmp_path, integrity=sri(b"next version"),
                       resolved=(tmp_path / "client.tgz").as_uri(), version="4.9.0")
    with pytest.raises(ClientError, match="cannot download"):
        ensure_client(checkout, log=fetched.append)


def test_an_archive_without_the_client_file_is_refused(tmp_path):
    archive = tarball({"package/README.md": b"hello"})
    (tmp_path / "client.tgz").write_bytes(archive)
    checkout = checkout_with_lock(tmp_path, integrity=sri(archive),
                                  resolved=(tmp_path / "client.tgz").as_uri())
    with pytest.raises(ClientError, match="no readable package/dist/socket.io.min.js"):
        ensure_client(checkout, log=lambda *_: None)


def test_only_sha512_counts_as_proof(tmp_path):
    sha1 = "sha1-" + base64.b64encode(hashlib.sha1(b"x").digest()).decode()
    with pytest.raises(ClientError, match="not sha512"):
        TOOL["verify"](b"x", sha1)


def test_no_registry_and_no_resolved_url_is_one_clear_line(tmp_path):
    checkout_with_lock(tmp_path, integrity=sri(b"x"))
    env = {"PATH": str(tmp_path / "empty"), "HOME": str(tmp_path)}  # no npm, no .npmrc
    if TOOL["_npmrc_registry"](Path("/etc/npmrc")):
        pytest.skip("/etc/npmrc names a registry on this machine")
    result = subprocess.run([sys.executable, str(REPO / "tools/socketio_client.py"),
                             str(tmp_path)], capture_output=True, text=True, env=env)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "no npm registry is configured: set npm_config_registry" in result.stderr


def test_the_registry_comes_from_npmrc_as_npm_reads_it(tmp_path):
    (tmp_path / ".npmrc").write_text("fund=false\nregistry = https://npm.example.test/\n")
    env = {"PATH": str(tmp_path / "empty"), "HOME": str(tmp_path)}
    assert TOOL["archive_url"](tmp_path, "4.8.3", None, env) == \
        "https://npm.example.test/socket.io-client/-/socket.io-client-4.8.3.tgz"
    env["npm_config_registry"] = "https://mirror.example.test/npm"
    assert TOOL["registry"](tmp_path, env) == "https://mirror.example.test/npm"


def test_pip_install_of_a_checkout_without_node_serves_the_client(tmp_path, real_archive):
    # A copy of the checkout as git would give it (no vendor/, no node_modules),
    # installed by pip from a PATH that has neither node nor npm. The registry is
    # configured the way a Pi's owner would, with npm_config_registry.
    registry = TOOL["registry"](REPO)
    assert registry, "the test machine's npm names no registry"
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "node_modules", "vendor", ".state", "build", "*.egg-info",
        "__pycache__", ".pytest_cache", ".hypothesis"))
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    nowhere = tmp_path / "bin"
    nowhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith("npm_")}
    env.update(PATH=str(nowhere), npm_config_registry=registry)
    assert shutil.which("npm", path=env["PATH"]) is None
    result = subprocess.run(
        [str(tmp_path / "venv/bin/python"), "-m", "pip", "install", "-q", "--no-deps",
         str(source)], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    installed = list((tmp_path / "venv/lib").glob(
        "python3*/site-packages/pillowd/_page/static/vendor/socket.io.min.js"))
    assert len(installed) == 1
    assert installed[0].read_bytes() == TOOL["extract"](real_archive[0])
