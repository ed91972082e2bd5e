"""The binary sensor: whether the pillow's queue is online."""

from __future__ import annotations

from .entity import Entity


class QueueOnline(Entity):
    """Whether the pillow's queue answers (a connectivity binary_sensor)."""

    component, key, name, icon = "binary_sensor", "queue_online", "Queue", \
        "mdi:cloud-check"
    diagnostic = True

    def config(self) -> dict:
        return {**super().config(), "device_class": "connectivity",
                "payload_on": "ON", "payload_off": "OFF"}

    def states(self, snapshot: dict) -> dict[str, str | None]:
        online = (snapshot.get("queue") or {}).get("online")
        return {self.state_topic: None if online is None else ("ON" if online else "OFF")}
