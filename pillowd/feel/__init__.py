"""How a hug is felt: how long it plays (its hold) and how hard (its strength).

Pure functions of a command's ``hold``, ``strength`` and ``color``, which
`messages` checks: the scene timeline (`leds/`) plays a held hug longer and a soft
one dimmer, the actuators (`body/`) vibrate it softer, and the snapshot and Home
Assistant's ``received`` carry the same fields.

May import: nothing of pillowd's (it is handed the command and the numbers).
Must not import: anything above it: the LEDs and the body both read it, so it
sits below them, beside the message it reads.
"""

from __future__ import annotations

# A soft hug still shows: never below this share of the scene's brightness and
# vibration level (SPEC "Queue messages", strength).
MIN_STRENGTH = 0.2


def felt(strength: float | None) -> float:
    """The share of the scene's brightness and vibration a hug of *strength* plays
    at: the scene's own for none (no sensor), never below MIN_STRENGTH."""
    return 1.0 if strength is None else min(1.0, max(MIN_STRENGTH, strength))


def felt_fields(command) -> dict:
    """The snapshot's ``hold``, ``strength`` and ``color`` of a message, only those
    it had (its colour as it plays: its own, or its partner's from the roster)."""
    fields = {}
    if command.hold is not None:
        fields["hold"] = command.hold
    if command.strength is not None:
        fields["strength"] = command.strength
    if command.color is not None:
        fields["color"] = "#" + "".join(f"{round(c * 255):02x}" for c in command.color)
    return fields


def held_for(duration: float, hold: float | None, scale: float, longest: float) -> float:
    """How long a message held *hold* seconds plays: max(duration, min(hold × scale,
    longest)); *duration* as it is without a hold, or when it is 0 (no end)."""
    if hold is None or not duration:
        return duration
    return max(duration, min(hold * scale, longest))
