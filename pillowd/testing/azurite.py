"""Azurite, Microsoft's Azure Storage emulator, run from node_modules for tests and benchmarks."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from pillowd.testing.services import answers, await_listening, free_port, terminate

# Azurite is a Node tool installed by `make test-deps` into the checkout's node_modules;
# it is looked for there (this package imported from a checkout) and under the current
# directory (the package installed, run from a checkout).
_CHECKOUT = Path(__file__).resolve().parents[2]
_BIN = Path("node_modules") / ".bin" / "azurite-queue"


def find_azurite(binary: Path = _BIN) -> Path | None:
    for base in (_CHECKOUT, Path.cwd()):
        if (base / binary).exists():
            return base / binary
    return None

# Azurite's well-known development account, published by Microsoft; not a secret.
ACCOUNT = "devstoreaccount1"
KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
       "K1SZFPTOtr/KBHBeksoGMGw==")


class Azurite:
    """One azurite-queue process; stop() and start() keep its port and its data."""

    service_name = "queue"

    def __init__(self, location: Path, port: int | None = None, binary: Path | None = None,
                 host: str = "127.0.0.1"):
        self.location = Path(location)
        self.binary = binary or find_azurite(_BIN.with_name(f"azurite-{self.service_name}"))
        self.host = host  # another address than loopback: containers on a bridge
        self.port = port or free_port(host)
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}/{ACCOUNT}"

    def connection_string(self, endpoint: str | None = None, key: str = KEY) -> str:
        """The connection string; *endpoint* points it elsewhere (a proxy in front)."""
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={key};"
                f"QueueEndpoint={endpoint or self.endpoint};")

    def sas_url(self, endpoint: str | None = None, hours: float = 1) -> str:
        """The account URL with an account SAS good for queue work."""
        from datetime import datetime, timedelta, timezone

        from azure.storage.queue import (AccountSasPermissions, ResourceTypes,
                                         generate_account_sas)
        sas = generate_account_sas(
            ACCOUNT, KEY, ResourceTypes(service=True, container=True, object=True),
            AccountSasPermissions(read=True, write=True, delete=True, list=True,
                                  add=True, create=True, update=True, process=True),
            expiry=datetime.now(timezone.utc) + timedelta(hours=hours))
        return f"{endpoint or self.endpoint}?{sas}"

    def service(self):
        from azure.storage.queue import QueueServiceClient
        return QueueServiceClient.from_connection_string(self.connection_string())

    def start(self, timeout: float = 30, stderr=subprocess.PIPE) -> "Azurite":
        if self.binary is None or not Path(self.binary).exists():
            raise FileNotFoundError(f"azurite-{self.service_name} is not in "
                                    f"{_BIN.parent.parent}: run `make test-deps`")
        self.location.mkdir(parents=True, exist_ok=True)
        kind = self.service_name
        self.proc = subprocess.Popen(
            [str(self.binary), f"--{kind}Host", self.host, f"--{kind}Port", str(self.port),
             "--location", str(self.location), "--skipApiVersionCheck",
             "--disableTelemetry", "--silent"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        await_listening(self.proc, self.port, "azurite", timeout, host=self.host)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        terminate(self.proc)
        self.proc = None
        deadline = time.monotonic() + 10
        while answers(self.port, host=self.host) and time.monotonic() < deadline:
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class AzuriteBlob(Azurite):
    """One azurite-blob process: the blob service, where the send page is published."""

    service_name = "blob"

    def connection_string(self, endpoint: str | None = None, key: str = KEY) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={key};"
                f"BlobEndpoint={endpoint or self.endpoint};")

    def service(self):
        from azure.storage.blob import BlobServiceClient
        return BlobServiceClient.from_connection_string(self.connection_string())


if __name__ == "__main__":  # handy by hand: python -m pillowd.testing.azurite
    server = Azurite(Path(tempfile.mkdtemp(prefix="azurite-"))).start()
    print(server.connection_string(), flush=True)
    try:
        while server.running:
            time.sleep(1)
    except KeyboardInterrupt:
        server.stop()
    os._exit(0)
