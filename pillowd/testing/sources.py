"""Requests from a chosen loopback address (127.0.0.2, …): many clients from one machine.

Needs requests (the test extra), imported with this module only.
"""

from __future__ import annotations

import requests


class SourceAdapter(requests.adapters.HTTPAdapter):
    """A requests adapter whose connections leave from *source* (an address of
    this machine): mount it on a Session for "http://"."""

    def __init__(self, source: str):
        self._source = source
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self._source, 0)
        super().init_poolmanager(*args, **kwargs)
