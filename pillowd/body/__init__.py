"""The pillow's body: the parts that move and warm (vibration, servo, warmer) and their patterns.

`parts` are the vibration motor, servo and warmer, each within its limits (on
time, duty cycle, cool-down); `actuators` drives the fitted parts from the
playing scene (mute, quiet, a watchdog that turns everything off); `patterns` are
the named vibration patterns a scene can ask for; `squeeze` reads the pressure
sensor (an ADC) as presses with a hold and a strength. gpiozero is the only way to a pin.

May import: hardware (its pins' errors), feel (a hug's strength), settings, errors,
seams (floors below 5).
Must not import: the LEDs, the page, hugs, the player or daemon: the actuators
follow the scene they are handed (`Timeline.on_change`), they never ask for it.

The daemon builds the body with build_body().
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
