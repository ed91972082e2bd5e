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

It starts a mosquitto and a Home Assistant configured with http, api and config
and a login made by `hass --script auth`; logs in as a browser does, adds the MQTT
integration by its config flow (the REST API, as the UI does), starts a real
pillowd with [mqtt] and `[leds] brightness = 0.6` (as shipped), and checks through
Home Assistant's REST API that the light, switch, sensor and event entities exist
and act. Prints one line per check and what Home Assistant logged about MQTT and
the pillow; exits 1 if a check failed. Figures and versions: docs/home-assistant.md.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from pillowd.testing import PillowProcess
from pillowd.testing.mosquitto import Mosquitto
from pillowd.testing.services import free_port

PILLOW = "ha-check-pillow"
PASSWORD = "check-password-1"  # a throwaway Home Assistant in a temporary directory
CONFIG = """
[pillow]
name = "{name}"
state_dir = "{state}"

[queue]
backend = "local"
poll_min_seconds = 0.05
poll_max_seconds = 0.5

[hardware]
backend = "mock"

[leds]
count = 12
brightness = 0.6

[web]
host = "127.0.0.1"
port = 0

[mqtt]
host = "127.0.0.1"
port = {port}

[scenes.idle]
effect = "solid"
color = "#000010"

[scenes.hug]
effect = "solid"
color = "#ff0000"
duration = 0

[scenes.glow]
effect = "breathe"
color = "#00ff00"
duration = 0
"""
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
logger:
  default: warning
"""


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (requests.RequestException, ValueError, KeyError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {timeout:.0f} s")
        time.sleep(0.2)


class HomeAssistantCore:
    """A Home Assistant core in a process of its own, driven through its REST API."""

    def __init__(self, hass: str, directory: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        directory.mkdir(parents=True)
        (directory / "configuration.yaml").write_text(HA_CONFIG.format(port=self.port))
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

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Checks:
    def __init__(self):
        self.failed = 0

    def check(self, what: str, predicate, timeout: float = 20) -> bool:
        try:
            wait(predicate, timeout, what)
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
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ha-check-"))
    broker = Mosquitto(work / "broker").start()
    ha = HomeAssistantCore(args.hass, work / "homeassistant")
    pillow = None
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
        config.write_text(CONFIG.format(name=PILLOW, state=work / "state",
                                        port=broker.port))
        pillow = PillowProcess(config).start()
        wait(lambda: (pillow.state().get("mqtt") or {}).get("online"), 20, "pillow online")

        node = PILLOW.replace("-", "_")
        lamp, hug = f"light.{node}", f"event.{node}_hug"
        sender, quiet = f"sensor.{node}_last_message_from", f"switch.{node}_quiet_hours"
        for entity in (lamp, hug, sender, quiet):
            checks.check(f"{entity} exists", lambda e=entity: e in ha.states(), 60)
        states = ha.states()
        print("     entities:", ", ".join(sorted(e for e in states if node in e)))

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
        pillow.stop()
        checks.check("a stopped pillow is unavailable",
                     lambda: ha.states()[lamp]["state"] == "unavailable")
        pillow = None
    finally:
        if pillow is not None:
            pillow.stop()
        ha.stop()
        broker.stop()
        logged = [line for line in ha.log.read_text(errors="replace").splitlines()
                  if ("mqtt" in line.lower() or node_of(line)) and
                  (" WARNING " in line or " ERROR " in line)] if ha.log.exists() else []
        print(f"Home Assistant logged {len(logged)} MQTT warning(s)/error(s):")
        for line in logged:
            print("    ", line[:300])
        if args.keep:
            print("work directory:", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("all checks passed" if not checks.failed else f"{checks.failed} check(s) FAILED")
    return 1 if checks.failed else 0


def node_of(line: str) -> bool:
    return PILLOW in line or PILLOW.replace("-", "_") in line


if __name__ == "__main__":
    sys.exit(main())
