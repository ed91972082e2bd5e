"""pillowd: the daemon inside the Huggable Cloud Pillow.

The house, floor by floor. A part imports only parts on lower floors, so each
floor can be read, tested and changed knowing only what is below it (the package
itself, with its version, is under every floor). tests/test_layers.py holds every
import to this table; each package's __init__ says what it holds and what it may
import, and docs/architecture.md says how the parts work together.

  floor  part                    what it holds
  13     __main__, testing/      `python -m pillowd`; a real pillowd, Azurite, mosquitto for tests and benches
  12     cli                     the `pillowd` command: run, send, pair, join, invite, check-config
  11     daemon                  the wiring: builds every part from the settings, starts and stops them
  10     consumer, pillow        the queue loop; the snapshot, health and controls the outside sees
  9      player                  plays one decoded message: records it, announces it, plays its scene
  8      hugs/                   pillows to each other: conversation, outbox, pairing, join, send page
  7      page/, homeassistant/   the status page and all its limits; Home Assistant over MQTT
  6      config                  config.toml and config.d into settings, naming file and line
  5      leds/, body/            effects, scenes, renderer, light, cue; actuators, patterns, squeeze
  4      queues/, hardware/      where messages come from; the LED strip's drivers and pins
  3      messages, feel/         a queue message's words: a command, or why not; how a hug is felt
  2      family, history, quiet  the family key that signs; what happened; the quiet hours
  1      seams/                  where the pillow meets its system: systemd, threads, files, credentials
  0      errors, settings        the base error; the settings' shapes and defaults
"""

__version__ = "0.1.0"
