"""The pillow's body: the parts that move and warm (vibration, servo, warmer), their patterns, and the squeeze sensor.

`parts` are the vibration motor, servo and warmer, each within its limits (on
time, duty cycle, cool-down); `actuators` drives the fitted parts from the
playing scene (mute, quiet, a watchdog that turns everything off); `patterns` are
the named vibration patterns a scene can ask for; `squeeze` reads the pressure
sensor (an FSR through an MCP3008) and hands each squeeze's hold and strength to
the callback it was given. gpiozero is the only way to a pin.

May import: hardware (its pins' errors), feel (a hug's strength), settings, errors,
seams (floors below 5).
Must not import: the LEDs, the page, hugs, the player or daemon: the actuators
follow the scene they are handed (`Timeline.on_change`), they never ask for it.

The daemon builds the body with build_body() and build_squeeze().
"""

import logging

log = logging.getLogger(__name__)

# The actuator loop's period, and how long it may go without a tick before the
# watchdog turns every actuator off.
PERIOD = 0.02
STALL_SECONDS = 0.5


def build_body(fitted, timeline, pin_factory, *, on_values, trouble: list[str]):
    """The Actuators for the [actuators] settings *fitted*, following *timeline*;
    with none fitted no GPIO is opened, and parts that cannot start are left out
    with the reason added to *trouble*."""
    from ..hardware import HardwareError
    from .parts import ActuatorError, build_parts
    from .actuators import Actuators

    parts = []
    if fitted.vibration is not None or fitted.servo is not None or \
            fitted.warmer is not None:
        try:
            parts = build_parts(fitted, pin_factory, horizon=PERIOD)
        except (ActuatorError, HardwareError) as err:
            log.error("%s; running without the actuators", err)
            trouble.append(f"actuators: {err}")
    return Actuators(parts, timeline, period=PERIOD, stall_seconds=STALL_SECONDS,
                     on_values=on_values)


class Watch:
    """The actuators' watchdog as a loop of its own."""

    def __init__(self, actuators):
        self.run, self.stop = actuators.watch, actuators.stop


def build_squeeze(squeeze, hardware, *, on_squeeze, trouble: list[str]):
    """(the SqueezeSensor, the mock chip on mock hardware or None) for the [squeeze]
    settings, calling *on_squeeze(hold, strength)* for each squeeze; (None, None)
    without [squeeze], or, with the reason added to *trouble*, when the sensor
    cannot open (the button and /api/hug work on without it)."""
    if squeeze is None:
        return None, None
    from .squeeze import SqueezeSensor, open_adc

    s = squeeze
    where = (f"{s.chip} channel {s.channel} on GPIO {s.clock_pin}/{s.mosi_pin}/"
             f"{s.miso_pin}/{s.select_pin} (SCLK/MOSI/MISO/CS)")
    try:
        adc, chip = open_adc(s, hardware.pin_factory, mock=hardware.mock)
    except Exception as err:  # gpiozero's errors: pin busy, no such pin, ...
        why = f"cannot use the squeeze sensor, {where}: {err}"
        log.error("%s; running without it (the button and /api/hug still work)", why)
        trouble.append(why)
        return None, None

    def close() -> None:
        adc.close()
        if chip is not None:
            chip.close()
    return SqueezeSensor(lambda: adc.value, threshold=s.threshold,
                         on_squeeze=on_squeeze, close=close), chip
