"""Wires the pillow together from its settings: the one place that knows config,
environment, signals and systemd."""

from __future__ import annotations

import logging
import os
import random
import signal
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from uuid import uuid4

from . import __version__, body, hardware, hugs, leds, page
from .body.squeeze import SqueezeSensor, open_adc
from .consumer import Consumer
from .errors import PillowError
from .hardware import open_hardware
from .history import History
from .leds.cue import Cue, CueLook, Facts
from .messages import decode, encode, parse_color
from .page.addresses import page_url_for_others
from .pillow import Controls, Health, Loop, Pillow
from .player import Player
from .queues.backoff import Backoff
from .queues.configured import open_queues, partner_names
from .quiet import QuietHours
from .seams import threads
from .seams.credentials import credential
from .seams.systemd import SystemdNotifier, Watchdog
from .settings import ButtonSettings, QuietSettings, Settings

log = logging.getLogger("pillowd")

# Seconds the threads get to finish after a stop, within systemd's patience.
SHUTDOWN_GRACE = 1.5
# The actuator loop's period, and how long it may go without a tick before the
# watchdog turns every actuator off.
ACTUATOR_PERIOD = 0.02
ACTUATOR_STALL_SECONDS = 0.5


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
        self.squeeze_chip = None  # the mock squeeze sensor's chip, on mock hardware
        try:
            self._build(settings, demo, environ)
        except BaseException:
            self._stack.close()
            raise

    def _build(self, settings: Settings, demo: bool, environ) -> None:
        """Every part, in order: each feature builds its own beside it (hardware/,
        leds/, hugs/, body/, page/, homeassistant/); the core's are built here."""
        closing = self._stack.callback
        state_dir = _state_dir(settings.pillow.state_dir)
        q, button = settings.queue, settings.button or ButtonSettings()
        trouble: list[str] = []   # hardware that could not start: the pillow runs on
        self._build_store(settings, state_dir, environ)
        self.hardware = hardware.open_or_mock(settings.hardware.backend, settings.leds,
                                              state_dir, trouble, opener=open_hardware)
        closing(self.hardware.close)
        self.timeline, self.renderer = leds.build_lights(
            settings.leds, settings.scenes["idle"], self.hardware.strip,
            hold_scale=button.hold_scale)
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
        backoff = Backoff(q.poll_min_seconds, q.poll_max_seconds)
        self.outbox, self.conversation = hugs.build_conversation(
            settings, state_dir, self.queues.outbound, self.queues.family,
            partner_names(settings), on_section=self.pillow.section_changed,
            quiet=lambda: bool(self.quiet_hours.quiet), hurry=backoff.hurry,
            on_hug=self._hug_heard, closing=closing)
        self._build_player(settings, backoff)

        self.actuators = body.build_body(settings.actuators, self.timeline,
                                         self.hardware.pin_factory,
                                         on_values=self.pillow.actuators_changed,
                                         trouble=trouble)
        closing(self.actuators.close)
        if self.actuators.parts:  # none fitted: no loop at all
            self._loops += [("actuators", "pillowd-actuate", self.actuators),
                            ("watchdog", "pillowd-act-dog", body.Watch(self.actuators))]
        self.quiet_hours.check()  # before any loop runs: no bright first second
        if quiet is not None:
            self._loops.append(("quiet", "pillowd-quiet", self.quiet_hours))
        if self.outbox is not None:
            self._loops.append(("outbox", "pillowd-outbox", self.outbox))

        self.controls = Controls(settings=settings, player=self.player,
                                 renderer=self.renderer, timeline=self.timeline,
                                 quiet=self.quiet_hours, on_change=self.pillow.changed)
        self.hugs, self.button = hugs.build_press(
            settings, self.conversation,
            play=lambda data, source: self.controls.play(data, source=source),
            pin_factory=self.hardware.pin_factory, trouble=trouble, closing=closing)
        self.squeeze = None   # [squeeze]: the pressure sensor, a press like the button's
        if settings.squeeze is not None:
            self.squeeze = self._open_squeeze(trouble)
            if self.squeeze is not None:
                closing(self.squeeze.close)
                self._loops.append(("squeeze", "pillowd-squeeze", self.squeeze))
        self.cue = self._build_cue()
        if demo:
            local = q.backend == "local"
            self._loops.append(("demo", "pillowd-demo", Demo(
                settings, put=self.queues.main.put if local else None,
                play=None if local else self.controls.play)))

        self.policy, self.broadcaster = page.build_live(
            settings.web, control_token(settings, environ), self.pillow, self.renderer,
            fix=lambda: token_fix(settings, environ),
            # The page's hug button says "Hug back" within this of a partner's hug.
            facts={"reply_window_seconds": button.reply_window_seconds,
                   "hug_scene": button.scene})
        self._loops += [("state push", "pillowd-state", self.broadcaster.states),
                        ("frame push", "pillowd-frames", self.broadcaster.frames)]
        self._build_health(settings, trouble)
        self.page, self.url = page.build_page(
            settings.web, self.pillow, controls=self.controls, hugs=self.hugs,
            health=self.health, broadcaster=self.broadcaster, policy=self.policy,
            consumer=self.consumer, renderer=self.renderer, mqtt=lambda: self.mqtt,
            closing=closing)
        # Home Assistant last: it needs the page's address (paho is imported only here).
        from . import homeassistant

        self.mqtt, self._mqtt_marker, self._mqtt_login = homeassistant.build_home_assistant(
            settings.mqtt, state_dir, environ, pillow_name=settings.pillow.name,
            version=__version__, page_url=page_url_for_others(settings.web.host, self.url),
            scenes=list(settings.scenes), controls=self.controls, pillow=self.pillow,
            hugs=self.hugs, hardware_backend=settings.hardware.backend)
        if self.mqtt is not None:
            closing(self.mqtt.close)
        self.notifier = SystemdNotifier(environ)
        # Last in, so first out: the loops stop before anything they use is closed.
        closing(self._stop_loops)

    def _build_store(self, settings: Settings, state_dir: Path, environ) -> None:
        """The history and the queues (with the family key)."""
        self.history = History(state_dir / "history.sqlite3")
        self._stack.callback(self.history.close)
        self.queues = open_queues(settings, environ, family=True)
        self._stack.callback(self.queues.close)
        if self.queues.outbound and self.queues.family is None:
            log.warning("no family key beside the pillow's tokens: partners' hugs play "
                        "as ordinary messages; run pillowd pair again (docs/pairing.md)")

    def _build_player(self, settings: Settings, backoff: Backoff) -> None:
        """The Player, and the Consumer that feeds it from the queue."""
        q, family = settings.queue, self.queues.family
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

    def _build_health(self, settings: Settings, trouble: list[str]) -> None:
        """A thread for each loop, and Health watching them."""
        q = settings.queue
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

    def _open_squeeze(self, trouble: list[str]) -> SqueezeSensor | None:
        """The squeeze sensor; None, and the reason in *trouble*, when it cannot open
        (the button and /api/hug work on without it)."""
        s = self.settings.squeeze
        where = (f"{s.chip} channel {s.channel} on GPIO {s.clock_pin}/{s.mosi_pin}/"
                 f"{s.miso_pin}/{s.select_pin} (SCLK/MOSI/MISO/CS)")
        try:
            adc, chip = open_adc(s, self.hardware.pin_factory, mock=self.hardware.mock)
        except Exception as err:  # gpiozero's errors: pin busy, no such pin, ...
            why = f"cannot use the squeeze sensor, {where}: {err}"
            log.error("%s; running without it (the button and /api/hug still work)", why)
            trouble.append(why)
            return None
        self.squeeze_chip = chip  # mock hardware: the chip a test squeezes

        def close() -> None:
            adc.close()
            if chip is not None:
                chip.close()
        return SqueezeSensor(lambda: adc.value, threshold=s.threshold,
                             on_squeeze=self._squeezed, close=close)

    def _build_cue(self) -> Cue | None:
        """The trouble cue ([cue]): its thread waits on the snapshot's changes."""
        c = self.settings.cue
        self.pillow.section_changed("cue", None)
        if not c.enabled:
            return None
        cue = Cue(facts=self._cue_facts, show=self.renderer.show_cue,
                  on_cue=lambda trouble: self.pillow.section_changed("cue", trouble),
                  look=CueLook(parse_color(c.color), c.every_seconds),
                  offline_seconds=c.offline_seconds)
        self.pillow.on_state(cue.changed)
        self._loops.append(("cue", "pillowd-cue", cue))
        return cue

    def _cue_facts(self) -> Facts:
        queue, outbox = self.pillow.queue, self.pillow.extra.get("outbox") or {}
        # Offline with a reason: before its first answer the queue is only connecting.
        return Facts(offline=not queue["online"] and queue["reason"] is not None,
                     partner_away=bool(outbox.get("away")), quiet=self.pillow.quiet)

    def _squeezed(self, hold: float, strength: float) -> None:
        """A squeeze over the threshold: a press, carrying how long and how hard."""
        self.hugs.pressed("squeeze", hold=hold, strength=strength)

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


def _state_dir(path: str) -> Path:
    """The state folder, made when missing and private to the pillow."""
    state_dir = Path(path)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PillowError(f"cannot create state_dir {state_dir}: "
                          f"{err.strerror or err}") from None
    _private(state_dir)
    return state_dir


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


def _announce(daemon: "Daemon", settings: Settings) -> None:
    """After the status page's line: every other address it opens at, and whether
    its controls are on (pillowd.page.addresses)."""
    from .page.addresses import controls_line, page_urls

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
