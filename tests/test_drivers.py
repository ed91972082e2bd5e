"""Each real LED driver writes exactly the bytes its kernel driver or C library expects."""

import ctypes
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import pytest

from pillowd.errors import PillowError
from pillowd.hardware.base import HardwareError, LedStrip, led_driver_for, read_pi_model
from pillowd.hardware.pio import PioStrip
from pillowd.hardware.ws281x import Ws281xStrip

PIXELS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [1, 2, 3], [200, 100, 50]],
                  dtype=np.uint8)


# Pi 5: the kernel's ws2812-pio driver -------------------------------------------

def kernel_sends(data: bytes, brightness: int = 255) -> np.ndarray:
    """What ws2812-pio-rp1.c puts on the wire for *data*, as (count, 4) RGBW duties."""
    gamma = np.floor(255 * (np.arange(256) / 255) ** (1 / 0.45)).astype(int)
    words = np.frombuffer(data, dtype="<u4")
    channels = np.stack([(words >> s) & 0xFF for s in (0, 8, 16, 24)], axis=1)
    return gamma[channels * brightness // 255]


@pytest.fixture
def leds0(tmp_path):
    path = tmp_path / "leds0"
    path.write_bytes(b"")
    return path


def test_pio_sets_kernel_brightness_to_full_on_open(leds0):
    with PioStrip(5, device=str(leds0)):
        assert leds0.read_bytes() == b"\xff"


def test_pio_writes_four_bytes_per_led_red_green_blue_white(leds0):
    with PioStrip(5, device=str(leds0)) as strip:
        strip.show(PIXELS)
        data = leds0.read_bytes()
    assert len(data) == 5 * 4
    assert data[:4] == bytes([255, 0, 0, 0])
    assert data[4:8] == bytes([0, 255, 0, 0])
    assert data[8:12] == bytes([0, 0, 255, 0])
    assert data[3::4] == bytes(5)


def test_pio_undoes_the_kernels_gamma_so_the_wire_gets_our_duties(leds0):
    every = np.arange(256, dtype=np.uint8).repeat(3).reshape(256, 3)
    with PioStrip(256, device=str(leds0)) as strip:
        strip.show(every)
        sent = kernel_sends(leds0.read_bytes())
    gamma_values = np.unique(kernel_sends(bytes(np.arange(256, dtype=np.uint8).repeat(4))))
    for wanted, got in zip(every[:, 0], sent[:, 0]):
        # never above what was asked (the current estimate holds) and the
        # closest the kernel's table can do
        assert got == gamma_values[gamma_values <= wanted].max()
    assert sent[:, 3].max() == 0


def test_pio_overwrites_from_the_first_led_every_frame(leds0):
    with PioStrip(5, device=str(leds0)) as strip:
        strip.show(PIXELS)
        first = leds0.read_bytes()
        strip.show(PIXELS[::-1].copy())
        second = leds0.read_bytes()
    assert len(second) == 20
    assert second[:4] == first[16:] and second[16:] == first[:4]


def test_pio_close_turns_leds_off_and_is_safe_twice(leds0):
    strip = PioStrip(5, device=str(leds0))
    strip.show(PIXELS)
    strip.close()
    strip.close()
    assert leds0.read_bytes() == bytes(20)
    with pytest.raises(HardwareError):
        strip.show(PIXELS)


def test_pio_without_the_overlay_says_what_to_add(tmp_path):
    with pytest.raises(HardwareError, match="dtoverlay=ws2812-pio") as info:
        PioStrip(5, device=str(tmp_path / "nope"))
    assert isinstance(info.value, PillowError) and isinstance(info.value, OSError)


# Pi 1-4 and Zero: rpi_ws281x, stubbed at its SWIG binding ----------------------

class FakeBinding(types.ModuleType):
    """The few _rpi_ws281x calls the driver makes, over a real C-sized LED buffer."""

    WS2811_STRIP_GRB = 0x00081000
    WS2811_STRIP_RGB = 0x00100800
    SK6812_STRIP_GRBW = 0x18081000

    def __init__(self, *, init_result=0, render_result=0, pointer_converts=True):
        super().__init__("_rpi_ws281x")
        self.init_result, self.render_result = init_result, render_result
        self.pointer_converts = pointer_converts
        self.rendered, self.calls = [], []

    def new_ws2811_t(self):
        self.calls.append("new")
        return types.SimpleNamespace(channels=[types.SimpleNamespace(), types.SimpleNamespace()])

    def ws2811_channel_get(self, leds, n):
        return leds.channels[n]

    def __getattr__(self, name):
        # ws2811_channel_t_<field>_set and ws2811_t_<field>_set store the field
        for prefix in ("ws2811_channel_t_", "ws2811_t_"):
            if name.startswith(prefix) and name.endswith("_set"):
                field = name[len(prefix):-4]
                return lambda obj, value: setattr(obj, field, value)
        raise AttributeError(name)

    def ws2811_init(self, leds):
        self.calls.append("init")
        for channel in leds.channels:
            channel.leds = (ctypes.c_uint32 * getattr(channel, "count", 0))()
        return self.init_result

    def ws2811_channel_t_leds_get(self, channel):
        address = ctypes.addressof(channel.leds)
        return types.SimpleNamespace() if not self.pointer_converts else \
            type("SwigPyObject", (), {"__int__": lambda self: address})()

    def ws2811_led_set(self, channel, n, value):
        channel.leds[n] = value
        return 0

    def ws2811_render(self, leds):
        self.rendered.append([list(c.leds) for c in leds.channels])
        return self.render_result

    def ws2811_get_return_t_str(self, result):
        return {-1: "Generic failure", -5: "Failed to mmap"}[result]

    def ws2811_fini(self, leds):
        self.calls.append("fini")

    def delete_ws2811_t(self, leds):
        self.calls.append("delete")


@pytest.fixture
def binding(monkeypatch):
    fake = FakeBinding()
    monkeypatch.setitem(sys.modules, "_rpi_ws281x", fake)
    return fake


def rgb_words(pixels):
    return [(int(r) << 16) | (int(g) << 8) | int(b) for r, g, b in pixels]


def test_ws281x_sets_up_one_channel_at_full_library_brightness(binding):
    with Ws281xStrip(5, pin=18, dma=10, freq=800_000) as strip:
        leds = strip._leds
        used, unused = leds.channels
        assert (used.count, used.gpionum, used.invert, used.brightness) == (5, 18, 0, 255)
        assert used.strip_type == FakeBinding.WS2811_STRIP_GRB
        assert (unused.count, unused.gpionum) == (0, 0)
        assert (leds.freq, leds.dmanum) == (800_000, 10)


def test_ws281x_uses_pwm_channel_1_for_gpio_13_and_rgbw_types(binding):
    with Ws281xStrip(5, pin=13, strip_type="grbw") as strip:
        assert strip._leds.channels[1].gpionum == 13
        assert strip._leds.channels[1].strip_type == FakeBinding.SK6812_STRIP_GRBW


@pytest.mark.parametrize("pointer_converts", [True, False])
def test_ws281x_hands_the_library_0x00rrggbb_per_led(monkeypatch, pointer_converts):
    fake = FakeBinding(pointer_converts=pointer_converts)
    monkeypatch.setitem(sys.modules, "_rpi_ws281x", fake)
    with Ws281xStrip(5) as strip:
        strip.show(PIXELS)
        assert fake.rendered[-1][0] == rgb_words(PIXELS)
    assert fake.rendered[-1][0] == [0] * 5


def test_ws281x_close_turns_off_frees_once_and_is_safe_twice(binding):
    strip = Ws281xStrip(5)
    strip.show(PIXELS)
    strip.close()
    strip.close()
    assert binding.calls == ["new", "init", "fini", "delete"]
    assert binding.rendered[-1][0] == [0] * 5
    with pytest.raises(HardwareError):
        strip.show(PIXELS)


def test_ws281x_failures_become_hardware_errors(monkeypatch):
    monkeypatch.setitem(sys.modules, "_rpi_ws281x", FakeBinding(init_result=-5))
    with pytest.raises(HardwareError, match="Failed to mmap.*root"):
        Ws281xStrip(5, pin=18)
    monkeypatch.setitem(sys.modules, "_rpi_ws281x", FakeBinding(render_result=-1))
    strip = Ws281xStrip(5)
    with pytest.raises(HardwareError, match="Generic failure"):
        strip.show(PIXELS)


def test_ws281x_rejects_pins_and_strip_types_it_cannot_drive(binding):
    with pytest.raises(HardwareError, match="GPIO 4"):
        Ws281xStrip(5, pin=4)
    with pytest.raises(HardwareError, match="strip_type"):
        Ws281xStrip(5, strip_type="RGBX")


def test_ws281x_without_the_library_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "_rpi_ws281x", None)
    with pytest.raises(HardwareError, match="pip install rpi-ws281x"):
        Ws281xStrip(5)


# Choosing a driver ---------------------------------------------------------------

@pytest.mark.parametrize("model, driver", [
    ("Raspberry Pi 5 Model B Rev 1.0", "pio"),
    ("Raspberry Pi Compute Module 5 Rev 1.0", "pio"),
    ("Raspberry Pi 500 Rev 1.0", "pio"),
    ("Raspberry Pi 4 Model B Rev 1.4", "ws281x"),
    ("Raspberry Pi Zero 2 W Rev 1.0", "ws281x"),
    ("Raspberry Pi Model B Rev 2", "ws281x"),
    ("", "mock"),
])
def test_led_driver_for_each_board(model, driver):
    assert led_driver_for(model) == driver


def test_read_pi_model_strips_the_nul_and_is_empty_off_a_pi(tmp_path):
    (tmp_path / "model").write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\0")
    assert read_pi_model(tmp_path / "model") == "Raspberry Pi 4 Model B Rev 1.4"
    assert read_pi_model(tmp_path / "absent") == ""


def test_led_strip_off_shows_black():
    class Recorder(LedStrip):
        count = 3
        shown = None

        def show(self, pixels):
            self.shown = pixels

    with Recorder() as strip:
        strip.off()
    assert strip.shown.tolist() == [[0, 0, 0]] * 3


def test_pio_without_the_overlay_names_the_line_to_add(tmp_path):
    with pytest.raises(HardwareError) as info:
        PioStrip(60, device=str(tmp_path / "leds0"), pin=10)
    message = str(info.value)
    assert "ws2812-pio overlay is not loaded" in message
    assert "'dtoverlay=ws2812-pio,gpio=10,num_leds=60' to /boot/firmware/config.txt" in message
    assert "\n" not in message


def test_pio_device_not_writable_names_the_group_and_the_udev_rule(tmp_path):
    # The tests run as root, who may write anything: open the device as nobody,
    # in a real process, as the unprivileged service user would. The kernel makes
    # /dev/leds0 root:root 0600 until the udev rule gives it to gpio.
    shared = Path(tempfile.mkdtemp(prefix="pillowd-leds-"))
    try:
        shared.chmod(0o755)
        device = shared / "leds0"
        device.write_bytes(b"")
        device.chmod(0o600)
        code = ("from pillowd.hardware.pio import PioStrip\n"
                f"PioStrip(60, device={str(device)!r})\n")
        result = subprocess.run(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
             sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
            cwd="/")
    finally:
        shutil.rmtree(shared)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("pillowd.hardware.base.HardwareError: cannot write ")
    assert "(root:root mode 0600) as nobody (groups: nogroup)" in last
    assert "group gpio" in last and "/etc/udev/rules.d/60-pillowd-leds.rules" in last
