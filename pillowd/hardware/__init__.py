"""Opens the pillow's hardware: real parts on a Raspberry Pi, mock ones elsewhere.

`base` is the contract (LedStrip, HardwareError), `mock`, `ws281x` and `pio` its
LED drivers, `pins` what the Pi's header offers a strip, `mockadc` the mock
MCP3008 the squeeze sensor reads on mock hardware; GPIO for everything else is
gpiozero's pin factory, opened on first use.

May import: settings, errors, seams (floors below 4).
Must not import: the LEDs' effects or renderer, the body, or anything above: the
renderer hands the strip finished bytes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .base import HardwareError, LedStrip, led_driver_for, read_pi_model
from .mock import MockStrip

if TYPE_CHECKING:
    from gpiozero.pins import Factory

log = logging.getLogger(__name__)

__all__ = ["Hardware", "HardwareError", "LedStrip", "MockStrip", "open_hardware",
           "open_mock"]


@dataclass
class Hardware:
    """The strip, and the GPIO pins the pillow's other parts are built on.

    The pins are opened on first use: a pillow with only LEDs never loads gpiozero
    nor needs a GPIO library (nor starts a second later for it).
    """

    strip: LedStrip
    open_pins: Callable[[], "Factory"]
    description: str
    mock: bool
    record_to: Path | None = None  # mock only: where close() leaves the final state
    _pins: "Factory | None" = field(default=None, init=False, repr=False)

    @property
    def pin_factory(self) -> "Factory":
        """gpiozero's pin factory; HardwareError when the GPIO cannot be opened."""
        if self._pins is None:
            self._pins = self.open_pins()
        return self._pins

    def close(self) -> None:
        """The strip dark and the pins let go; safe twice. The devices built on the
        pins are closed first, by whoever built them."""
        try:
            self.strip.close()
        except Exception as err:  # a failing strip must not keep the pins held
            log.warning("could not turn the LEDs off and close them: %s", err)
        if self.mock and self.record_to is not None:
            from .mock import record
            record(self._pins, self.strip, self.record_to)
            self.record_to = None
        if self._pins is not None:
            self._pins.close()
            self._pins = None


def open_mock(count: int, record_to: Path | None = None) -> Hardware:
    """An in-memory strip and gpiozero's mock pins; *record_to* gets their final state."""
    def mock_pins():
        from gpiozero.pins.mock import MockFactory, MockPWMPin
        return MockFactory(pin_class=MockPWMPin)
    return Hardware(MockStrip(count), mock_pins, "mock hardware", mock=True,
                    record_to=record_to)


def open_hardware(backend: str, leds, record_to: Path | None = None) -> Hardware:
    """The hardware for *backend* ("auto", "mock" or "pi") and the [leds] settings."""
    model = read_pi_model()
    is_pi = led_driver_for(model) != "mock"
    if backend == "auto":
        backend = "pi" if is_pi else "mock"
        log.info("hardware backend auto: %s", f"real parts on {model}" if is_pi
                 else "mock hardware (this is not a Raspberry Pi)")
    if backend == "mock":
        return open_mock(leds.count, record_to)
    if not is_pi:
        raise HardwareError("hardware backend 'pi' needs a Raspberry Pi; "
                            "use backend = \"mock\" or \"auto\" elsewhere")
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
    log.info("LED driver %s on %s", driver, model)
    return Hardware(strip, _real_pins, f"{driver} LEDs on {model}", mock=False)


def _real_pins() -> "Factory":
    try:
        from gpiozero import Device
        return Device._default_pin_factory()
    except Exception as err:
        raise HardwareError(f"cannot open the GPIO pins: {err}") from None


def open_or_mock(backend: str, leds, state_dir: Path, trouble: list[str], *,
                 opener: Callable[..., Hardware] = open_hardware) -> Hardware:
    """The configured hardware (*opener*: open_hardware); mock parts, and the reason
    added to *trouble*, when it cannot start."""
    record_to = state_dir / "mock-hardware.json"  # written at close, all off
    try:
        return opener(backend, leds, record_to)
    except HardwareError as err:
        # Restarting would not fix it: keep the queue, page and history going,
        # and say why the LEDs are dark (page, snapshot, /healthz, journal).
        log.error("%s; running without the LEDs and GPIO until that is fixed", err)
        trouble.append(f"LEDs: {err}")
        return open_mock(leds.count)
