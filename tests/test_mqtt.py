"""Home Assistant over MQTT: a real mosquitto, a real paho client standing in for
Home Assistant, and a real `pillowd run`."""

from __future__ import annotations

import json
import random
import re
import subprocess
import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from conftest import run_cli, wait_for
from pillowd.config import ConfigError, parse
from pillowd.homeassistant import HomeAssistant, MqttError, login_from
from pillowd.testing.mosquitto import Mosquitto, free_port

NODE = "test-pillow"            # conftest's [pillow] name
TOPIC = f"pillowd/{NODE}"
PREFIX = "homeassistant"
SCENES = ["idle", "hug", "glow"]  # conftest's BASE_CONFIG

# Keys Home Assistant documents for MQTT discovery (integrations light.mqtt with
# schema json, event.mqtt, sensor.mqtt, switch.mqtt, button.mqtt, notify.mqtt,
# binary_sensor.mqtt, device_trigger.mqtt), and the type of each we use.
COMMON_KEYS = {"availability", "availability_mode", "availability_template",
               "availability_topic", "device", "enabled_by_default", "encoding",
               "entity_category", "icon", "json_attributes_template",
               "json_attributes_topic", "name", "object_id", "origin",
               "payload_available", "payload_not_available", "qos", "unique_id"}
KEYS = {
    "light": COMMON_KEYS | {"schema", "brightness", "brightness_scale", "color_mode",
                            "command_topic",
                            "effect", "effect_list", "flash_time_long", "flash_time_short",
                            "max_mireds", "min_mireds", "optimistic", "retain",
                            "state_topic", "supported_color_modes", "white_scale"},
    "event": COMMON_KEYS | {"device_class", "event_types", "state_topic", "value_template"},
    "sensor": COMMON_KEYS | {"device_class", "expire_after", "force_update", "options",
                             "state_class", "state_topic", "unit_of_measurement",
                             "suggested_display_precision", "value_template"},
    "switch": COMMON_KEYS | {"command_template", "command_topic", "device_class",
                             "optimistic", "payload_off", "payload_on", "retain",
                             "state_off", "state_on", "state_topic", "value_template"},
    "button": COMMON_KEYS | {"command_template", "command_topic", "device_class",
                             "payload_press", "retain"},
    "notify": COMMON_KEYS | {"command_template", "command_topic", "retain"},
    "binary_sensor": COMMON_KEYS | {"device_class", "expire_after", "force_update",
                                    "off_delay", "payload_off", "payload_on",
                                    "state_topic", "value_template"},
    "device_automation": {"automation_type", "device", "origin", "payload", "qos",
                          "subtype", "topic", "type", "value_template"},
}
REQUIRED = {"light": {"command_topic"}, "event": {"state_topic", "event_types"},
            "sensor": {"state_topic"}, "switch": {"command_topic"},
            "button": {"command_topic"}, "notify": {"command_topic"},
            "binary_sensor": {"state_topic"},
            "device_automation": {"automation_type", "device", "subtype", "topic",
                                  "type"}}
DEVICE_KEYS = {"configuration_url", "connections", "hw_version", "identifiers",
               "manufacturer", "model", "name", "serial_number", "suggested_area",
               "sw_version", "via_device"}
COLOR_MODES = {"onoff", "brightness", "color_temp", "hs", "xy", "rgb", "rgbw", "rgbww",
               "white"}
CONFIG_TOPIC = re.compile(rf"^{PREFIX}/(light|event|sensor|switch|button|notify|"
                          r"binary_sensor|device_automation)/"
                          r"(?:[A-Za-z0-9_-]+/)?[A-Za-z0-9_-]+/config$")


class HomeAssistantStandIn:
    """A paho client that subscribes where Home Assistant would, recording everything."""

    def __init__(self, port: int, topics=(f"{PREFIX}/#", "pillowd/#"), **login):
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2)
        if login:
            self.client.username_pw_set(login["username"], login["password"])
        subscribed = threading.Event()
        self.client.on_message = self._record
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe([(t, 1) for t in topics])
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10), "the stand-in could not subscribe"

    def _record(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload, bool(message.retain)))

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t == topic]

    def latest(self, topic: str) -> bytes | None:
        found = self.on(topic)
        return found[-1] if found else None

    def wait(self, topic: str, predicate=lambda payload: True, after: int = 0,
             timeout: float = 10.0) -> bytes:
        """The first payload on *topic*, after the first *after* ones, that passes."""
        found = wait_for(lambda: [p for p in self.on(topic)[after:] if predicate(p)],
                         timeout, message=f"a message on {topic}")
        return found[0]  # (a list: an empty payload is a message too)

    def configs(self) -> dict[str, dict]:
        with self._lock:
            found = {t: p for t, p, _ in self.messages if t.endswith("/config")}
        return {t: json.loads(p) for t, p in found.items() if p}

    def publish(self, topic: str, payload, qos: int = 1, retain: bool = False):
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained(port: int, pattern: str) -> dict[str, bytes]:
    """What a new subscriber to *pattern* is handed as retained right now: the broker
    sends retained messages before anything published after the subscription."""
    standin = HomeAssistantStandIn(port, topics=(pattern, "test/sentinel"))
    try:
        standin.publish("test/sentinel", "x").wait_for_publish(5)
        standin.wait("test/sentinel")
        with standin._lock:
            return {t: p for t, p, r in standin.messages if r and p}
    finally:
        standin.close()


@pytest.fixture
def broker(tmp_path):
    with Mosquitto(tmp_path / "broker") as running:
        yield running


@pytest.fixture
def home_assistant(broker):
    standins = []

    def connect(**login) -> HomeAssistantStandIn:
        standin = HomeAssistantStandIn(broker.port, **login)
        standins.append(standin)
        return standin

    yield connect
    for standin in standins:
        standin.close()


def mqtt_table(port: int, extra: str = "") -> str:
    return f'\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\n{extra}'


@pytest.fixture
def mqtt_pillow(pillow, broker):
    """A running pillowd with [mqtt] on the test broker, online."""
    def start(extra: str = "", env=None, online: bool = True):
        process = pillow(mqtt_table(broker.port, extra), env=env)
        if online:
            wait_for(lambda: (process.state().get("mqtt") or {}).get("online"),
                     message="the pillow online on MQTT")
        return process
    return start


def light(payload: bytes) -> dict:
    return json.loads(payload)


# -- discovery ------------------------------------------------------------------

ENTITIES = 'discovery = "entities"\n'   # one config per entity (before HA 2024.12)
DEVICE_TOPIC = f"{PREFIX}/device/{NODE}/config"
CONFIGS = 12  # light, event, 2 sensors, switch, button, notify, 3 triggers, 2 diagnostics


def test_discovery_matches_home_assistants_documented_schema(mqtt_pillow, home_assistant,
                                                            broker):
    proc = mqtt_pillow(ENTITIES)
    ha = home_assistant()
    configs = wait_for(lambda: len(ha.configs()) == CONFIGS and ha.configs(),
                       message="a discovery config per entity")
    page = proc.url
    kinds = {}
    for topic, config in configs.items():
        assert CONFIG_TOPIC.match(topic), topic
        kind = topic.split("/")[1]
        kinds.setdefault(kind, config)
        assert set(config) <= KEYS[kind], f"{kind}: undocumented {set(config) - KEYS[kind]}"
        assert REQUIRED[kind] <= set(config), f"{kind}: missing {REQUIRED[kind] - set(config)}"
        device = config["device"]
        assert device["identifiers"] == [NODE]
        if kind == "device_automation":  # a trigger, not an entity: no id, no availability
            continue
        assert re.fullmatch(r"[A-Za-z0-9_-]+", config["unique_id"])
        assert set(device) <= DEVICE_KEYS
        assert device["identifiers"] == [NODE] and device["name"] == NODE
        assert device["model"] == "Huggable Cloud Pillow"
        assert device["sw_version"] == proc.state()["version"]
        assert device["configuration_url"] == page
        assert config["origin"]["name"] == "pillowd"
        assert config["availability_topic"] == f"{TOPIC}/availability"
        assert (config["payload_available"], config["payload_not_available"]) == \
            ("online", "offline")
        for key in ("state_topic", "command_topic"):
            if key in config:
                assert isinstance(config[key], str) and not set("+#") & set(config[key])
    assert set(kinds) == {"light", "event", "sensor", "switch", "button", "notify",
                          "binary_sensor", "device_automation"}
    assert len({c.get("unique_id") for c in configs.values()
                if "unique_id" in c}) == CONFIGS - 3

    lamp = kinds["light"]
    assert lamp["schema"] == "json" and lamp["name"] is None  # the device's own name
    assert lamp["brightness"] is True and lamp["brightness_scale"] == 255
    assert set(lamp["supported_color_modes"]) <= COLOR_MODES
    # Both: Home Assistant 2024.3 refuses one without the other; 2025 ignores
    # color_mode in discovery (homeassistant/components/mqtt/light/schema_json.py).
    assert lamp["supported_color_modes"] == ["rgb"] and lamp["color_mode"] is True
    assert lamp["effect"] is True and lamp["effect_list"] == proc.state()["scenes"] == SCENES
    hug = kinds["event"]
    assert hug["event_types"] == ["pressed", "sent", "received", "returned", "delivered",
                                  "refused"]
    assert hug["state_topic"] == f"{TOPIC}/hug"
    switch = kinds["switch"]
    assert (switch["payload_on"], switch["payload_off"]) == ("ON", "OFF")

    # Retained, so a Home Assistant that starts later finds the pillow.
    assert set(retained(broker.port, f"{PREFIX}/#")) == set(configs)
    assert retained(broker.port, f"{TOPIC}/availability") == \
        {f"{TOPIC}/availability": b"online"}
    state = light(ha.wait(f"{TOPIC}/light/state"))
    assert state == {"state": "ON", "brightness": 255, "effect": "idle",
                     "color_mode": "rgb", "color": {"r": 0, "g": 0, "b": 16}}
    assert ha.wait(f"{TOPIC}/quiet/state") == b"OFF"
    # One thread of its own, named for `ps -L`, that sleeps at rest: no wake-ups
    # but for the pings every KEEPALIVE / 3 = 20 s (paho's loop_start() thread
    # would wake every second).
    tasks = [(task, (task / "comm").read_text().strip())
             for task in Path(f"/proc/{proc.proc.pid}/task").iterdir()]
    ours = [task for task, name in tasks if name.startswith("pillowd-mqtt")]
    assert len(ours) == 1, tasks  # (pillowd.seams.threads would name paho's thread so too)

    # Where it sleeps, read off the kernel rather than timed: blocked in epoll_wait
    # with a timeout of KEEPALIVE / 3 (its next ping), not a short poll.
    assert sleeping_for(ours[0]) >= 15_000, (ours[0] / "syscall").read_text()
    metrics = proc.get("/metrics").text
    assert "pillowd_mqtt_connects_total 1.0" in metrics
    assert re.search(r"pillowd_mqtt_publishes_total [1-9]", metrics)


def test_configs_are_sent_again_when_home_assistant_comes_online(mqtt_pillow, home_assistant):
    mqtt_pillow()
    ha = home_assistant()
    wait_for(lambda: set(ha.configs()) == {DEVICE_TOPIC}, message="discovery")
    before = len(ha.on(DEVICE_TOPIC))
    ha.publish(f"{PREFIX}/status", "offline")  # ignored: only online means "restarted"
    ha.publish(f"{PREFIX}/status", "online")
    ha.wait(DEVICE_TOPIC, after=before)
    assert len(ha.on(DEVICE_TOPIC)) == before + 1


# -- commands -------------------------------------------------------------------

def test_light_commands_play_scenes_set_brightness_colour_and_off(mqtt_pillow, home_assistant):
    proc = mqtt_pillow()
    ha = home_assistant()
    command = f"{TOPIC}/light/set"
    states = f"{TOPIC}/light/state"

    ha.publish(command, json.dumps({"state": "ON", "effect": "glow"}))
    wait_for(lambda: proc.state()["scene"] == "glow", message="glow playing")
    ha.wait(states, lambda p: light(p)["effect"] == "glow")
    assert proc.state()["recent"][0]["outcome"] == "applied"
    assert proc.state()["recent"][0]["id"].startswith("mqtt-")

    ha.publish(command, json.dumps({"state": "ON", "brightness": 128}))
    wait_for(lambda: abs(proc.state()["leds"]["brightness"] - 128 / 255) < 1e-6,
             message="brightness 128/255")
    ha.wait(states, lambda p: light(p)["brightness"] == 128)

    ha.publish(command, json.dumps({"state": "ON", "color": {"r": 0, "g": 0, "b": 255}}))
    wait_for(lambda: proc.state()["color"] == "#0000ff", message="blue")
    assert proc.state()["scene"] == "glow"  # a colour alone recolours what plays
    ha.wait(states, lambda p: light(p).get("color") == {"r": 0, "g": 0, "b": 255})

    # OFF is POST /api/off: what plays ends and the LEDs go dark; the dimmer stays.
    ha.publish(command, json.dumps({"state": "OFF"}))
    wait_for(lambda: proc.state()["lights"] == "off", message="off")
    assert proc.state()["scene"] == "off"
    assert abs(proc.state()["leds"]["brightness"] - 128 / 255) < 1e-6
    ha.wait(states, lambda p: light(p)["state"] == "OFF")

    ha.publish(command, json.dumps({"state": "ON"}))  # as it was before OFF
    wait_for(lambda: proc.state()["lights"] == "on", message="on again")
    assert proc.state()["scene"] == "idle"
    assert abs(proc.state()["leds"]["brightness"] - 128 / 255) < 1e-6
    ha.wait(states, lambda p: light(p)["state"] == "ON" and light(p)["brightness"] == 128)


def test_the_quiet_switch_forces_quiet_hours(mqtt_pillow, home_assistant):
    proc = mqtt_pillow()
    ha = home_assistant()
    ha.publish(f"{TOPIC}/quiet/set", "ON")
    wait_for(lambda: proc.state()["quiet"] is True, message="quiet")
    ha.wait(f"{TOPIC}/quiet/state", lambda p: p == b"ON")
    ha.publish(f"{TOPIC}/quiet/set", "OFF")
    wait_for(lambda: proc.state()["quiet"] is False, message="not quiet")
    ha.wait(f"{TOPIC}/quiet/state", lambda p: p == b"OFF", after=1)


def junk(rng: random.Random) -> tuple[str, bytes]:
    """A payload that is not a valid command for the topic it goes to."""
    light_junk = [
        lambda: rng.randbytes(rng.randint(0, 64)),
        lambda: b'{"state": "ON", "effect": ' + rng.randbytes(8),      # cut JSON
        lambda: json.dumps(rng.choice([[], 1, "ON", None, True, 3.5])).encode(),
        lambda: json.dumps({"state": rng.choice(["on", "", None, 1, "TOGGLE"])}).encode(),
        lambda: json.dumps({"state": "ON", "effect": rng.choice(
            ["nope", "", 5, None, "idle\x00", "x" * 500])}).encode(),
        lambda: json.dumps({"state": "ON", "brightness": rng.choice(
            [-1, 256, "full", None, True, 1e309])}).encode(),
        lambda: json.dumps({"state": "ON", "effect": "hug", "color": rng.choice(
            [{"r": 300, "g": 0, "b": 0}, {"r": 1}, "#ff0000", [1, 2, 3],
             {"r": -5, "g": 0, "b": 0}])}).encode(),
        lambda: b'{"state": "ON", "effect": "' + b"a" * 5000 + b'"}',
    ]
    if rng.random() < 0.3:
        return f"{TOPIC}/quiet/set", rng.choice(
            [b"on", b"", b"1", b"true", b"ON ", b'{"state": "ON"}', rng.randbytes(4)])
    return f"{TOPIC}/light/set", rng.choice(light_junk)()


def test_a_thousand_junk_commands_change_nothing(mqtt_pillow, home_assistant):
    proc = mqtt_pillow()
    ha = home_assistant()
    wait_for(lambda: ha.latest(f"{TOPIC}/light/state"), message="the light's state")
    before = proc.state()
    rng = random.Random(15)
    for _ in range(1000):
        ha.publish(*junk(rng))
    # Commands are handled in order: once this one has, so have the 1000 before it.
    # (Quiet dims the LEDs, so it is switched off again before comparing.)
    ha.publish(f"{TOPIC}/quiet/set", "ON")
    wait_for(lambda: proc.state()["quiet"] is True, timeout=30, message="the sentinel")
    ha.publish(f"{TOPIC}/quiet/set", "OFF")
    wait_for(lambda: proc.state()["quiet"] is False, message="quiet off")
    after = proc.state()
    for key in ("scene", "color", "leds", "message", "since"):
        assert after[key] == before[key], key
    assert after["recent"] == before["recent"]  # nothing played, nothing rejected
    assert proc.get("/healthz").status_code == 200
    assert after["mqtt"] == {"online": True, "error": None}
    logged = [line for line in proc.output if "ignored a command" in line]
    assert 1 <= len(logged) <= 3, logged  # rate-limited, not 1000 lines
    assert not any("Traceback" in line for line in proc.output)
    assert "pillowd_mqtt_commands_ignored_total 1000.0" in proc.get("/metrics").text


# -- outages --------------------------------------------------------------------

def test_the_last_will_says_offline_when_the_pillow_is_killed(mqtt_pillow, home_assistant):
    proc = mqtt_pillow()
    ha = home_assistant()
    ha.wait(f"{TOPIC}/availability", lambda p: p == b"online")
    seen = len(ha.on(f"{TOPIC}/availability"))
    proc.kill()
    assert ha.wait(f"{TOPIC}/availability", after=seen) == b"offline"


def test_a_clean_stop_says_offline_too(mqtt_pillow, home_assistant, broker):
    proc = mqtt_pillow()
    ha = home_assistant()
    ha.wait(f"{TOPIC}/availability", lambda p: p == b"online")
    assert proc.stop() == 0
    assert retained(broker.port, f"{TOPIC}/availability") == \
        {f"{TOPIC}/availability": b"offline"}


def test_a_broker_restart_leaves_the_pillow_playing(mqtt_pillow, broker):
    proc = mqtt_pillow()
    broker.stop()
    wait_for(lambda: proc.state()["mqtt"]["online"] is False, message="offline")
    proc.cli("send", "hug", "--from", "Bob")
    wait_for(lambda: (proc.state()["message"] or {}).get("from") == "Bob",
             message="Bob's hug playing while the broker is down")
    error = wait_for(lambda: "refused the connection" in (proc.state()["mqtt"]["error"] or "")
                     and proc.state()["mqtt"]["error"], message="why it is offline")
    assert "unreachable" in error and str(broker.port) in error
    broker.start()
    wait_for(lambda: proc.state()["mqtt"] == {"online": True, "error": None},
             timeout=20, message="back online")  # back-off 1, 2, 4 s...
    ha = HomeAssistantStandIn(broker.port)
    try:  # the new broker kept nothing: everything was published again
        assert set(wait_for(lambda: ha.configs())) == {DEVICE_TOPIC}
        assert ha.wait(f"{TOPIC}/last_sender/state") == b"Bob"
    finally:
        ha.close()
    assert "pillowd_mqtt_connects_total 2.0" in proc.get("/metrics").text


@pytest.fixture
def locked_broker(tmp_path):
    with Mosquitto(tmp_path / "locked", users={"pillow": "s3cret-pw"}) as running:
        yield running


def test_a_refused_login_is_shown_and_the_pillow_plays_on(pillow, locked_broker):
    proc = pillow(mqtt_table(locked_broker.port),
                  env={"PILLOWD_MQTT_USERNAME": "pillow",
                       "PILLOWD_MQTT_PASSWORD": "wrong-pw"})
    error = wait_for(lambda: "refused the login" in (proc.state()["mqtt"]["error"] or "")
                     and proc.state()["mqtt"]["error"], message="the refusal")
    assert error == "the broker refused the login: not authorised (wrong user name or " \
        "password?)"
    assert proc.state()["mqtt"]["online"] is False
    proc.cli("send", "glow", "--from", "Carol")
    wait_for(lambda: proc.state()["scene"] == "glow", message="the queue still plays")
    assert "wrong-pw" not in "".join(proc.output)  # secrets are never logged


def test_the_password_comes_from_the_systemd_credential(pillow, locked_broker, tmp_path):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "mqtt-password").write_text("s3cret-pw\n")
    proc = pillow(mqtt_table(locked_broker.port),
                  env={"PILLOWD_MQTT_USERNAME": "pillow",
                       "CREDENTIALS_DIRECTORY": str(credentials)})
    wait_for(lambda: proc.state()["mqtt"] == {"online": True, "error": None},
             message="logged in")
    assert "s3cret-pw" not in "".join(proc.output)


# -- removal ----------------------------------------------------------------------

def test_removing_the_mqtt_table_removes_the_device(mqtt_pillow, home_assistant, broker):
    proc = mqtt_pillow()
    ha = home_assistant()
    configs = wait_for(lambda: ha.configs(), message="discovery")
    assert set(configs) == {DEVICE_TOPIC}
    proc.stop()
    proc.config.write_text(proc.config.read_text().split("\n[mqtt]")[0])
    proc.start()
    for topic in configs:  # an empty retained config is how Home Assistant is told
        ha.wait(topic, lambda p: p == b"")
    assert retained(broker.port, f"{PREFIX}/#") == {}
    assert retained(broker.port, "pillowd/#") == {}
    marker = Path(proc.config.parent / "state" / "mqtt-entities.json")
    wait_for(lambda: not marker.exists(), message="the marker gone")
    assert "mqtt" not in proc.state()


# -- the class itself, in this process ---------------------------------------------

class Controls:
    """What the daemon's Pillow offers HomeAssistant; records calls."""

    def __init__(self):
        self.calls = []

    def play(self, data, source):
        self.calls.append(("play", data, source))

    def set_brightness(self, level):
        self.calls.append(("set_brightness", level))

    def off(self):
        self.calls.append(("off",))

    def set_quiet(self, quiet):
        self.calls.append(("set_quiet", quiet))


def make(port, snapshot, **kw) -> HomeAssistant:
    args = dict(host="127.0.0.1", port=port, username=None, password=None, tls=False,
                ca_file=None, discovery_prefix=PREFIX, topic="", pillow_name="Den pillow",
                version="0.1.0", page_url="http://den.local:8080/", scenes=SCENES,
                controls=Controls(), snapshot=snapshot, reconnect_seconds=(1, 2))
    return HomeAssistant(**{**args, **kw})


SNAPSHOT = {"scene": "idle", "color": "#000010", "leds": {"brightness": 1.0},
            "quiet": False, "message": None, "recent": []}


def test_hug_events_and_states_are_published_only_when_they_change(broker, home_assistant):
    ha = home_assistant()
    snapshot = dict(SNAPSHOT)
    pillow = make(broker.port, lambda: snapshot)
    pillow.start()
    try:
        wait_for(lambda: pillow.status["online"], message="online")
        topic = "pillowd/Den_pillow"   # the name, made a topic level
        ha.wait(f"{topic}/light/state")
        assert "pillowd-mqtt" in {t.name for t in threading.enumerate()}

        pillow.hug("received", "Alice", "thinking of you")
        event = json.loads(ha.wait(f"{topic}/hug"))
        assert event == {"event_type": "received", "from": "Alice", "text": "thinking of you"}
        with pytest.raises(ValueError):
            pillow.hug("squeezed", "Alice", None)

        published = pillow.publishes
        for _ in range(5):
            pillow.state_changed()  # nothing changed: nothing to publish
        snapshot["quiet"] = True
        pillow.state_changed()
        ha.wait(f"{topic}/quiet/state", lambda p: p == b"ON")
        wait_for(lambda: pillow.publishes == published + 1, message="one publish")
        assert len(ha.on(f"{topic}/light/state")) == 1

        snapshot["recent"] = [{"outcome": "applied", "from": "Dan"}]
        pillow.state_changed()
        assert ha.wait(f"{topic}/last_sender/state") == b"Dan"
    finally:
        pillow.close()
        pillow.close()  # safe twice
    assert pillow.status == {"online": False, "error": "stopped"}


def test_status_says_why_in_words(tmp_path):
    nothing = free_port()  # nobody listens here
    pillow = make(nothing, lambda: SNAPSHOT)
    pillow.start()
    try:
        error = wait_for(lambda: pillow.status["error"] != "not connected yet"
                         and pillow.status["error"], message="an error")
        assert error == (f"broker unreachable: 127.0.0.1:{nothing} refused the "
                         f"connection (is it running?)")
    finally:
        pillow.close()
    pillow = make(1883, lambda: SNAPSHOT, host="no-such-host.invalid")
    pillow.start()
    try:
        error = wait_for(lambda: pillow.status["error"] != "not connected yet"
                         and pillow.status["error"], message="an error")
        assert "cannot find the broker 'no-such-host.invalid'" in error
    finally:
        pillow.close()


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def tls_broker(tmp_path):
    """A TLS-only broker whose certificate is signed by a CA of the test's own."""
    d = tmp_path / "tls"
    d.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=test CA", "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "server.key", "-out", "server.csr", cwd=d)
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-out", "server.crt",
            cwd=d)
    with Mosquitto(tmp_path / "tls-broker", tls=(d / "server.crt", d / "server.key")) as b:
        yield b, d / "ca.crt"


def test_tls_trusts_the_ca_file_and_explains_a_certificate_it_cannot(tls_broker, broker):
    running, ca = tls_broker
    pillow = make(running.port, lambda: SNAPSHOT, tls=True, ca_file=str(ca))
    pillow.start()
    try:
        wait_for(lambda: pillow.status["online"], message="online over TLS")
    finally:
        pillow.close()
    # The system's CA store does not know the test's CA.
    pillow = make(running.port, lambda: SNAPSHOT, tls=True)
    pillow.start()
    try:
        error = wait_for(lambda: pillow.status["error"] != "not connected yet"
                         and pillow.status["error"], message="a TLS error")
        assert error.startswith(f"TLS error with 127.0.0.1:{running.port}: ")
        assert "certificate" in error
    finally:
        pillow.close()
    # TLS to a broker that does not speak it.
    pillow = make(broker.port, lambda: SNAPSHOT, tls=True, ca_file=str(ca))
    pillow.start()
    try:
        error = wait_for(lambda: pillow.status["error"] != "not connected yet"
                         and pillow.status["error"], message="a TLS error")
        assert error == (f"TLS error with 127.0.0.1:{broker.port}: the broker closed the "
                         f"connection during the TLS handshake (is TLS on for this port?)")
    finally:
        pillow.close()


# -- login and config ------------------------------------------------------------------

def test_login_comes_from_the_environment_or_the_credential(tmp_path):
    env = {"U": "pillow", "P": "pw"}
    assert login_from("U", "P", env) == ("pillow", "pw")
    assert login_from("U", "P", {}) == (None, None)
    assert login_from("U", "P", {"U": "pillow"}) == ("pillow", None)
    (tmp_path / "mqtt-password").write_text("from-credential\n")
    creds = {"U": "pillow", "CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert login_from("U", "P", creds) == ("pillow", "from-credential")
    assert login_from("U", "P", {**creds, "P": "env-wins"}) == ("pillow", "env-wins")
    (tmp_path / "mqtt-password").unlink()
    (tmp_path / "mqtt-password").mkdir()  # unreadable as a file
    with pytest.raises(MqttError, match="cannot read the systemd credential mqtt-password"):
        login_from("U", "P", creds)


def test_check_config_validates_the_mqtt_table(tmp_path):
    settings = parse('[mqtt]\nhost = "broker.lan"\n')
    assert settings.mqtt.port == 1883 and settings.mqtt.discovery_prefix == "homeassistant"
    assert parse("").mqtt is None
    with pytest.raises(ConfigError) as caught:
        parse('[mqtt]\n'
              'host = ""\n'                  # 2
              'port = 70000\n'               # 3
              'tls = "yes"\n'                # 4
              'topic = "pillows/#"\n'        # 5
              'discovery_prefix = "/ha"\n'   # 6
              'ca_file = "ca.pem"\n'         # 7
              'user = "x"\n', "test.toml")   # 8
    found = {(p.key, p.line) for p in caught.value.problems}
    assert found == {("mqtt.host", 2), ("mqtt.port", 3), ("mqtt.tls", 4), ("mqtt.topic", 5),
                     ("mqtt.discovery_prefix", 6), ("mqtt.ca_file", 7), ("mqtt.user", 8)}
    path = tmp_path / "bad.toml"
    path.write_text('[mqtt]\nport = "1883"\n')
    result = run_cli("check-config", "--config", str(path), check=False)
    assert result.returncode == 1
    assert "bad.toml:2: mqtt.port: must be a whole number" in result.stderr


def test_the_shipped_config_documents_every_mqtt_key():
    from dataclasses import fields

    from conftest import ROOT
    from pillowd.config import MqttSettings
    text = (ROOT / "config.toml").read_text()
    block = text.split("# [mqtt]\n")[1].split("\n\n")[0]
    # Uncommented, the documented block is a valid config with the defaults.
    table = "\n".join(line[2:] for line in block.splitlines() if not line.startswith("# #"))
    settings = parse("[mqtt]\n" + table)
    assert settings.mqtt == MqttSettings()
    for f in fields(MqttSettings):
        assert f"\n# {f.name} = " in "\n" + block, f"mqtt.{f.name} is not in config.toml"


def test_a_removal_that_cannot_happen_now_waits_for_the_next_start(locked_broker, tmp_path,
                                                                    caplog):
    from pillowd.homeassistant import remove_entities
    marker = tmp_path / "mqtt-entities.json"
    topic = f"{PREFIX}/switch/x/quiet/config"
    publisher = HomeAssistantStandIn(locked_broker.port, topics=("unused",),
                                     username="pillow", password="s3cret-pw")
    publisher.publish(topic, "{}", retain=True).wait_for_publish(5)
    publisher.close()

    marker.write_text(json.dumps({"host": "127.0.0.1", "port": free_port(),
                                  "topics": [topic]}))
    assert remove_entities(marker, username=None, password=None) is False
    assert marker.exists() and "refused the connection" in caplog.text

    marker.write_text(json.dumps({"host": "127.0.0.1", "port": locked_broker.port,
                                  "topics": [topic]}))
    assert remove_entities(marker, username="pillow", password="wrong") is False
    assert marker.exists() and "refused the login" in caplog.text
    assert "wrong" not in caplog.text.replace("wrong user name", "")  # no secret

    assert remove_entities(marker, username="pillow", password="s3cret-pw") is True
    assert not marker.exists()
    login = {"username": "pillow", "password": "s3cret-pw"}
    standin = HomeAssistantStandIn(locked_broker.port, topics=(f"{PREFIX}/#",
                                                               "test/sentinel"), **login)
    try:  # nothing retained is left: the sentinel comes back alone
        standin.publish("test/sentinel", "x").wait_for_publish(5)
        standin.wait("test/sentinel")
        assert standin.on(topic) == []
    finally:
        standin.close()


def test_a_renamed_pillow_removes_the_entities_of_its_old_name(broker, home_assistant,
                                                               tmp_path):
    ha = home_assistant()
    marker = tmp_path / "mqtt-entities.json"
    old = make(broker.port, lambda: SNAPSHOT, pillow_name="Old name", marker=marker)
    old.start()
    old_configs = wait_for(lambda: set(ha.configs()), message="the old name's config")
    assert old_configs == {f"{PREFIX}/device/Old_name/config"}
    old.close()
    new = make(broker.port, lambda: SNAPSHOT, pillow_name="New name", marker=marker)
    new.start()
    try:
        for topic in old_configs:
            ha.wait(topic, lambda p: p == b"")
        assert {t.split("/")[2] for t in ha.configs()} == {"New_name"}
        assert set(retained(broker.port, f"{PREFIX}/#")) == set(ha.configs())
        assert json.loads(marker.read_text())["topics"][:1] == list(ha.configs())
    finally:
        new.close()


def test_home_assistant_links_to_the_page_by_a_name_it_can_reach():
    import socket

    from pillowd.page.addresses import page_url_for_others
    assert page_url_for_others("192.168.1.20", "http://192.168.1.20:8080/") == \
        "http://192.168.1.20:8080/"
    name = socket.gethostname()
    shown = name if "." in name else f"{name}.local"  # the Pi's mDNS name
    for wildcard in ("0.0.0.0", "::", ""):
        assert page_url_for_others(wildcard, "http://127.0.0.1:8080/") == \
            f"http://{shown}:8080/"


def test_a_pillow_serving_every_address_links_by_its_name(make_config, pillow_env, broker,
                                                           home_assistant):
    import socket

    from conftest import BASE_CONFIG, PillowProcess
    base = BASE_CONFIG.replace('host = "127.0.0.1"', 'host = "0.0.0.0"')
    proc = PillowProcess(make_config(mqtt_table(broker.port), base=base), pillow_env)
    proc.start()
    try:
        ha = home_assistant()
        device = json.loads(ha.wait(DEVICE_TOPIC))["dev"]
        name = socket.gethostname()
        port = proc.url.rstrip("/").rsplit(":", 1)[1]
        assert device["configuration_url"] == \
            f"http://{name if '.' in name else name + '.local'}:{port}/"
    finally:
        proc.stop()


def test_each_step_of_a_hug_fires_home_assistants_hug_event(mqtt_pillow, home_assistant,
                                                             queues, tmp_path):
    from conftest import family_credentials
    ha = home_assistant()
    family, credentials = family_credentials(tmp_path / "credentials")
    p = mqtt_pillow(env={"PILLOWD_CONTROL_TOKEN": "t0ken-t0ken-t0ken", **credentials})
    topic = f"{TOPIC}/hug"

    def kind(name):
        return lambda payload: json.loads(payload)["event_type"] == name
    pressed = p.post("/api/hug", headers={"Authorization": "Bearer t0ken-t0ken-t0ken"})
    assert pressed.status_code == 202
    assert json.loads(ha.wait(topic, kind("pressed")))["from"] == "test-pillow"
    # A partner's hug event arrives on the queue and plays: "received", with its words.
    queues(p.config).main.put(json.dumps(family.signed({
        "scene": "hug", "from": "alice", "text": "thinking of you", "id": "alice-1",
        "event": "hug", "pillow": "alice", "reply_to": None})))
    received = json.loads(ha.wait(topic, kind("received")))
    assert (received["from"], received["text"]) == ("alice", "thinking of you")


def hug_events(ha: HomeAssistantStandIn) -> list[tuple[str, str | None, str | None]]:
    return [(e["event_type"], e["from"], e["text"])
            for e in map(json.loads, ha.on(f"{TOPIC}/hug"))]


def test_every_message_from_someone_fires_received_and_no_local_play_does(
        mqtt_pillow, home_assistant, queues):
    ha = home_assistant()
    p = mqtt_pillow(env={"PILLOWD_CONTROL_TOKEN": "t0ken-t0ken-t0ken"})
    token = {"Authorization": "Bearer t0ken-t0ken-t0ken"}

    def played(n: int) -> None:  # n more have played since the press
        wait_for(lambda: p.state()["queue"]["applied"] >= pressed + n,
                 message=f"{n} applied")

    assert p.post("/api/hug", headers=token).status_code == 202     # a press: no sender
    ha.wait(f"{TOPIC}/hug")
    pressed = p.state()["queue"]["applied"]
    assert p.post("/api/scene", json={"scene": "glow"}, headers=token).status_code == 200
    played(1)
    ha.publish(f"{TOPIC}/light/set", json.dumps({"state": "ON", "effect": "hug"}))
    played(2)
    p.cli("send", "hug", "--from", "Alice", "--text", "hi")          # not a partner
    played(3)
    queues(p.config).main.put(json.dumps({                           # a partner's hug
        "scene": "hug", "from": "alice", "text": "thinking of you", "id": "alice-1",
        "event": "hug", "pillow": "alice", "reply_to": None}))
    played(4)
    p.cli("send", "glow", "--from", "Sentinel")
    # Published in the order they happened: once the sentinel's is there, every
    # event before it is too, and a local play that fired one would show.
    ha.wait(f"{TOPIC}/hug", lambda e: json.loads(e)["from"] == "Sentinel")
    assert hug_events(ha) == [("pressed", NODE, None),
                              ("received", "Alice", "hi"),
                              ("received", "alice", "thinking of you"),  # once
                              ("received", "Sentinel", None)]


def test_home_assistants_brightness_is_a_share_of_the_ceiling_and_round_trips(
        make_config, pillow_env, broker, home_assistant):
    from conftest import BASE_CONFIG, PillowProcess
    base = BASE_CONFIG.replace("brightness = 1.0", "brightness = 0.6")  # as shipped
    proc = PillowProcess(make_config(mqtt_table(broker.port), base=base), pillow_env)
    proc.start()
    try:
        ha = home_assistant()
        states, command = f"{TOPIC}/light/state", f"{TOPIC}/light/set"
        assert light(ha.wait(states))["brightness"] == 255  # at the ceiling: full
        for asked in (128, 1, 254, 255):
            seen = len(ha.on(states))
            ha.publish(command, json.dumps({"state": "ON", "brightness": asked}))
            shown = light(ha.wait(states, after=seen))
            assert shown["brightness"] == asked
            assert proc.state()["leds"]["brightness"] == pytest.approx(0.6 * asked / 255)
        # Quiet hours dim the LEDs further, and the switch says so; the light keeps
        # what was asked for, as a dimmer would.
        ha.publish(f"{TOPIC}/quiet/set", "ON")
        wait_for(lambda: proc.state()["quiet"], message="quiet")
        assert proc.state()["leds"]["brightness"] == pytest.approx(0.1)
        ha.wait(f"{TOPIC}/quiet/state", lambda p: p == b"ON")
        assert light(ha.latest(states))["brightness"] == 255
    finally:
        proc.stop()


def test_an_entity_is_one_class_the_device_publishes_and_commands(broker, home_assistant):
    """The shape: a new entity says its config, its state and its command in one
    class; the device and the connection need nothing more."""
    from pillowd.homeassistant import Connection, Device
    from pillowd.homeassistant.entity import Entity
    from pillowd.homeassistant.switch import QuietSwitch
    from pillowd.messages import Rejection

    class Scene(Entity):
        component, key, name, icon, commands = "select", "scene", "Scene", "mdi:play", True

        def config(self):
            return {**super().config(), "options": self.scenes}

        def states(self, snapshot):
            return {self.state_topic: snapshot["scene"]}

        def command(self, payload, snapshot):
            if payload.decode("utf-8", "replace") not in self.scenes:
                raise Rejection("no such scene")
            self.controls.play({"scene": payload.decode()}, "mqtt")

    controls, topic = Controls(), "pillowd/den"
    snapshot = dict(SNAPSHOT)
    entities = [cls(topic, controls=controls, scenes=SCENES) for cls in (Scene, QuietSwitch)]
    device = Device(pillow_name="den", version="0.1.0", page_url="",
                    discovery_prefix=PREFIX, topic=topic, entities=entities,
                    snapshot=lambda: snapshot, discovery="entities")
    connection = Connection(
        host="127.0.0.1", port=broker.port, username=None, password=None, tls=False,
        ca_file=None, client_id="pillowd-den", will=(device.availability_topic, "offline"),
        subscriptions=device.subscriptions, on_connect=device.connected,
        on_message=device.message,
        on_wake=lambda: device.publish_pending(connection.publish))
    ha = home_assistant()
    connection.start()
    try:
        config = json.loads(ha.wait(f"{PREFIX}/select/den/scene/config"))
        assert config["unique_id"] == "den_scene" and config["options"] == SCENES
        assert config["command_topic"] == f"{topic}/scene/set"
        assert config["device"]["identifiers"] == ["den"]
        assert ha.wait(f"{topic}/scene/state") == b"idle"
        ha.publish(f"{topic}/scene/set", "nope")
        ha.publish(f"{topic}/scene/set", "glow")
        wait_for(lambda: controls.calls, message="the command")
        assert controls.calls == [("play", {"scene": "glow"}, "mqtt")]
        assert (device.commands, device.ignored) == (1, 1)
        snapshot["scene"] = "glow"
        connection.poke()
        ha.wait(f"{topic}/scene/state", lambda p: p == b"glow")
    finally:
        connection.close()


def test_the_demo_fires_no_received(pillow, broker, home_assistant):
    ha = home_assistant()
    p = pillow(mqtt_table(broker.port), args=["--demo"])
    # The demo's messages go through the local queue with a sender, as a friend's
    # would; they are still not someone's message.
    wait_for(lambda: p.state()["queue"]["applied"] >= 1, timeout=20, message="a demo play")
    assert p.state()["recent"][0]["from"] in ("Alice", "Bob", "Grandma", "Sam")
    p.cli("send", "glow", "--from", "Sentinel")
    ha.wait(f"{TOPIC}/hug", lambda e: json.loads(e)["from"] == "Sentinel")
    assert hug_events(ha) == [("received", "Sentinel", None)]


# epoll_wait(2) and epoll_pwait(2) by machine: (number, which argument is the timeout).
_EPOLL = {"x86_64": {232: 4, 281: 4}, "aarch64": {22: 4}}


def sleeping_for(task: Path) -> int:
    """The milliseconds *task* (/proc/PID/task/TID) asked to sleep in epoll when it
    is next seen blocked there (the kernel's own record of the call, in
    /proc/…/syscall); waits, as the thread may be awake for a moment."""
    import platform
    calls = _EPOLL.get(platform.machine())
    if calls is None:
        pytest.skip(f"epoll's system call numbers for {platform.machine()} are not listed")

    def blocked():
        fields = (task / "syscall").read_text().split()
        if fields and fields[0].isdigit() and int(fields[0]) in calls:
            return int(fields[1 + calls[int(fields[0])] - 1], 16) or None
        return None
    return wait_for(blocked, message="the MQTT thread asleep in epoll")
