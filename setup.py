"""setuptools hook: the status page's Socket.IO client is fetched and verified before packaging.

Metadata and packaging live in pyproject.toml. This file only makes `pip install .`
and wheel builds carry web/static/vendor/socket.io.min.js without Node: build_py
(which regular, editable and wheel builds all run) first runs
tools/socketio_client.py, which downloads the npm archive and checks it against
package-lock.json's sha512. A build without network fails here, with one line
saying why, instead of producing a page stuck at "connecting…".
"""

import runpy
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.egg_info import egg_info

HERE = Path(__file__).resolve().parent
VENDOR = HERE / "web" / "static" / "vendor"


class ClientBuildPy(build_py):
    def run(self):
        tool = runpy.run_path(str(HERE / "tools" / "socketio_client.py"))
        try:
            tool["ensure_client"](HERE)
        except tool["ClientError"] as e:
            raise SystemExit(f"pillowd build: the status page's Socket.IO client: {e}") from None
        super().run()


class ClientEggInfo(egg_info):
    # egg_info lists every package's directory before build_py runs; the vendor
    # package's directory is gitignored and appears only once the client is fetched.
    def run(self):
        VENDOR.mkdir(parents=True, exist_ok=True)
        super().run()


setup(cmdclass={"build_py": ClientBuildPy, "egg_info": ClientEggInfo})
