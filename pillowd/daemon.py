"""Wires the pillow together from its settings: the one place that knows config,
environment, signals and systemd."""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from . import __version__
from .actuators import Actuators, build_parts
from .config import QuietSettings, Settings
from .consumer import Backoff, Consumer
from .errors import PillowError
from .hardware import HardwareError, open_hardware
from .history import History
from .light import LightOutput
from .hugs import HugButton, Hugs, Outbox
from .messages import decode, encode
from .pillow import Pillow
from .queues.local import LocalStore
from .quiet import QuietHours
from .render import Renderer
from .scenes import Timeline
from .systemd import SystemdNotifier, Watchdog

log = logging.getLogger("pillowd")

# Seconds the threads get to finish after a stop, within systemd's patience.
SHUTDOWN_GRACE = 1.5
# The actuator loop's period, and how long it may go without a tick before the
# watchdog turns every actuator off.
ACTUATOR_PERIOD = 0.02
ACTUATOR_STALL_SECONDS = 0.5


class Queues:
    """The queues one pillow uses: consumed, poison and (optional) outbound."""

    def __init__(self, main, poison, outbound, closers=()):
        self.main = main
        self.poison = poison
        self.outbound = outbound
        self._closers = list(closers)

    def close(self) -> None:
        for close in self._closers:
            close()
        self._closers.clear()


def open_queues(settings: Settings, environ=os.environ) -> Queues:
    """The configured queues, created when missing."""
    q = settings.queue
    if q.backend == "local":
        store = LocalStore(Path(settings.pillow.state_dir) / "queue.sqlite3")
        main, poison = store.queue(q.name), store.queue(settings.poison_name)
        outbound = store.queue(q.outbound_name) if q.outbound_name else None
        for queue in (main, poison, outbound):
            if queue is not None:
                queue.create()
        return Queues(main, poison, outbound, [store.close])
    if q.backend == "azure":
        return _open_azure_queues(settings, environ)
    raise PillowError(f"queue backend {q.backend!r} is not available yet")


# The systemd credential (LoadCredential=) holding the connection string.
AZURE_CREDENTIAL = "azure-storage-connection-string"


def azure_account(settings: Settings, environ=os.environ):
    """The storage account from the first credential source that is there.

    In order: the env var named by queue.connection_string_env, the systemd
    credential, queue.account_url with a SAS, queue.account_url with the Azure
    identity chain. Each error names the source, never the secret.
    """
    from .queues.azure import AzureAccount

    q = settings.queue
    env_name = q.connection_string_env
    if env_name and environ.get(env_name, "").strip():
        return AzureAccount.from_connection_string(
            environ[env_name], f"connection string from ${env_name}")
    if environ.get("CREDENTIALS_DIRECTORY"):
        path = Path(environ["CREDENTIALS_DIRECTORY"]) / AZURE_CREDENTIAL
        try:
            text = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            text = ""
        except (OSError, UnicodeDecodeError) as err:
            raise PillowError(f"azure: cannot read the systemd credential {AZURE_CREDENTIAL}: "
                              f"{getattr(err, 'strerror', None) or type(err).__name__}") from None
        if text:
            return AzureAccount.from_connection_string(
                text, f"connection string from the systemd credential {AZURE_CREDENTIAL}")
    if q.account_url:
        if urlsplit(q.account_url).query:
            return AzureAccount.from_url(q.account_url, source="the SAS in queue.account_url")
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError:
            raise PillowError("azure: queue.account_url has no SAS, and the Azure identity "
                              "chain needs azure-identity: pip install 'pillowd[identity]'"
                              ) from None
        return AzureAccount.from_url(q.account_url, DefaultAzureCredential(),
                                     source="the Azure identity chain for queue.account_url")
    raise PillowError(f"azure: no credentials: ${env_name or '(none)'} is not set, no "
                      f"systemd credential {AZURE_CREDENTIAL}, and queue.account_url is empty")


def _open_azure_queues(settings: Settings, environ) -> Queues:
    from .queues import QueueUnavailable

    # azure-core logs every request and its headers at INFO; the poll would flood
    # the journal. Its URLs have the SAS signature redacted, but WARNING keeps even
    # that out.
    logging.getLogger("azure").setLevel(logging.WARNING)
    q = settings.queue
    account = azure_account(settings, environ)
    main, poison = account.queue(q.name), account.queue(settings.poison_name)
    outbound = account.queue(q.outbound_name) if q.outbound_name else None
    try:
        for queue in (main, poison, outbound):
            if queue is not None:
                queue.create()
    except QueueUnavailable as err:
        # Unreachable now is not fatal: each queue is made on first use, the loop
        # retries and the page shows why it is offline. A refused credential
        # (QueueAuthError) is: it stops the start with one line naming the source.
        log.warning("%s; the queues will be created once Azure answers", err)
    except BaseException:
        account.close()
        raise
    return Queues(main, poison, outbound, [account.close])


def page_url_for_others(host: str, url: str) -> str:
    """The status page's address as another machine (Home Assistant) can open it:
    a wildcard bind is reached by the Pi's mDNS name, as raspberrypi.local."""
    if host not in ("0.0.0.0", "::", ""):
        return url
    name = socket.gethostname()
    port = urlsplit(url).port
    return f"http://{name if '.' in name else name + '.local'}:{port}/"


def control_token(settings: Settings, environ=os.environ) -> str | None:
    token = environ.get(settings.web.control_token_env, "").strip()
    return token or None


class Daemon:
    """Everything that runs while the pillow is on, started and stopped together."""

    def __init__(self, settings: Settings, *, demo: bool = False, environ=os.environ):
        from .web import StatusPage

        self.settings = settings
        self.stop = threading.Event()
        self._closers = []
        state_dir = Path(settings.pillow.state_dir)
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise PillowError(f"cannot create state_dir {state_dir}: "
                              f"{err.strerror or err}") from None
        try:
            self.history = History(state_dir / "history.sqlite3")
            self._closers.append(self.history.close)
            self.queues = open_queues(settings, environ)
            self._closers.append(self.queues.close)
            self.hardware = open_hardware(settings.hardware.backend, settings.leds)
            self._closers.append(self.hardware.close)

            leds, q = settings.leds, settings.queue
            self.timeline = Timeline(settings.scenes["idle"])
            output = LightOutput(leds.count, brightness=leds.brightness,
                                 max_milliamps=leds.max_milliamps, gamma=leds.gamma,
                                 milliamps_per_channel=leds.milliamps_per_led / 3,
                                 idle_milliamps_per_led=leds.idle_milliamps_per_led)
            self.renderer = Renderer(self.timeline, self.hardware.strip, output,
                                     fps=leds.fps)
            self.consumer = Consumer(
                self.queues.main, self.queues.poison, self.history,
                decode=lambda body: decode(body, settings),
                play=self.timeline.play,
                backoff=Backoff(q.poll_min_seconds, q.poll_max_seconds),
                backend=q.backend, max_dequeue_count=q.max_dequeue_count,
                max_age=q.message_max_age_seconds, batch_size=q.batch_size,
                visibility_timeout=q.visibility_timeout_seconds)
            self.pillow = Pillow(
                settings.pillow.name, timeline=self.timeline, renderer=self.renderer,
                consumer=self.consumer, history=self.history,
                settings_for_commands=settings,
                queue_stall_seconds=q.poll_max_seconds + q.visibility_timeout_seconds + 30)
            self.consumer.on_outcome = self.pillow.outcome
            self.consumer.on_status = self.pillow.queue_status
            self._wire_parts(settings, state_dir)
            self.page = StatusPage(self.pillow, token=control_token(settings, environ))
            self.url = self.page.bind(settings.web.host, settings.web.port)
            self._closers.append(self.page.close)
            self.mqtt = self._build_mqtt(settings, state_dir, environ)
        except BaseException:
            self.close()
            raise
        self.demo = demo
        self._threads: list[threading.Thread] = []
        self.notifier = SystemdNotifier(environ)
        self.watchdog: Watchdog | None = None

    def _wire_parts(self, settings: Settings, state_dir: Path) -> None:
        """Actuators, hug button and quiet hours; each optional, all off by default."""
        if self.hardware.mock:  # written at close, after every device is off
            self.hardware.record_to = state_dir / "mock-hardware.json"
        parts = build_parts(settings.actuators, self.hardware.pin_factory,
                            horizon=ACTUATOR_PERIOD)
        self.actuators = Actuators(parts, self.timeline, period=ACTUATOR_PERIOD,
                                   stall_seconds=ACTUATOR_STALL_SECONDS,
                                   on_values=self._actuators_changed)
        self.hardware.closers.append(self.actuators.close)
        self.pillow.actuators = dict(self.actuators.values)
        self.pillow.checks.append(self.actuators.trouble)
        # No actuators fitted: nothing to tick 50 times a second.
        self.part_loops = {"actuators": self.actuators.run,
                           "watchdog": self.actuators.watch} if parts else {}

        self.outbox = None
        if self.queues.outbound is not None:
            self.outbox = Outbox(state_dir / "outbox.sqlite3", self.queues.outbound)
            self._closers.append(self.outbox.close)
            self.part_loops["outbox"] = self.outbox.run
        self.hugs = self.button = None
        if settings.button is not None:
            b = settings.button
            self.hugs = Hugs(settings.pillow.name, b.scene, outbox=self.outbox,
                             play=lambda data: self.pillow.play(data, source="button"))
            self.timeline.on_change(self.hugs.seen)
            try:
                self.button = HugButton(b.pin, pull_up=b.pull_up,
                                        bounce_seconds=b.bounce_seconds,
                                        on_press=self.hugs.pressed,
                                        pin_factory=self.hardware.pin_factory)
            except Exception as err:  # gpiozero's errors: pin busy, no such pin, ...
                raise HardwareError(f"cannot use GPIO{b.pin} for the hug button: "
                                    f"{err}") from None
            self.hardware.closers.append(self.button.close)

        # Always there: without [quiet] hours, quiet can still be asked for by hand.
        q = settings.quiet
        self.quiet_hours = QuietHours(q and q.start, q and q.end)
        self.quiet_hours.on_change(self._quiet_changed)
        self.quiet_hours.check()  # before any loop runs: no bright first second
        self.pillow.on_quiet = self.quiet_hours.override
        if q is not None:
            self.part_loops["quiet"] = self.quiet_hours.run

    def _build_mqtt(self, settings: Settings, state_dir: Path, environ):
        """Home Assistant over MQTT when [mqtt] is there; None otherwise."""
        from . import mqtt

        from .config import MqttSettings

        self._mqtt_marker = state_dir / "mqtt-entities.json"
        m = settings.mqtt
        # Without [mqtt], what an earlier run published (the marker) is emptied with
        # the login from the default names (PILLOWD_MQTT_*, mqtt-password).
        self._mqtt_login = (None, None)
        if m is None:
            if self._mqtt_marker.exists():
                d = MqttSettings()
                try:
                    self._mqtt_login = mqtt.login_from(d.username_env, d.password_env,
                                                       environ)
                except PillowError as err:  # a clean-up must not stop the pillow
                    log.warning("%s", err)
            return None
        username, password = mqtt.login_from(m.username_env, m.password_env, environ)
        ha = mqtt.HomeAssistant(
            host=m.host, port=m.port, username=username, password=password, tls=m.tls,
            ca_file=m.ca_file, discovery_prefix=m.discovery_prefix, topic=m.topic,
            pillow_name=settings.pillow.name, version=__version__,
            page_url=page_url_for_others(settings.web.host, self.url),
            scenes=list(settings.scenes), controls=self.pillow,
            snapshot=self.pillow.snapshot, on_status=lambda status: self.pillow.changed(),
            marker=self._mqtt_marker)
        self.pillow.mqtt = ha
        self.pillow.on_state(ha.state_changed)
        self._closers.append(ha.close)
        return ha

    def _remove_mqtt_entities(self) -> None:
        """[mqtt] was removed: empty what an earlier run published, in the background."""
        from . import mqtt

        username, password = self._mqtt_login

        def remove() -> None:
            mqtt.name_thread("pillowd-mqtt")
            mqtt.remove_entities(self._mqtt_marker, username=username, password=password)
        threading.Thread(target=remove, name="pillowd-mqtt", daemon=True).start()

    def _actuators_changed(self, values: dict) -> None:
        self.pillow.actuators = values
        self.pillow.changed()

    def _quiet_changed(self, quiet: bool) -> None:
        q = self.settings.quiet or QuietSettings()
        # max_brightness is absolute; the renderer's cap is a share of [leds] brightness.
        configured = self.settings.leds.brightness
        cap = min(1.0, q.max_brightness / configured) if configured > 0 else 1.0
        self.renderer.limit(cap if quiet else 1.0)
        self.actuators.muted = quiet and not q.actuators
        if quiet or self.pillow.quiet:  # not "over" at a daytime start
            log.info("quiet hours %s", "begin" if quiet else "are over")
        self.pillow.quiet = quiet
        self.pillow.changed()

    def _guarded(self, name: str, target):
        """*target* as a thread body that turns the actuators off if it ever fails."""
        def run(stop: threading.Event) -> None:
            try:
                target(stop)
            finally:
                if not stop.is_set():  # ended while the pillow should be running
                    self.actuators.fault = f"the {name} loop stopped"
                    self.actuators.all_off(self.actuators.fault)
        return run

    def start(self) -> None:
        loops = {"render": self.renderer.run, "queue": self.consumer.run,
                 **self.part_loops}
        if self.demo:
            loops["demo"] = self._demo
        for name, target in loops.items():
            thread = threading.Thread(target=self._guarded(name, target),
                                      args=(self.stop,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
            if name != "demo":
                self.pillow.threads[name] = thread
        self.page.start()
        if self.mqtt is not None:
            self.mqtt.start()
        elif self._mqtt_marker.exists():
            self._remove_mqtt_entities()
        # Only now can the pillow really serve: config, hardware, queue and web are up.
        self.notifier.ready(self.pillow.status_line())
        interval = self.notifier.watchdog_interval()
        if interval:
            self.watchdog = Watchdog(self.notifier, self.pillow.loop_checks(), interval,
                                     status=self.pillow.status_line)
            self.watchdog.start()
        elif self.notifier.enabled:
            self.pillow.on_state(lambda: self.notifier.status(self.pillow.status_line()))
        log.info("pillowd %s: %r ready, %s queue %r, status page at %s", __version__,
                 self.settings.pillow.name, self.settings.queue.backend,
                 self.settings.queue.name, self.url)

    def _demo(self, stop: threading.Event) -> None:
        """Feeds a scene every few seconds through the real path, for newcomers."""
        rng = random.Random()
        senders = ["Alice", "Bob", "Grandma", "Sam"]
        notes = ["thinking of you", "sleep well", "hug!", "see you soon"]
        colors = ["#ff6ec7", "#ffb347", "#7ec8e3", "#b19cd9", "#77dd77"]
        scenes = [s for s in self.settings.scenes if s != "idle"] or ["idle"]
        while not stop.wait(6):
            scene = rng.choice(scenes)
            fields = {"scene": scene, "from": rng.choice(senders),
                      "text": rng.choice(notes), "duration": 4}
            if "color" in self.settings.scenes[scene].params:
                fields["color"] = rng.choice(colors)
            try:
                if self.settings.queue.backend == "local":
                    self.queues.main.put(encode(fields))
                else:  # never fill somebody's real cloud queue with demo messages
                    self.pillow.play(fields, source="demo")
            except Exception as err:  # the demo must never take the pillow down
                log.warning("demo message not sent: %s", err)

    def wait(self) -> None:
        while not self.stop.wait(1):
            pass

    def close(self) -> None:
        """Stop every loop, leave the LEDs dark and the outputs off; safe twice."""
        if getattr(self, "_threads", None):
            self.notifier.stopping()
        self.stop.set()
        if getattr(self, "renderer", None) is not None:
            self.renderer.wake()  # it may be sleeping on a static frame
        if getattr(self, "watchdog", None) is not None:
            self.watchdog.stop()
        deadline = time.monotonic() + SHUTDOWN_GRACE
        for thread in getattr(self, "_threads", []):
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []
        for close in reversed(self._closers):
            try:
                close()
            except Exception:
                log.exception("while shutting down")
        self._closers.clear()


def run(settings: Settings, *, demo: bool = False, environ=os.environ) -> int:
    """Runs the daemon in the foreground until SIGTERM or SIGINT."""
    daemon = Daemon(settings, demo=demo, environ=environ)

    def stop(signum, frame):  # only sets a flag: the main thread does the work
        daemon.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        daemon.start()
        url = daemon.url
        token = control_token(settings, environ)
        if token and sys.stdout.isatty():
            url += f"?token={token}"  # a person at a terminal, never a log file
        print(f"pillowd: status page at {url}", flush=True)
        daemon.wait()
        log.info("stopping")
    finally:
        daemon.close()
    return 0
