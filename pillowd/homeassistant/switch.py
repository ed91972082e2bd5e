"""The switch: quiet hours, by hand."""

from __future__ import annotations

from typing import Callable

from ..messages import Rejection
from .entity import Entity, short


class QuietSwitch(Entity):
    """Quiet now (ON) or not, as the status page's switch."""

    component, key, name, icon, commands = "switch", "quiet", "Quiet hours", \
        "mdi:sleep", True

    def config(self) -> dict:
        return {**super().config(), "payload_on": "ON", "payload_off": "OFF"}

    def states(self, snapshot: dict) -> dict[str, str | None]:
        return {self.state_topic: "ON" if snapshot.get("quiet") else "OFF"}

    def command(self, payload: bytes, snapshot: Callable[[], dict]) -> None:
        if payload not in (b"ON", b"OFF"):
            raise Rejection(f"the quiet switch takes ON or OFF, not {short(payload)}")
        self.controls.set_quiet(payload == b"ON")
