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
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit
from uuid import uuid4

from . import __version__, threads
from .actuators import ActuatorError, Actuators, build_parts
from .consumer import Backoff, Consumer
from .credentials import credential
from .errors import PillowError
from .hardware import Hardware, HardwareError, open_hardware, open_mock
from .history import History
from .hugs import Conversation, HugButton, Hugs, Outbox
from .light import LightOutput
from .messages import decode, encode
from .metrics import Metrics
from .pillow import Controls, Health, Loop, Pillow
from .player import Player
from .queues.local import LocalStore
from .quiet import QuietHours
from .render import Renderer
from .scenes import Timeline
from .settings import ButtonSettings, MqttSettings, QuietSettings, Settings
from .systemd import SystemdNotifier, Watchdog

log = logging.getLogger("pillowd")

# Seconds the threads get to finish after a stop, within systemd's patience.
SHUTDOWN_GRACE = 1.5
# The actuator loop's period, and how long it may go without a tick before the
# watchdog turns every actuator off.
ACTUATOR_PERIOD = 0.02
ACTUATOR_STALL_SECONDS = 0.5


class Queues:
    """The queues one pillow uses: consumed, poison and its partners' (outbound),
    and the family key that signs and checks what partners send through them."""

    def __init__(self, main, poison, outbound=(), closers=(), family=None):
        self.main = main
        self.poison = poison
        self.outbound = list(outbound)  # one per partner; empty: hugs go nowhere
        self.family = family  # FamilyKey, or None: nothing signed, no partner trusted
        self._closers = list(closers)

    def close(self) -> None:
        for close in self._closers:
            close()
        self._closers.clear()


def open_queues(settings: Settings, environ=os.environ, *, family: bool = False) -> Queues:
    """The configured queues, created when missing; with *family*, the family key
    too (only the daemon signs and checks: send and poison need none)."""
    queues = _open_queues(settings, environ)
    try:
        if family:
            queues.family = family_key(settings, environ)
    except BaseException:
        queues.close()
        raise
    return queues


def family_key(settings: Settings, environ=os.environ):
    """The family key `pillowd pair` wrote beside the pillow's tokens (the systemd
    credential azure-queue-sas, else queue.sas_file), whatever the queue backend."""
    from .queues.tokens import family_key as read

    return read(settings.queue.sas_file, _config_dir(settings), environ)


def _config_dir(settings: Settings):
    # sas_file is relative to the config file; "<defaults>" has none.
    return Path(settings.source).parent if not settings.source.startswith("<") else "."


def _open_queues(settings: Settings, environ) -> Queues:
    q = settings.queue
    if q.backend == "local":
        store = LocalStore(Path(settings.pillow.state_dir) / "queue.sqlite3")
        main, poison = store.queue(q.name), store.queue(settings.poison_name)
        outbound = [store.queue(name) for name in settings.outbound_names]
        for queue in (main, poison, *outbound):
            queue.create()
        return Queues(main, poison, outbound, [store.close])
    if q.backend == "azure":
        return _open_azure_queues(settings, environ)
    raise PillowError(f"queue backend {q.backend!r} is not available yet")


# The systemd credential (LoadCredential=) holding the connection string; the
# Azure SDK is imported only when the azure backend is used.
AZURE_CREDENTIAL = "azure-storage-connection-string"


def azure_account(settings: Settings, environ=os.environ):
    """The storage account from the first credential source that is there
    (pillowd.queues.azure.open_account says in which order)."""
    from .queues.azure import open_account

    q = settings.queue
    return open_account(connection_string_env=q.connection_string_env,
                        account_url=q.account_url, sas_file=q.sas_file,
                        config_dir=_config_dir(settings), environ=environ)


def _open_azure_queues(settings: Settings, environ) -> Queues:
    from .queues import QueueUnavailable

    # azure-core logs every request and its headers at INFO; the poll would flood
    # the journal. Its URLs have the SAS signature redacted, but WARNING keeps even
    # that out.
    logging.getLogger("azure").setLevel(logging.WARNING)
    q = settings.queue
    account = azure_account(settings, environ)
    main, poison = account.queue(q.name), account.queue(settings.poison_name)
    outbound = [account.queue(name, sends_only=True) for name in settings.outbound_names]
    try:
        for queue in (main, poison, *outbound):
            queue.create()
    except QueueUnavailable as err:
        # Unreachable now is not fatal: each queue is made on first use, the loop
        # retries and the page shows why it is offline. A refused credential
        # (QueueAuthError) is: it stops the start with one line naming the source.
        log.warning("%s; the queues will be created once Azure answers", err)
    except BaseException:
        account.close()
        raise
    account.log_choice()   # which kind of credential, never the secret
    return Queues(main, poison, outbound, [account.close])


def partner_names(settings: Settings) -> dict[str, str]:
    """{outbound queue: the partner's name}, from the family roster ([partners.NAME],
    written by `pair`): never guessed from the pillow's own [pillow] name."""
    return {queue: name for name, queue in settings.roster.items()}


def page_url_for_others(host: str, url: str) -> str:
    """The status page's address as another machine (Home Assistant) can open it:
    a wildcard bind is reached by the Pi's mDNS name, as raspberrypi.local."""
    if host not in ("0.0.0.0", "::", ""):
        return url
    name = socket.gethostname()
    port = urlsplit(url).port
    return f"http://{name if '.' in name else name + '.local'}:{port}/"


# The systemd credential (LoadCredential=) install.sh makes: a random control token.
TOKEN_CREDENTIAL = "control-token"


def token_fix(settings: Settings, environ=os.environ) -> str:
    """How to replace a control token too short to accept, for the way it was given."""
    name = settings.web.control_token_env
    if environ.get(name, "").strip():
        return (f"Stop the pillow, set {name} to 16 characters or more, for example "
                f"export {name}=$(python3 -c 'import secrets; "
                f"print(secrets.token_urlsafe(16))'), and start it again.")
    return ("Replace the systemd credential control-token with a longer one: "
            "sudo rm /etc/pillowd/control-token && sudo ./install.sh "
            "(it makes a random one), or write 16 characters or more into that file, "
            "then sudo systemctl restart pillowd.")


def control_token(settings: Settings, environ=os.environ) -> str | None:
    """The control token: $control_token_env, else the systemd credential."""
    token = environ.get(settings.web.control_token_env, "").strip()
    if not token:
        token = credential(TOKEN_CREDENTIAL, environ).strip()
    return token or None


class Demo:
    """Feeds a scene every few seconds through the real path, for newcomers."""

    def __init__(self, settings: Settings, *, put=None, play=None, every: float = 6):
        self._scenes = {name: "color" in scene.params
                        for name, scene in settings.scenes.items() if name != "idle"}
        self._put = put     # the local queue's put: the whole path, queue included
        self._play = play   # never fill somebody's real cloud queue with demo messages
        self._every = every
        self._stopped = threading.Event()

    def run(self) -> None:
        rng = random.Random()
        senders = ["Alice", "Bob", "Grandma", "Sam"]
        notes = ["thinking of you", "sleep well", "hug!", "see you soon"]
        colors = ["#ff6ec7", "#ffb347", "#7ec8e3", "#b19cd9", "#77dd77"]
        scenes = list(self._scenes) or ["idle"]
        while not self._stopped.wait(self._every):
            scene = rng.choice(scenes)
            # "demo-": Home Assistant never takes it for someone's message.
            fields = {"scene": scene, "from": rng.choice(senders), "id": f"demo-{uuid4()}",
                      "text": rng.choice(notes), "duration": 4}
            if self._scenes.get(scene):
                fields["color"] = rng.choice(colors)
            try:
                if self._put is not None:
                    self._put(encode(fields))
                else:
                    self._play(fields, source="demo")
            except Exception as err:  # the demo must never take the pillow down
                log.warning("demo message not sent: %s", err)

    def stop(self) -> None:
        self._stopped.set()


class Daemon:
    """Everything that runs while the pillow is on: built in order, closed in reverse.

    The constructor builds every part from *settings*, handing each its
    collaborators and callbacks; start() starts the loops; close() stops them and
    closes the parts in the reverse of the order they were built.
    """

    def __init__(self, settings: Settings, *, demo: bool = False, environ=os.environ):
        self.settings = settings
        self._stack = ExitStack()
        # (what a person calls it, its thread's name, the part with run() and stop())
        self._loops: list[tuple[str, str, object]] = []
        self._threads: list[threading.Thread] = []
        self.watchdog: Watchdog | None = None
        self.mqtt = None  # Home Assistant, when [mqtt] is there: built last
        try:
            self._build(settings, demo, environ)
        except BaseException:
            self._stack.close()
            raise

    def _build(self, settings: Settings, demo: bool, environ) -> None:
        closing = self._stack.callback
        state_dir = Path(settings.pillow.state_dir)
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise PillowError(f"cannot create state_dir {state_dir}: "
                              f"{err.strerror or err}") from None
        _private(state_dir)
        q, leds = settings.queue, settings.leds
        self.history = History(state_dir / "history.sqlite3")
        closing(self.history.close)
        self.queues = open_queues(settings, environ, family=True)
        closing(self.queues.close)
        if self.queues.outbound and self.queues.family is None:
            log.warning("no family key beside the pillow's tokens: partners' hugs play "
                        "as ordinary messages; run pillowd pair again (docs/pairing.md)")
        trouble: list[str] = []   # hardware that could not start: the pillow runs on
        self.hardware = self._open_hardware(state_dir, trouble)
        closing(self.hardware.close)

        self.timeline = Timeline(settings.scenes["idle"],
                                 hold_scale=(settings.button or ButtonSettings()).hold_scale)
        output = LightOutput(leds.count, brightness=leds.brightness,
                             max_milliamps=leds.max_milliamps, gamma=leds.gamma,
                             milliamps_per_channel=leds.milliamps_per_led / 3,
                             idle_milliamps_per_led=leds.idle_milliamps_per_led)
        self.renderer = Renderer(self.timeline, self.hardware.strip, output, fps=leds.fps)
        self.pillow = Pillow(settings.pillow.name, timeline=self.timeline,
                             renderer=self.renderer, history=self.history,
                             scenes=list(settings.scenes), backend=q.backend,
                             hardware_trouble=trouble)
        # Always there: without [quiet] hours, quiet can still be asked for by hand.
        # (Checked below, once the actuators it mutes are built.)
        quiet = settings.quiet
        self.quiet_hours = QuietHours(quiet and quiet.start, quiet and quiet.end,
                                      on_change=self._quiet_changed)
        # Before the player: the conversation tells it which message is a hug back.
        button = settings.button or ButtonSettings()  # /api/hug works without one
        family = self.queues.family
        partners = partner_names(settings)   # {queue: pillow}
        self.outbox = None
        if self.queues.outbound:
            self.outbox = Outbox(state_dir / "outbox.sqlite3", self.queues.outbound,
                                 partners=partners,
                                 sign=family.signed if family else lambda event: event,
                                 on_status=lambda s: self.pillow.section_changed("outbox", s))
            closing(self.outbox.close)
            self.pillow.section_changed("outbox", self.outbox.status())
        backoff = Backoff(q.poll_min_seconds, q.poll_max_seconds)
        self.conversation = Conversation(
            settings.pillow.name, window=button.reply_window_seconds,
            send_scene=button.send_scene, path=state_dir / "conversation.json",
            outbox=self.outbox, partners={p: q for q, p in partners.items()},
            family=family, roster_name=settings.roster_name,
            colors={name: p.color for name, p in settings.partners.items() if p.color}, quiet=lambda: bool(self.quiet_hours.quiet),
            hurry=backoff.hurry, on_hug=self._hug_heard,
            on_section=self.pillow.section_changed)
        self.conversation.report()
        self.player = Player(self.history, self.timeline, on_outcome=self.pillow.outcome,
                             conversation=self.conversation, on_played=self._played)
        self.consumer = Consumer(
            self.queues.main, self.queues.poison, self.history, self.player,
            decode=lambda body: decode(body, settings, family),
            backoff=backoff,
            backend=q.backend, max_dequeue_count=q.max_dequeue_count,
            max_age=q.message_max_age_seconds, batch_size=q.batch_size,
            visibility_timeout=q.visibility_timeout_seconds,
            on_status=self.pillow.queue_status)
        self._loops += [("render", "pillowd-render", self.renderer),
                        ("queue", "pillowd-queue", self.consumer)]

        self.actuators = Actuators(self._open_parts(trouble), self.timeline,
                                   period=ACTUATOR_PERIOD,
                                   stall_seconds=ACTUATOR_STALL_SECONDS,
                                   on_values=self.pillow.actuators_changed)
        closing(self.actuators.close)
        if self.actuators.parts:  # none fitted: no loop at all
            self._loops += [("actuators", "pillowd-actuate", self.actuators),
                            ("watchdog", "pillowd-act-dog", _Watch(self.actuators))]

        self.quiet_hours.check()  # before any loop runs: no bright first second
        if quiet is not None:
            self._loops.append(("quiet", "pillowd-quiet", self.quiet_hours))

        if self.outbox is not None:
            self._loops.append(("outbox", "pillowd-outbox", self.outbox))
        self.controls = Controls(settings=settings, player=self.player,
                                 renderer=self.renderer, timeline=self.timeline,
                                 quiet=self.quiet_hours, on_change=self.pillow.changed)
        # Whether or not a button is fitted: POST /api/hug presses it too.
        self.hugs = Hugs(button, conversation=self.conversation,
                         play=lambda data, source: self.controls.play(data, source=source))
        self.button = None
        if settings.button is not None:
            self.button = self._open_button(trouble)
            if self.button is not None:
                closing(self.button.close)

        if demo:
            local = q.backend == "local"
            self._loops.append(("demo", "pillowd-demo", Demo(
                settings, put=self.queues.main.put if local else None,
                play=None if local else self.controls.play)))

        from .broadcast import Broadcaster  # Flask-SocketIO only once the rest stands
        from .webauth import Policy

        web = settings.web
        self.policy = Policy(control_token(settings, environ),
                             allowed_hosts=web.allowed_hosts, private=web.private)
        self.pillow.section_changed("web", {
            "controls": self.policy.token is not None,
            "private": web.private,
            "problem": self.policy.token_problem,
            "fix": token_fix(settings, environ) if self.policy.token_problem else None,
            # The page's hug button says "Hug back" within this of a partner's hug.
            "reply_window_seconds": button.reply_window_seconds,
            "hug_scene": button.scene})
        self.broadcaster = Broadcaster(self.pillow, self.renderer, admit=self.policy.admit)
        self._loops += [("state push", "pillowd-state", self.broadcaster.states),
                        ("frame push", "pillowd-frames", self.broadcaster.frames)]

        self._threads = [threading.Thread(target=self._guarded(label, part.run),
                                          name=name, daemon=True)
                         for label, name, part in self._loops]
        by_label = dict(zip((label for label, _, _ in self._loops), self._threads))
        loops = [Loop("render", by_label["render"],
                      heartbeat=lambda: self.renderer.heartbeat, stall_seconds=2.0,
                      resting=lambda: self.renderer.resting),
                 Loop("queue", by_label["queue"],
                      heartbeat=lambda: self.consumer.heartbeat,
                      stall_seconds=q.poll_max_seconds + q.visibility_timeout_seconds + 30)]
        loops += [Loop(label, by_label[label], heartbeat=lambda part=part: part.heartbeat,
                       stall_seconds=10.0, resting=lambda part=part: part.resting)
                  for label, part in (("state push", self.broadcaster.states),
                                      ("frame push", self.broadcaster.frames))]
        self.health = Health(loops, {
            "hardware": lambda: "; ".join(trouble) or None,
            "leds": self.renderer.strip_trouble,
            "history": self.consumer.trouble,
            "actuators": self.actuators.trouble},
            notes={"outbox": self._outbox_notes})

        from .web import StatusPage  # Flask only once everything before it stands

        self.page = StatusPage(
            self.pillow, controls=self.controls, hugs=self.hugs, health=self.health,
            broadcaster=self.broadcaster, policy=self.policy,
            metrics=lambda clients: Metrics(self.pillow, self.consumer,
                                            self.renderer, clients,
                                            mqtt=lambda: self.mqtt))
        self.url = self.page.bind(settings.web.host, settings.web.port)
        closing(self.page.close)
        self.mqtt = self._build_mqtt(state_dir, environ)  # needs the page's address
        if self.mqtt is not None:
            closing(self.mqtt.close)
        self.notifier = SystemdNotifier(environ)
        # Last in, so first out: the loops stop before anything they use is closed.
        closing(self._stop_loops)

    def _open_hardware(self, state_dir: Path, trouble: list[str]) -> Hardware:
        """The configured hardware; mock parts, and the reason, when it cannot start."""
        settings = self.settings
        record_to = state_dir / "mock-hardware.json"  # written at close, all off
        try:
            return open_hardware(settings.hardware.backend, settings.leds, record_to)
        except HardwareError as err:
            # Restarting would not fix it: keep the queue, page and history going,
            # and say why the LEDs are dark (page, snapshot, /healthz, journal).
            log.error("%s; running without the LEDs and GPIO until that is fixed", err)
            trouble.append(f"LEDs: {err}")
            return open_mock(settings.leds.count)

    def _open_parts(self, trouble: list[str]):
        fitted = self.settings.actuators
        if fitted.vibration is None and fitted.servo is None and fitted.warmer is None:
            return []  # LEDs only: no GPIO opened at all
        try:
            return build_parts(fitted, self.hardware.pin_factory, horizon=ACTUATOR_PERIOD)
        except (ActuatorError, HardwareError) as err:
            log.error("%s; running without the actuators", err)
            trouble.append(f"actuators: {err}")
            return []

    def _open_button(self, trouble: list[str]) -> HugButton | None:
        b = self.settings.button
        try:
            return HugButton(b.pin, pull_up=b.pull_up, bounce_seconds=b.bounce_seconds,
                             on_press=lambda hold: self.hugs.pressed("button", hold=hold),
                             pin_factory=self.hardware.pin_factory)
        except Exception as err:  # gpiozero's errors: pin busy, no such pin, ...
            why = f"cannot use GPIO{b.pin} for the hug button: {err}"
            log.error("%s; running without the button (/api/hug still works)", why)
            trouble.append(why)
            return None

    def _build_mqtt(self, state_dir: Path, environ):
        """Home Assistant over MQTT when [mqtt] is there; None otherwise."""
        from . import homeassistant as mqtt

        settings, m = self.settings, self.settings.mqtt
        # What was published, so that removing [mqtt] can remove it too; without
        # [mqtt], the login is looked for under the default names.
        self._mqtt_marker = state_dir / "mqtt-entities.json"
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
            scenes=list(settings.scenes), controls=self.controls,
            snapshot=self.pillow.snapshot, hugs=self.hugs,
            partners=self.hugs.partners, discovery=m.discovery,
            hw_version=mqtt.hardware_model(settings.hardware.backend),
            on_status=lambda status: self.pillow.section_changed("mqtt", status),
            marker=self._mqtt_marker)
        self.pillow.section_changed("mqtt", ha.status)
        self.pillow.on_state(ha.state_changed)
        return ha

    def _outbox_notes(self) -> list[str]:
        # A partner's queue that refuses is no reason to restart this pillow: a
        # note on /healthz (still 200), the page and the metrics say it.
        if self.outbox is None:
            return []
        away = dict(self.outbox.away)  # the outbox's thread changes it
        return [f"hugs to {self.outbox.partners[queue]} are not delivered yet: "
                f"queue {queue!r} {why}" for queue, why in sorted(away.items())]

    def _hug_heard(self, kind: str, sender: str | None, text: str | None) -> None:
        """Each step of a hug (pressed, sent, received, returned, delivered): the
        journal, and Home Assistant's `hug` event entity when [mqtt] is there.
        (Home Assistant is built after the hugs, once the page's address is known.)"""
        log.info("hug %s%s", kind, f" ({sender})" if sender else "",
                 extra={"PILLOW_HUG": kind})
        if self.mqtt is not None and kind != "received":  # _played() fires that
            self.mqtt.hug(kind, sender, text)

    def _played(self, command, outcome) -> None:
        """A message played: Home Assistant's `received` for each one from someone."""
        if self.mqtt is not None:
            self.mqtt.played(command, outcome)

    def _quiet_changed(self, quiet: bool) -> None:
        q = self.settings.quiet or QuietSettings()
        # max_brightness is absolute; the renderer's cap is a share of [leds] brightness.
        configured = self.settings.leds.brightness
        cap = min(1.0, q.max_brightness / configured) if configured > 0 else 1.0
        self.renderer.limit(cap if quiet else 1.0)
        self.actuators.muted = quiet and not q.actuators
        if quiet or self.pillow.quiet:  # not "over" at a daytime start
            log.info("quiet hours %s", "begin" if quiet else "are over")
        self.pillow.quiet_changed(quiet)

    def _guarded(self, name: str, run):
        """*run* as a thread body that turns the actuators off if it ever fails."""
        def guarded() -> None:
            try:
                run()
            finally:
                if not self._stopping:  # ended while the pillow should be running
                    self.actuators.fault = f"the {name} loop stopped"
                    self.actuators.all_off(self.actuators.fault)
        return guarded

    _stopping = False

    def start(self) -> None:
        for thread in self._threads:
            thread.start()
        self.page.start()
        if self.mqtt is not None:
            self.mqtt.start()
        elif self._mqtt_marker.exists():  # [mqtt] was removed: remove the device too
            from .homeassistant import remove_entities
            username, password = self._mqtt_login
            threads.start("pillowd-mqtt-rm", lambda: remove_entities(
                self._mqtt_marker, username=username, password=password))
        # Only now can the pillow really serve: config, hardware, queue and web are up.
        status = self.pillow.status_line()
        self.notifier.ready(status)
        if self.notifier.enabled:
            # One thread pings (when systemd wants it) and sends each new status
            # line as the state changes, not only at the next ping.
            interval = self.notifier.watchdog_interval()
            self.watchdog = Watchdog(self.notifier,
                                     self.health.watchdog_checks() if interval else {},
                                     interval, status=self.pillow.status_line,
                                     sent_status=status)
            self.pillow.on_state(self.watchdog.changed)
            self.watchdog.start()
        log.info("pillowd %s: %r ready, %s queue %r, status page at %s", __version__,
                 self.settings.pillow.name, self.settings.queue.backend,
                 self.settings.queue.name, self.url)

    def _stop_loops(self) -> None:
        if any(thread.is_alive() for thread in self._threads):
            self.notifier.stopping()
        self._stopping = True
        if self.watchdog is not None:
            self.watchdog.stop()
        for _, _, part in self._loops:
            part.stop()
        deadline = time.monotonic() + SHUTDOWN_GRACE
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Stop every loop, leave the LEDs dark and the outputs off; safe twice."""
        self._stack.close()


def _private(folder: Path) -> None:
    """Closes *folder* to other users: it keeps people's messages (history, outbox,
    the local queue). One made by an older pillowd, or by systemd's StateDirectory=
    (0755 by default), is tightened here."""
    try:
        if folder.stat().st_mode & 0o077:
            folder.chmod(0o700)
            log.info("state_dir %s is now private (0700)", folder)
    except OSError as err:  # not ours to change: the pillow runs on regardless
        log.warning("state_dir %s stays readable by others: %s", folder,
                    err.strerror or err)


class _Watch:
    """The actuators' watchdog as a loop of its own."""

    def __init__(self, actuators: Actuators):
        self.run, self.stop = actuators.watch, actuators.stop


def _announce(daemon: "Daemon", settings: Settings) -> None:
    """After the status page's line: every other address it opens at, and whether
    its controls are on (pillowd.addresses)."""
    from .addresses import controls_line, page_urls

    for other in page_urls(settings.web.host, daemon.url)[1:]:
        print(f"pillowd: also at {other}", flush=True)
    print("pillowd: " + controls_line(daemon.page.token, daemon.policy.token_problem,
                                      settings.web.control_token_env,
                                      daemon.notifier.enabled), flush=True)


def run(settings: Settings, *, demo: bool = False, environ=os.environ) -> int:
    """Runs the daemon in the foreground until SIGTERM or SIGINT."""
    # Before anything is opened or any thread starts (threads inherit the mask):
    # the signals wait, blocked, for sigwait() below. No handler runs, so none
    # can take a lock a thread holds (an Event.set() in a handler can deadlock).
    signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    # Every file and folder the daemon makes is its own alone (0600, 0700): they
    # hold people's names and messages, and a queue file anyone could write to.
    os.umask(0o077)
    threads.name_threads("pillowd")
    try:
        daemon = Daemon(settings, demo=demo, environ=environ)
        try:
            daemon.start()
            url = daemon.url
            token = daemon.page.token  # read from the environment once, at build
            if token and sys.stdout.isatty():
                url += f"?token={token}"  # a person at a terminal, never a log file
            print(f"pillowd: status page at {url}", flush=True)
            _announce(daemon, settings)
            signum = signal.sigwait(signals)
            log.info("stopping (%s)", signal.Signals(signum).name)
        finally:
            daemon.close()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
    return 0
