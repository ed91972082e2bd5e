"""Home Assistant sends hugs: the "Hug" buttons, the "Message" notify entity, the
device triggers, the diagnostic entities and the one device discovery payload.

Through a real mosquitto, a paho client standing in for Home Assistant, real
`pillowd run`s, and for hugs between pillows, pillows paired by `pillowd pair` on
Azurite. The discovery keys checked are those of Home Assistant's own schemas
(homeassistant/components/mqtt: schemas.py DEVICE_DISCOVERY_SCHEMA, button.py,
notify.py, binary_sensor.py, sensor.py, device_trigger.py TRIGGER_DISCOVERY_SCHEMA).
"""

from __future__ import annotations

import json
import re
from datetime import datetime

import pytest

from conftest import PillowProcess, wait_for
from pillowd.family import TOKENS_ENTRY, FamilyKey
from pillowd.messages import unwrap
from test_hugs_between_pillows import TOKEN, with_family_key
from test_mqtt import (COMMON_KEYS, DEVICE_KEYS, KEYS, PREFIX, TOPIC,  # noqa: F401
                       HomeAssistantStandIn, broker, home_assistant, mqtt_pillow,
                       mqtt_table, retained)
from test_pairing import bare_env, owner, pillow_config, pillowd, prefix  # noqa: F401

NODE = "test-pillow"
DEVICE_TOPIC = f"{PREFIX}/device/{NODE}/config"
# Home Assistant's keys for the components the pillow adds (its documented
# discovery schema for each platform), and the device config's own.
NEW_KEYS = {
    "button": COMMON_KEYS | {"command_template", "command_topic", "device_class",
                             "payload_press", "retain"},
    "notify": COMMON_KEYS | {"command_template", "command_topic", "retain"},
    "binary_sensor": COMMON_KEYS | {"device_class", "expire_after", "force_update",
                                    "off_delay", "payload_off", "payload_on",
                                    "state_topic", "value_template"},
    "device_automation": {"automation_type", "payload", "qos", "subtype", "topic",
                          "type", "value_template"},
}
ALL_KEYS = {**KEYS, **NEW_KEYS}
DEVICE_CONFIG_KEYS = {"dev", "o", "cmps", "availability_topic", "payload_available",
                      "payload_not_available", "qos", "encoding", "state_topic",
                      "command_topic", "availability", "availability_mode"}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
ENTITIES = '\ndiscovery = "entities"\n'


def device_config(ha: HomeAssistantStandIn, topic: str = DEVICE_TOPIC) -> dict:
    return json.loads(ha.wait(topic, lambda p: p != b""))


# -- the device payload ---------------------------------------------------------

def test_one_device_config_with_every_component_and_no_color_mode(
        mqtt_pillow, home_assistant, broker):
    proc = mqtt_pillow()
    ha = home_assistant()
    config = device_config(ha)
    assert set(config) <= DEVICE_CONFIG_KEYS and {"dev", "o", "cmps"} <= set(config)
    device = config["dev"]
    assert set(device) <= DEVICE_KEYS
    assert device["identifiers"] == [NODE] and device["name"] == NODE
    assert device["manufacturer"] == "pillowd"
    assert device["hw_version"] == "mock"          # [hardware] backend = "mock"
    assert device["sw_version"] == proc.state()["version"]
    assert device["configuration_url"] == proc.url
    assert set(config["o"]) <= ORIGIN_KEYS
    assert config["o"]["name"] == "pillowd" and config["o"]["support_url"] == proc.url
    assert config["availability_topic"] == f"{TOPIC}/availability"

    components = config["cmps"]
    platforms = {key: c["p"] for key, c in components.items()}
    assert platforms == {
        "light": "light", "hug": "event", "last_sender": "sensor", "quiet": "switch",
        "send": "button", "message": "notify", "hug_received": "device_automation",
        "hug_returned": "device_automation", "hug_delivered": "device_automation",
        "queue_online": "binary_sensor", "hugs_waiting": "sensor",
        "led_current": "sensor"}   # no partners: no "Hug bob", no delivered sensor
    for key, component in components.items():
        kind = component["p"]
        keys = set(component) - {"p"}
        assert keys <= ALL_KEYS[kind], f"{key}: undocumented {keys - ALL_KEYS[kind]}"
        assert re.fullmatch(r"[A-Za-z0-9_-]+", key)
        if kind != "device_automation":   # an entity needs one (check_unique_id)
            assert component["unique_id"] == f"{NODE}_{key}"
    assert "color_mode" not in components["light"]   # 2025.3+ logs an ERROR for it
    assert components["light"]["supported_color_modes"] == ["rgb"]
    assert components["hug"]["event_types"] == ["pressed", "sent", "received",
                                                "returned", "delivered", "refused"]
    # Retained, alone: no per-entity config beside it.
    assert set(retained(broker.port, f"{PREFIX}/#")) == {DEVICE_TOPIC}


def test_device_info_reads_the_pis_model(tmp_path):
    from pillowd.homeassistant import hardware_model
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi Zero 2 W Rev 1.0\0")
    assert hardware_model("pi", model) == "Raspberry Pi Zero 2 W Rev 1.0"
    assert hardware_model("auto", model) == "Raspberry Pi Zero 2 W Rev 1.0"
    assert hardware_model("mock", model) == "mock"
    assert hardware_model("auto", tmp_path / "none") == "mock"  # not a Pi


# -- switching forms --------------------------------------------------------------

def test_switching_discovery_forms_leaves_no_stale_retained_topic(
        mqtt_pillow, home_assistant, broker):
    proc = mqtt_pillow(ENTITIES)
    ha = home_assistant()
    per_entity = wait_for(lambda: len(ha.configs()) == 12 and set(ha.configs()),
                          message="twelve per-entity configs")
    assert DEVICE_TOPIC not in per_entity
    lamp = ha.configs()[f"{PREFIX}/light/{NODE}/light/config"]
    assert lamp["color_mode"] is True        # Home Assistant 2024.3 needs it
    assert lamp["device"]["manufacturer"] == "pillowd"
    trigger = ha.configs()[f"{PREFIX}/device_automation/{NODE}/hug_received/config"]
    assert set(trigger) - {"device", "origin"} <= NEW_KEYS["device_automation"]
    assert set(retained(broker.port, f"{PREFIX}/#")) == per_entity

    proc.stop()   # to the device form: the per-entity configs are emptied first
    proc.config.write_text(proc.config.read_text().replace(ENTITIES, "\n"))
    proc.start()
    device_config(ha)
    for topic in per_entity:
        ha.wait(topic, lambda p: p == b"")
    emptied = [t for t, p, _ in ha.messages if p == b""]
    published = [t for t, p, _ in ha.messages if t == DEVICE_TOPIC and p]
    assert ha.messages.index(next(m for m in ha.messages if m[0] == DEVICE_TOPIC)) > \
        max(i for i, m in enumerate(ha.messages) if m[0] in emptied)
    assert len(published) == 1
    assert set(retained(broker.port, f"{PREFIX}/#")) == {DEVICE_TOPIC}

    proc.stop()   # and back: the device config is emptied
    proc.config.write_text(proc.config.read_text() + ENTITIES)
    seen = len(ha.on(DEVICE_TOPIC))
    proc.start()
    assert ha.wait(DEVICE_TOPIC, after=seen) == b""
    wait_for(lambda: set(retained(broker.port, f"{PREFIX}/#")) == per_entity,
             message="the per-entity configs alone")


# -- the buttons ------------------------------------------------------------------

@pytest.fixture
def family(azurite, owner, prefix, tmp_path, bare_env, broker):
    """alice, bob and carol, paired by `pillowd pair` on Azurite, each with [mqtt]
    on the test broker; start(name) runs one. Returns (start, queue of, family key)."""
    out = tmp_path / "pair"
    names = ["alice", "bob", "carol"]
    pillowd(owner, "pair", *names, "--out", str(out), "--prefix", prefix)
    with_family_key(out, names)
    text = (out / "alice" / "queue-sas.toml").read_text()
    key = FamilyKey.from_text(re.search(rf'{TOKENS_ENTRY} = "([^"]+)"', text).group(1))
    started = []

    def start(name: str) -> PillowProcess:
        config = pillow_config(out / name, tmp_path / name)
        config.write_text(config.read_text() + mqtt_table(broker.port))
        process = PillowProcess(config, {**bare_env, "PILLOWD_CONTROL_TOKEN": TOKEN})
        started.append(process)
        process.start()
        wait_for(lambda: (process.state().get("mqtt") or {}).get("online"),
                 message=f"{name} online on MQTT")
        return process

    def waiting(name: str) -> list[dict]:
        queue = azurite.service().get_queue_client(prefix + name)
        return [json.loads(unwrap(m.content)) for m in queue.peek_messages(max_messages=32)]

    yield start, waiting, key
    for process in started:
        process.stop()


def test_the_hug_buttons_send_a_signed_press_to_every_partner_or_one(family,
                                                                     home_assistant):
    start, waiting, key = family
    alice = start("alice")
    ha = home_assistant()
    config = device_config(ha, f"{PREFIX}/device/alice/config")
    buttons = {k: c for k, c in config["cmps"].items() if c["p"] == "button"}
    assert {c["name"] for c in buttons.values()} == {"Hug", "Hug bob", "Hug carol"}
    to_bob = next(c for c in buttons.values() if c["name"] == "Hug bob")

    ha.publish(buttons["send"]["command_topic"], buttons["send"]["payload_press"])
    (everyone,) = wait_for(lambda: waiting("bob"), timeout=20, message="the hug for bob")
    assert wait_for(lambda: waiting("carol"), timeout=20,
                    message="the hug for carol") == [everyone]
    assert key.verify(everyone)                # signed with the family key
    assert everyone["event"] == "hug" and everyone["pillow"] == "alice"
    assert "reply_to" in everyone
    sent = wait_for(lambda: alice.state()["last_sent"], message="last_sent")
    assert sent["id"] == everyone["id"] and set(sent["partners"]) == {"bob", "carol"}

    ha.publish(to_bob["command_topic"], to_bob["payload_press"])
    wait_for(lambda: len(waiting("bob")) == 2, timeout=20, message="bob's second hug")
    alone = waiting("bob")[1]
    assert key.verify(alone) and alone["id"] != everyone["id"]
    # carol got nothing more: the outbox has nothing left for anyone (so nothing
    # for her is on its way), and her queue holds the first hug alone.
    wait_for(lambda: alice.state()["outbox"]["pending"] == 0, message="the outbox empty")
    assert waiting("carol") == [everyone]
    sent = wait_for(lambda: alice.state()["last_sent"]["id"] == alone["id"]
                    and alice.state()["last_sent"], message="last_sent, bob's")
    assert set(sent["partners"]) == {"bob"}
    # The press played here as any press does, from Home Assistant.
    # (Published by the MQTT thread after the press: waited for, not read at once.)
    wait_for(lambda: [json.loads(p)["event_type"] for p in ha.on("pillowd/alice/hug")]
             .count("pressed") == 2, timeout=20, message="two pressed events")


# -- the message --------------------------------------------------------------------

def test_a_notify_message_arrives_with_its_text_and_a_bad_one_is_not_sent(
        family, home_assistant):
    start, waiting, key = family
    alice, bob = start("alice"), start("bob")
    ha = home_assistant()
    message = device_config(ha, f"{PREFIX}/device/alice/config")["cmps"]["message"]
    assert message["p"] == "notify" and message["name"] == "Message"
    ha.publish(message["command_topic"], "landed safely")

    # It played on bob's pillow, words and all: his own Home Assistant hears it.
    heard = json.loads(ha.wait("pillowd/bob/hug", lambda p: json.loads(p)["event_type"]
                               == "received", timeout=30))
    assert (heard["from"], heard["text"]) == ("alice", "landed safely")
    (played,) = [i for i in bob.state()["recent"] if i["from"] == "alice"]
    assert played["outcome"] == "applied"
    assert alice.state()["last_sent"]["id"] == played["id"]

    before = alice.state()["last_sent"]["id"]
    ha.publish(message["command_topic"], "landed\x1b[2J safely")
    refused = json.loads(ha.wait("pillowd/alice/hug",
                                 lambda p: json.loads(p)["event_type"] == "refused"))
    assert "control characters" in refused["reason"]
    assert refused["reason"].startswith("message not sent")
    wait_for(lambda: any("control characters" in line for line in alice.output),
             message="the reason in the log")
    assert alice.state()["last_sent"]["id"] == before        # nothing sent
    assert alice.state()["outbox"]["pending"] == 0
    assert all("\x1b" not in (m.get("text") or "") for m in waiting("carol"))


# -- the device triggers ------------------------------------------------------------

def test_a_received_hug_reaches_a_subscriber_to_the_triggers_topic(mqtt_pillow,
                                                                  home_assistant, broker):
    proc = mqtt_pillow()
    ha = home_assistant()
    triggers = {c["type"]: c for c in device_config(ha)["cmps"].values()
                if c["p"] == "device_automation"}
    assert set(triggers) == {"received", "returned", "delivered"}
    received = triggers["received"]
    assert (received["automation_type"], received["subtype"]) == ("trigger", "hug")
    # Home Assistant's device trigger: a message on `topic` whose value_template
    # ({{ value_json.event_type }}) renders to `payload`.
    assert received["value_template"] == "{{ value_json.event_type }}"
    listener = HomeAssistantStandIn(broker.port, topics=(received["topic"],))
    try:
        proc.cli("send", "hug", "--from", "Alice", "--text", "thinking of you")
        fired = json.loads(listener.wait(
            received["topic"],
            lambda p: json.loads(p)["event_type"] == received["payload"]))
        assert (fired["from"], fired["text"]) == ("Alice", "thinking of you")
    finally:
        listener.close()


# -- the diagnostics ----------------------------------------------------------------

def test_diagnostics_queue_online_hugs_waiting_and_led_current(mqtt_pillow, home_assistant):
    proc = mqtt_pillow()
    ha = home_assistant()
    components = device_config(ha)["cmps"]
    for key in ("queue_online", "hugs_waiting", "led_current"):
        assert components[key]["entity_category"] == "diagnostic", key
    online = components["queue_online"]
    assert (online["p"], online["device_class"]) == ("binary_sensor", "connectivity")
    assert ha.wait(online["state_topic"]) == b"ON"
    assert ha.wait(components["hugs_waiting"]["state_topic"]) == b"0"
    current = components["led_current"]
    assert (current["device_class"], current["unit_of_measurement"]) == ("current", "mA")
    shown = int(ha.wait(current["state_topic"]))
    assert shown == round(proc.state()["leds"]["milliamps"])


def test_the_last_hug_delivered_to_each_partner_is_a_timestamp(family, home_assistant):
    start, waiting, key = family
    alice, bob = start("alice"), start("bob")
    ha = home_assistant()
    components = device_config(ha, f"{PREFIX}/device/alice/config")["cmps"]
    delivered = {c["name"]: c for c in components.values()
                 if c.get("device_class") == "timestamp"}
    assert set(delivered) == {"Last hug delivered to bob", "Last hug delivered to carol"}
    assert all(c["entity_category"] == "diagnostic" for c in delivered.values())
    waiting_topic = components["hugs_waiting"]["state_topic"]
    ha.publish(components["send"]["command_topic"], "PRESS")
    to_bob = delivered["Last hug delivered to bob"]["state_topic"]
    when = ha.wait(to_bob, timeout=30).decode()
    sent = alice.state()["last_sent"]["partners"]["bob"]
    assert when == sent["delivered"]
    assert datetime.fromisoformat(when.replace("Z", "+00:00")).tzinfo is not None
    assert ha.latest(delivered["Last hug delivered to carol"]["state_topic"]) is None
    assert ha.latest(waiting_topic) == b"0"   # every queue took it


def test_a_partner_taken_out_loses_its_button_and_sensor(make_config, pillow_env,
                                                          home_assistant, broker):
    from conftest import BASE_CONFIG
    # On the embedded queue the partners are the outbound queues' names.
    base = BASE_CONFIG.replace('name = "pillow"\n',
                               'name = "pillow"\noutbound_name = ["bob", "carol"]\n')
    proc = PillowProcess(make_config(mqtt_table(broker.port), base=base), pillow_env)
    proc.start()
    try:
        ha = home_assistant()
        first = device_config(ha)["cmps"]
        assert first["send_carol"]["name"] == "Hug carol"
        assert first["delivered_carol"]["device_class"] == "timestamp"
        proc.stop()
        proc.config.write_text(proc.config.read_text().replace(
            'outbound_name = ["bob", "carol"]', 'outbound_name = ["bob"]'))
        seen = len(ha.on(DEVICE_TOPIC))
        proc.start()
        # Home Assistant removes a device's component when its config is the platform alone.
        then = json.loads(ha.wait(DEVICE_TOPIC, after=seen))["cmps"]
        assert then["send_carol"] == {"p": "button"}
        assert then["delivered_carol"] == {"p": "sensor"}
        assert then["send_bob"]["name"] == "Hug bob"
    finally:
        proc.stop()


def test_received_names_the_partner_and_carries_its_colour_and_hold(
        azurite, owner, prefix, tmp_path, bare_env, broker, home_assistant):
    out = tmp_path / "pair"
    pillowd(owner, "pair", "alice", "bob", "--out", str(out), "--prefix", prefix,
            "--color", "alice=#3366ff")
    with_family_key(out, ["alice", "bob"])
    started = []
    try:
        for name in ("alice", "bob"):
            config = pillow_config(out / name, tmp_path / name)
            config.write_text(config.read_text() + mqtt_table(broker.port))
            process = PillowProcess(config, {**bare_env, "PILLOWD_CONTROL_TOKEN": TOKEN})
            started.append(process.start())
            wait_for(lambda: (process.state().get("mqtt") or {}).get("online"),
                     message=f"{name} online on MQTT")
        alice, bob = started
        ha = home_assistant()
        answer = alice.post("/api/hug", json={"hold": 2.5, "strength": 0.7},
                            headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 202, answer.text
        heard = json.loads(ha.wait("pillowd/bob/hug", lambda p: json.loads(p)
                                   ["event_type"] == "received", timeout=30))
        assert heard == {"event_type": "received", "from": "alice", "text": None,
                         "partner": "alice", "color": "#3366ff", "hold": 2.5,
                         "strength": 0.7}
    finally:
        for process in started:
            process.stop()
