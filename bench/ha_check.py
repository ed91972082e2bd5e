"""The pillow in a real Home Assistant core: discovery, states, commands and hug events.

Run by hand (not part of `make test`): it needs a Home Assistant core installed in
a virtual environment of its own, outside the repository, e.g. (Python 3.11):

    python3.11 -m venv /var/tmp/ha-check/ha2024
    /var/tmp/ha-check/ha2024/bin/pip install 'homeassistant==2024.3.*' 'josepy<2'
    .venv/bin/python bench/ha_check.py --hass /var/tmp/ha-check/ha2024/bin/hass

(Home Assistant 2025.x needs Python 3.13: `homeassistant==2025.4.*` in a venv of
python3.13.) On its first start Home Assistant installs the requirements of the
integrations it loads (the frontend, the MQTT integration's paho-mqtt, ...) from
PyPI into its venv, as it does anywhere: the first run takes minutes.

Each Home Assistant is best installed with its own pins, as its container is:
`pip install -c package_constraints.txt homeassistant==X` (the file is inside the
homeassistant wheel, `homeassistant/package_constraints.txt`).

It starts a mosquitto and a Home Assistant configured with http, api and config
and a login made by `hass --script auth`; logs in as a browser does, adds the MQTT
integration by its config flow (the REST API, as the UI does), starts a real
pillowd with [mqtt] (`--discovery device` or `entities`), two partners (bob and
carol: local queues, a family key) and `[leds] brightness = 0.6` (as shipped), and
checks through Home Assistant's REST and WebSocket APIs that every entity exists
and acts: the light, the quiet switch, the hug event, the "Hug" and "Hug bob"
buttons (a signed hug event in bob's queue only, the time from the service call
measured), the "Message" notify entity (a hug with that text), the device
triggers offered by `device_automation/trigger/list`, and the diagnostic entities.
With `--switch-from entities`, the pillow first runs in the other form, then in
this one: Home Assistant must end with each entity once. Prints one line per
check and what Home Assistant logged about MQTT and the pillow; exits 1 if a check
failed. Figures and versions: docs/home-assistant.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import re
import time
from pathlib import Path

import requests

from pillowd.family import FamilyKey
from pillowd.queues.local import LocalStore
from pillowd.testing import PillowProcess
from pillowd.testing.config import pillow_config
from pillowd.testing.mosquitto import Mosquitto
from pillowd.testing.services import free_port
from pillowd.testing.wait import wait_for

PILLOW = "ha-check-pillow"
PASSWORD = "check-password-1"  # a throwaway Home Assistant in a temporary directory


def config_text(name, state, port, discovery) -> str:
    return pillow_config(state,
                         name=name,
                         queue={"name": f"pillow-{name}",
                                "outbound_name": ["pillow-bob", "pillow-carol"],
                                "poll_min_seconds": 0.05,
                                "poll_max_seconds": 0.5},
                         leds={"count": 12, "brightness": 0.6},
                         mqtt={"host": "127.0.0.1", "port": port, "discovery": discovery},
                         scenes={"idle": {"effect": "solid", "color": "#000010"},
                                 "hug": {"effect": "solid",
                                         "color": "#ff0000",
                                         "duration": 0},
                                 "glow": {"effect": "breathe",
                                          "color": "#00ff00",
                                          "duration": 0}})


HA_CONFIG = """
homeassistant:
  name: ha-check
  latitude: 52.37
  longitude: 4.89
  elevation: 0
  unit_system: metric
  time_zone: UTC
  country: NL
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
config:
automation: !include automations.yaml
logger:
  default: warning
"""


def wait(predicate, timeout: float, what: str):
    return wait_for(predicate, timeout, 0.2, what, error=TimeoutError,
                    ignore=(requests.RequestException, ValueError, KeyError))


class HomeAssistantCore:
    """A Home Assistant core in a process of its own, driven through its REST API."""

    def __init__(self, hass: str, directory: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        directory.mkdir(parents=True)
        (directory / "configuration.yaml").write_text(HA_CONFIG.format(port=self.port))
        self.automations = directory / "automations.yaml"
        self.automations.write_text("[]\n")
        # A login of Home Assistant's own provider; its first login makes an admin
        # user (the onboarding integration would pull in the recorder and more).
        subprocess.run([hass, "--script", "auth", "-c", str(directory), "add",
                        "check", PASSWORD], check=True, capture_output=True)
        self.log = directory / "home-assistant.log"
        self.proc = subprocess.Popen(
            [hass, "-c", str(directory), "--log-file", str(self.log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.headers: dict[str, str] = {}

    def version(self) -> str:
        return self.get("/api/config").json()["version"]

    def get(self, path: str):
        return requests.get(self.url + path, headers=self.headers, timeout=10)

    def post(self, path: str, body: dict):
        return requests.post(self.url + path, json=body, headers=self.headers, timeout=30)

    def log_in(self) -> None:
        """A token for the REST API, by the login flow a browser goes through."""
        wait(lambda: self.get("/api/").status_code == 401, 900,
             "Home Assistant's HTTP server")
        client = self.url + "/"
        flow = self.post("/auth/login_flow", {
            "client_id": client, "handler": ["homeassistant", None],
            "redirect_uri": client + "?auth_callback=1"})
        flow.raise_for_status()
        done = self.post(f"/auth/login_flow/{flow.json()['flow_id']}", {
            "client_id": client, "username": "check", "password": PASSWORD})
        done.raise_for_status()
        token = requests.post(self.url + "/auth/token", timeout=10, data={
            "grant_type": "authorization_code", "code": done.json()["result"],
            "client_id": client})
        token.raise_for_status()
        self.headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

    def add_mqtt(self, port: int) -> dict:
        """The MQTT integration on the broker, by its config flow (as the UI does)."""
        flow = self.post("/api/config/config_entries/flow",
                         {"handler": "mqtt", "show_advanced_options": False})
        flow.raise_for_status()
        step = flow.json()
        done = self.post(f"/api/config/config_entries/flow/{step['flow_id']}",
                         {"broker": "127.0.0.1", "port": port})
        done.raise_for_status()
        return done.json()

    def states(self) -> dict[str, dict]:
        return {s["entity_id"]: s for s in self.get("/api/states").json()}

    def call(self, domain: str, service: str, **data) -> None:
        self.post(f"/api/services/{domain}/{service}", data).raise_for_status()

    def socket(self) -> "Socket":
        import simple_websocket
        token = self.headers["Authorization"].split(" ", 1)[1]
        for attempt in range(5):  # the login is sometimes dropped here (code 1000, 1005)
            try:
                return Socket(self.url, token)
            except simple_websocket.ConnectionClosed as err:
                print(f"     (WebSocket closed during the login: {err}; again)")
                time.sleep(1)
        return Socket(self.url, token)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Socket:
    """Home Assistant's WebSocket API (the registries, device automations)."""

    def __init__(self, url: str, token: str):
        import simple_websocket
        self.ws = simple_websocket.Client.connect(
            url.replace("http", "ws", 1) + "/api/websocket")
        json.loads(self.ws.receive(30))  # auth_required
        self.ws.send(json.dumps({"type": "auth", "access_token": token}))
        if json.loads(self.ws.receive(30))["type"] != "auth_ok":
            raise RuntimeError("Home Assistant refused the token")
        self.id = 0

    def call(self, kind: str, **fields):
        self.id += 1
        self.ws.send(json.dumps({"id": self.id, "type": kind, **fields}))
        while True:
            answer = json.loads(self.ws.receive(30))
            if answer.get("id") == self.id:
                if not answer.get("success"):
                    raise RuntimeError(f"{kind}: {answer.get('error')}")
                return answer["result"]

    def close(self) -> None:
        self.ws.close()


class Checks:
    def __init__(self):
        self.failed = 0

    def check(self, what: str, predicate, timeout: float = 20,
              interval: float = 0.2) -> bool:
        try:
            wait(predicate, timeout, what, interval)
        except TimeoutError as err:
            self.failed += 1
            print(f"FAIL {what}: {err}", flush=True)
            return False
        print(f"ok   {what}", flush=True)
        return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hass", required=True, help="the `hass` of a Home Assistant venv")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--discovery", choices=("device", "entities"), default="device",
                        help='[mqtt] discovery ("entities" for Home Assistant < 2024.12)')
    parser.add_argument("--switch-from", choices=("device", "entities"),
                        help="run the pillow in this discovery form first, then switch")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ha-check-"))
    broker = Mosquitto(work / "broker").start()
    ha = HomeAssistantCore(args.hass, work / "homeassistant")
    pillow = None
    switched_at = 0   # where the log stood when the pillow switched discovery forms
    checks = Checks()
    try:
        ha.log_in()
        version = ha.version()
        entry = ha.add_mqtt(broker.port)
        python = subprocess.run([str(Path(args.hass).with_name("python")), "--version"],
                                capture_output=True, text=True).stdout.strip()
        print(f"Home Assistant {version} ({python}); MQTT config flow: "
              f"{entry.get('type')}", flush=True)
        config = work / "pillow.toml"
        # A family key, as `pillowd pair` leaves it beside the tokens: hugs are signed.
        family = FamilyKey.generate()
        credentials = work / "credentials"
        credentials.mkdir()
        (credentials / "azure-queue-sas").write_text(f'family_key = "{family.text()}"\n')
        env = {"CREDENTIALS_DIRECTORY": str(credentials)}

        def start(discovery: str) -> PillowProcess:
            config.write_text(config_text(name=PILLOW, state=work / "state",
                                            port=broker.port, discovery=discovery))
            started = PillowProcess(config, env).start()
            wait(lambda: (started.state().get("mqtt") or {}).get("online"), 20,
                 "pillow online")
            return started

        node = PILLOW.replace("-", "_")
        lamp, hug = f"light.{node}", f"event.{node}_hug"
        sender, quiet = f"sensor.{node}_last_message_from", f"switch.{node}_quiet_hours"
        if args.switch_from and args.switch_from != args.discovery:
            pillow = start(args.switch_from)
            checks.check(f"{args.switch_from} discovery first: {lamp} exists",
                         lambda: lamp in ha.states(), 60)
            pillow.stop()
            pillow = None
            switched_at = ha.log.stat().st_size if ha.log.exists() else 0
        pillow = start(args.discovery)
        for entity in (lamp, hug, sender, quiet):
            checks.check(f"{entity} exists", lambda e=entity: e in ha.states(), 60)
        states = ha.states()
        print("     entities:", ", ".join(sorted(e for e in states if node in e)))
        if args.switch_from:
            doubled = [e for e in states if node in e and re.search(r"_\d+$", e)]
            checks.check("after the switch, each entity once (no `_2` twins)",
                         lambda: not [e for e in ha.states()
                                      if node in e and re.search(r"_\d+$", e)])
            if doubled:
                print("     twins:", doubled)

        def light():
            return ha.states()[lamp]
        checks.check("light on at 255 (the ceiling) after start",
                     lambda: light()["state"] == "on"
                     and light()["attributes"]["brightness"] == 255)
        ha.call("light", "turn_on", entity_id=lamp, effect="glow", brightness=128)
        checks.check("light.turn_on effect glow, brightness 128 plays glow on the pillow",
                     lambda: pillow.state()["scene"] == "glow"
                     and abs(pillow.state()["leds"]["brightness"] - 0.6 * 128 / 255) < 1e-9)
        checks.check("... and Home Assistant shows effect glow, brightness 128",
                     lambda: light()["attributes"]["effect"] == "glow"
                     and light()["attributes"]["brightness"] == 128)
        ha.call("light", "turn_on", entity_id=lamp, brightness=255)
        checks.check("brightness 255 sets the ceiling (0.6) and shows 255",
                     lambda: pillow.state()["leds"]["brightness"] == 0.6
                     and light()["attributes"]["brightness"] == 255)
        ha.call("light", "turn_on", entity_id=lamp, rgb_color=[0, 0, 255])
        checks.check("rgb_color [0, 0, 255] recolours the pillow and shows back",
                     lambda: pillow.state()["color"] == "#0000ff"
                     and tuple(light()["attributes"]["rgb_color"]) == (0, 0, 255)
                     and light()["attributes"]["color_mode"] == "rgb")
        ha.call("light", "turn_off", entity_id=lamp)
        checks.check("light.turn_off darkens the pillow and shows off",
                     lambda: pillow.state()["leds"]["brightness"] == 0
                     and light()["state"] == "off")
        ha.call("switch", "turn_on", entity_id=quiet)
        checks.check("switch.turn_on quiet hours makes the pillow quiet",
                     lambda: pillow.state()["quiet"] is True
                     and ha.states()[quiet]["state"] == "on")
        pillow.cli("send", "hug", "--from", "Alice", "--text", "thinking of you")
        checks.check("`pillowd send hug --from Alice` fires the hug event `received`",
                     lambda: ha.states()[hug]["attributes"].get("event_type") == "received"
                     and ha.states()[hug]["attributes"].get("from") == "Alice"
                     and ha.states()[hug]["attributes"].get("text") == "thinking of you")
        checks.check("the last-sender sensor says Alice",
                     lambda: ha.states()[sender]["state"] == "Alice")
        print("     hug event types:", ha.states()[hug]["attributes"].get("event_types"))
        check_hugs(ha, pillow, checks, node, work / "state", family, version)
        pillow.stop()
        checks.check("a stopped pillow is unavailable",
                     lambda: ha.states()[lamp]["state"] == "unavailable")
        pillow = None
    finally:
        if pillow is not None:
            pillow.stop()
        ha.stop()
        broker.stop()
        text = ha.log.read_bytes()[switched_at:].decode(errors="replace") \
            if ha.log.exists() else ""
        if switched_at:
            print(f"(Home Assistant's log from the switch to {args.discovery} discovery on)")
        logged = [line for line in text.splitlines()
                  if ("mqtt" in line.lower() or node_of(line)) and
                  (" WARNING " in line or " ERROR " in line)]
        mqtt_lines = [line for line in logged if "homeassistant.components.mqtt" in line]
        print(f"Home Assistant logged {len(logged)} MQTT warning(s)/error(s), "
              f"{len(mqtt_lines)} of them from homeassistant.components.mqtt:")
        for line in logged:
            print("    ", line[:300])
        if args.keep:
            print("work directory:", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("all checks passed" if not checks.failed else f"{checks.failed} check(s) FAILED")
    return 1 if checks.failed else 0


def check_hugs(ha: HomeAssistantCore, pillow: PillowProcess, checks: Checks, node: str,
               state: Path, family: FamilyKey, version: str) -> None:
    """The buttons, the message, the device triggers and the diagnostics."""
    store = LocalStore(state / "queue.sqlite3")
    bob, carol = store.queue("pillow-bob"), store.queue("pillow-carol")

    def events(queue) -> list[dict]:
        return [json.loads(m.body) for m in queue.peek()]
    try:
        everyone, to_bob = f"button.{node}_hug", f"button.{node}_hug_bob"
        message = f"notify.{node}_message"
        diagnostics = {f"binary_sensor.{node}_queue": "on",
                       f"sensor.{node}_hugs_waiting_to_leave": "0",
                       f"sensor.{node}_led_current": None,
                       f"sensor.{node}_last_hug_delivered_to_bob": None,
                       f"sensor.{node}_last_hug_delivered_to_carol": None}
        for entity in (everyone, to_bob, f"button.{node}_hug_carol", *diagnostics):
            checks.check(f"{entity} exists", lambda e=entity: e in ha.states(), 30)

        started = time.perf_counter()
        ha.call("button", "press", entity_id=to_bob)
        if checks.check("button.press on \"Hug bob\" puts a hug event in bob's queue",
                        lambda: events(bob), 20, interval=0.002):
            took = time.perf_counter() - started
            (event,) = events(bob)
            print(f"     button.press -> hug event in bob's queue: {took * 1000:.0f} ms "
                  f"(REST call, MQTT, pillowd, SQLite queue)")
            checks.check("... signed with the family key, from the pillow, with reply_to",
                         lambda: family.verify(event) and event["event"] == "hug"
                         and event["pillow"] == PILLOW and "reply_to" in event)
            checks.check("... and nothing in carol's queue", lambda: not events(carol), 1)
        ha.call("button", "press", entity_id=everyone)
        checks.check("button.press on \"Hug\" sends to bob and carol",
                     lambda: len(events(bob)) == 2 and len(events(carol)) == 1)

        if _at_least(version, (2024, 5)):
            checks.check(f"{message} exists", lambda: message in ha.states(), 30)
            started = time.perf_counter()
            ha.call("notify", "send_message", entity_id=message, message="landed safely")
            if checks.check("notify.send_message sends a hug with that text",
                            lambda: any(e.get("text") == "landed safely"
                                        for e in events(carol)), interval=0.002):
                print(f"     notify.send_message -> carol's queue: "
                      f"{(time.perf_counter() - started) * 1000:.0f} ms")
            ha.call("notify", "send_message", entity_id=message, message="bad\x1b[2J")
            checks.check("a message with a control character is refused: a `refused` "
                         "hug event, nothing sent",
                         lambda: ha.states()[f"event.{node}_hug"]["attributes"]
                         .get("event_type") == "refused"
                         and len(events(carol)) == 2)
        else:
            print(f"     (no notify check: Home Assistant {version} has no MQTT notify; "
                  f"it came in 2024.5)")

        socket = ha.socket()
        try:
            devices = socket.call("config/device_registry/list")
            device = next(d for d in devices if ["mqtt", PILLOW] in d["identifiers"])
            print(f"     device: {device['manufacturer']} {device['model']}, "
                  f"hw {device['hw_version']}, sw {device['sw_version']}")
            checks.check("device info: manufacturer, hw_version, sw_version",
                         lambda: device["manufacturer"] == "pillowd"
                         and device["hw_version"] == "mock" and device["sw_version"])
            triggers = socket.call("device_automation/trigger/list",
                                   device_id=device["id"])
            offered = sorted((t.get("type"), t.get("subtype")) for t in triggers
                             if t.get("domain") == "mqtt")
            print("     MQTT device triggers offered:", offered)
            checks.check("device_automation/trigger/list offers hug received, returned, "
                         "delivered",
                         lambda: {("received", "hug"), ("returned", "hug"),
                                  ("delivered", "hug")} <= set(offered))
            check_automations(ha, pillow, checks, device["id"], version,
                              lambda: len(events(bob)))
            registry = {e["entity_id"]: e for e in socket.call("config/entity_registry/list")}
            checks.check("the diagnostics are entity_category diagnostic",
                         lambda: all(registry[e]["entity_category"] == "diagnostic"
                                     for e in diagnostics))
        finally:
            socket.close()
        for entity, expected in diagnostics.items():
            if expected is not None:
                checks.check(f"{entity} is {expected}",
                             lambda e=entity, x=expected: ha.states()[e]["state"] == x)
        current = ha.states()[f"sensor.{node}_led_current"]
        print(f"     LED current: {current['state']} "
              f"{current['attributes'].get('unit_of_measurement')}")
    finally:
        store.close()


# docs/home-assistant.md's two automations. (The hall light's flash becomes an
# event here: this Home Assistant has no hall light.) Home Assistant before
# 2024.10 spells them `trigger:`/`platform:` and `action:`/`service:`.
AUTOMATIONS = """
- id: hug_bob_home
  alias: "Hug bob when I get home"
  triggers:
    - trigger: zone
      entity_id: person.alice
      zone: zone.home
      event: enter
  actions:
    - action: button.press
      target:
        entity_id: button.{node}_hug_bob
- id: flash_hall_light
  alias: "Flash the hall light when a hug arrives"
  triggers:
    - trigger: device
      domain: mqtt
      device_id: {device}
      type: received
      subtype: hug
  actions:
    - event: hall_light_flashed
      event_data:
        from: "{{{{ trigger.payload_json.from }}}}"
"""


def check_automations(ha: HomeAssistantCore, pillow: PillowProcess, checks: Checks,
                      device: str, version: str, bobs) -> None:
    """The docs' automations, loaded into Home Assistant and set off."""
    text = AUTOMATIONS.format(node=PILLOW.replace("-", "_"), device=device)
    if not _at_least(version, (2024, 10)):
        text = (text.replace("triggers:", "trigger:").replace("- trigger:", "- platform:")
                .replace("actions:", "action:").replace("- action:", "- service:"))
    ha.automations.write_text(text)
    ha.call("automation", "reload")
    home = ha.states()["zone.home"]["attributes"]

    def triggered(entity: str):
        return (ha.states().get(entity) or {}).get("attributes", {}).get("last_triggered")
    checks.check("the two automations are loaded",
                 lambda: "automation.hug_bob_when_i_get_home" in ha.states()
                 and "automation.flash_the_hall_light_when_a_hug_arrives" in ha.states())
    before = bobs()
    ha.post("/api/states/person.alice", {"state": "not_home", "attributes": {
        "latitude": home["latitude"] + 0.5, "longitude": home["longitude"]}})
    ha.post("/api/states/person.alice", {"state": "home", "attributes": {
        "latitude": home["latitude"], "longitude": home["longitude"]}})
    checks.check("\"Hug bob when I get home\": alice enters home, a hug goes to bob",
                 lambda: triggered("automation.hug_bob_when_i_get_home")
                 and bobs() == before + 1)
    pillow.cli("send", "hug", "--from", "Dana")
    checks.check("\"Flash the hall light when a hug arrives\": the device trigger fires",
                 lambda: triggered("automation.flash_the_hall_light_when_a_hug_arrives"))


def _at_least(version: str, wanted: tuple[int, int]) -> bool:
    parts = re.findall(r"\d+", version)[:2]
    return tuple(int(p) for p in parts) >= wanted


def node_of(line: str) -> bool:
    return PILLOW in line or PILLOW.replace("-", "_") in line


if __name__ == "__main__":
    sys.exit(main())
