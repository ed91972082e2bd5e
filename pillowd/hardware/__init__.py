"""Opens the pillow's hardware: real parts on a Raspberry Pi, mock ones elsewhere."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from gpiozero.pins import Factory

from .base import HardwareError, LedStrip
from .mock import MockStrip

log = logging.getLogger(__name__)

__all__ = ["Hardware", "HardwareError", "LedStrip", "MockStrip", "is_raspberry_pi", "open_hardware"]


def is_raspberry_pi(model_file: str = "/proc/device-tree/model") -> str | None:
    """The Pi's model string, or None off a Pi."""
    try:
        model = Path(model_file).read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return None
    return model if model.startswith("Raspberry Pi") else None


@dataclass
class Hardware:
    """The strip and the GPIO pin factory the pillow's devices are built on."""

    strip: LedStrip
    pin_factory: Factory
    description: str
    mock: bool
    closers: list = field(default_factory=list)

    def close(self) -> None:
        """Everything dark and still; safe twice."""
        for close in reversed(self.closers):
            try:
                close()
            except Exception:  # keep turning the rest off
                log.exception("while closing hardware")
        self.closers.clear()
        self.strip.close()
        self.pin_factory.close()


def open_hardware(backend: str, led_count: int) -> Hardware:
    """The hardware for *backend* ("auto", "mock" or "pi")."""
    model = is_raspberry_pi()
    if backend == "auto":
        backend = "pi" if model else "mock"
        log.info("hardware backend auto: %s", f"real parts on {model}" if model
                 else "mock hardware (this is not a Raspberry Pi)")
    if backend == "mock":
        from gpiozero.pins.mock import MockFactory, MockPWMPin
        return Hardware(MockStrip(led_count), MockFactory(pin_class=MockPWMPin),
                        "mock hardware", mock=True)
    if not model:
        raise HardwareError("hardware backend 'pi' needs a Raspberry Pi; "
                            "use backend = \"mock\" or \"auto\" elsewhere")
    raise HardwareError("no real LED driver is built in yet; use backend = \"mock\"")
