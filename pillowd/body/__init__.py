"""The pillow's body: the parts that move and warm (vibration, servo, warmer) and their patterns.

`actuators` drives the fitted parts from the playing scene within their limits
(mute, quiet, duty cycle, a watchdog that turns everything off); `patterns` are
the named vibration patterns a scene can ask for. gpiozero is the only way to a pin.

May import: hardware (its pins' errors), settings, errors, seams (floors below 5).
Must not import: the LEDs, the page, hugs, the player or daemon: the actuators
follow the scene they are handed (`Timeline.on_change`), they never ask for it.

The daemon builds the body with build_body().
"""
