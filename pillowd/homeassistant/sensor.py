"""The sensors: who the last message came from, hugs waiting to leave, the LED current, each partner's last delivery."""

from __future__ import annotations

from .entity import Entity, object_id


class LastSender(Entity):
    """A sensor with who sent the last message that played."""

    component, key, name, icon = "sensor", "last_sender", "Last message from", \
        "mdi:account-heart"

    def states(self, snapshot: dict) -> dict[str, str | None]:
        sender = next((item.get("from") for item in snapshot.get("recent") or ()
                       if item.get("outcome") == "applied" and item.get("from")), None)
        message = snapshot.get("message") or {}
        return {self.state_topic: message.get("from") or sender}


class HugsWaiting(Entity):
    """Hug events and receipts waiting to leave for a partner's queue."""

    component, key, name, icon = "sensor", "hugs_waiting", "Hugs waiting to leave", \
        "mdi:tray-full"
    diagnostic = True

    def config(self) -> dict:
        return {**super().config(), "state_class": "measurement"}

    def states(self, snapshot: dict) -> dict[str, str | None]:
        pending = (snapshot.get("outbox") or {}).get("pending", 0)
        return {self.state_topic: str(int(pending or 0))}


class LedCurrent(Entity):
    """The LEDs' estimated current, in mA (what the power limit works with)."""

    component, key, name, icon = "sensor", "led_current", "LED current", "mdi:current-dc"
    diagnostic = True

    def config(self) -> dict:
        return {**super().config(), "device_class": "current",
                "unit_of_measurement": "mA", "state_class": "measurement"}

    def states(self, snapshot: dict) -> dict[str, str | None]:
        milliamps = (snapshot.get("leds") or {}).get("milliamps")
        if not isinstance(milliamps, (int, float)) or isinstance(milliamps, bool):
            return {self.state_topic: None}
        return {self.state_topic: str(round(milliamps))}


class LastDelivered(Entity):
    """When the last hug to one partner played there (its receipt), a timestamp."""

    component, icon = "sensor", "mdi:heart-circle"
    diagnostic = True
    per_partner = True

    def __init__(self, topic: str, *, partner: str, **parts):
        super().__init__(topic, partner=partner, **parts)
        self.key = f"delivered_{object_id(partner)}"
        self.name = f"Last hug delivered to {partner}"
        self._last: str | None = None  # kept while a newer hug is not delivered yet

    def config(self) -> dict:
        return {**super().config(), "device_class": "timestamp"}

    def states(self, snapshot: dict) -> dict[str, str | None]:
        partners = (snapshot.get("last_sent") or {}).get("partners") or {}
        delivered = (partners.get(self.partner) or {}).get("delivered")
        if isinstance(delivered, str) and delivered:
            self._last = delivered
        return {self.state_topic: self._last}
