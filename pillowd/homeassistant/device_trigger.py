"""The device triggers: a hug received, returned or delivered, for automations."""

from __future__ import annotations

from .entity import Entity


# `refused`: a message Home Assistant asked to send broke the text rules (its
# `reason` says which); nothing was sent.
# The hug event types offered as MQTT device triggers ("hug received", ...).
TRIGGERS = ("received", "returned", "delivered")


class HugTrigger(Entity):
    """An MQTT device trigger ("hug received" in the automation editor, under the
    pillow) on the hug event's topic, for one event type."""

    component, icon = "device_automation", ""
    stateful = False
    kind = ""

    @property
    def key(self) -> str:
        return f"hug_{self.kind}"

    @property
    def entity(self) -> bool:
        return False

    def config(self) -> dict:
        return {"automation_type": "trigger", "topic": f"{self.topic}/hug",
                "type": self.kind, "subtype": "hug",
                "value_template": "{{ value_json.event_type }}", "payload": self.kind}


class HugReceived(HugTrigger):
    kind = "received"


class HugReturned(HugTrigger):
    kind = "returned"


class HugDelivered(HugTrigger):
    kind = "delivered"
