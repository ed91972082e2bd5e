"""Opens the pillow's hardware: real parts on a Raspberry Pi, mock ones elsewhere."""

from __future__ import annotations

import logging
from pathlib import Path
from dataclasses import dataclass, field

from gpiozero.pins import Factory

from .base import HardwareError, LedStrip, led_driver_for, read_pi_model
from .mock import MockStrip

log = logging.getLogger(__name__)

__all__ = ["Hardware", "HardwareError", "LedStrip", "MockStrip", "open_hardware"]


@dataclass
class Hardware:
    """The strip and the GPIO pin factory the pillow's devices are built on."""

    strip: LedStrip
    pin_factory: Factory
    description: str
    mock: bool
    closers: list = field(default_factory=list)
    record_to: Path | None = None  # mock only: where close() leaves the final state

    def close(self) -> None:
        """Everything dark and still; safe twice."""
        for close in reversed(self.closers):
            try:
                close()
            except Exception:  # keep turning the rest off
                log.exception("while closing hardware")
        self.closers.clear()
        self.strip.close()
        if self.mock and self.record_to is not None:
            from .mock import record
            record(self.pin_factory, self.strip, self.record_to)
            self.record_to = None
        self.pin_factory.close()


def open_hardware(backend: str, leds) -> Hardware:
    """The hardware for *backend* ("auto", "mock" or "pi") and the [leds] settings."""
    model = read_pi_model()
    is_pi = led_driver_for(model) != "mock"
    if backend == "auto":
        backend = "pi" if is_pi else "mock"
        log.info("hardware backend auto: %s", f"real parts on {model}" if is_pi
                 else "mock hardware (this is not a Raspberry Pi)")
    if backend == "mock":
        from gpiozero.pins.mock import MockFactory, MockPWMPin
        return Hardware(MockStrip(leds.count), MockFactory(pin_class=MockPWMPin),
                        "mock hardware", mock=True)
    if not is_pi:
        raise HardwareError("hardware backend 'pi' needs a Raspberry Pi; "
                            "use backend = \"mock\" or \"auto\" elsewhere")
    from gpiozero import Device
    driver = leds.driver if leds.driver != "auto" else led_driver_for(model)
    if driver == "ws281x":
        from .ws281x import Ws281xStrip
        strip = Ws281xStrip(leds.count, pin=leds.pin, dma=leds.dma, freq=leds.freq,
                            invert=leds.invert, strip_type=leds.strip_type)
    elif driver == "pio":
        from .pio import PioStrip
        strip = PioStrip(leds.count, device=leds.device, pin=leds.pin)
    else:
        strip = MockStrip(leds.count)
    try:
        factory = Device._default_pin_factory()
    except Exception as err:
        strip.close()
        raise HardwareError(f"cannot open the GPIO pins: {err}") from None
    log.info("LED driver %s on %s", driver, model)
    return Hardware(strip, factory, f"{driver} LEDs on {model}", mock=False)
