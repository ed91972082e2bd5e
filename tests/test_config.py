"""config.toml parsing and `pillowd check-config`."""


import pytest

from conftest import ROOT, run_cli
from pillowd.config import ConfigError, load, parse


def problems(text):
    with pytest.raises(ConfigError) as caught:
        parse(text, "test.toml")
    return {(p.key, p.line): p.why for p in caught.value.problems}


def test_the_shipped_config_is_valid_and_documents_every_key():
    settings = load(ROOT / "config.toml")
    assert settings.queue.backend == "local" and settings.hardware.backend == "auto"
    assert settings.poison_name == "pillow-poison"
    text = (ROOT / "config.toml").read_text()
    from dataclasses import fields
    for section in ("pillow", "queue", "hardware", "leds", "web"):
        for f in fields(getattr(settings, section)):
            assert f"\n{f.name} = " in text, f"{section}.{f.name} is not in config.toml"


def test_empty_config_takes_every_default():
    settings = parse("")
    assert settings.pillow.name == "cloud-pillow"
    assert settings.queue.poll_max_seconds == 5.0
    assert settings.leds.count == 60 and settings.web.port == 8080
    assert set(settings.scenes) == {"idle", "hug"}


def test_each_bad_key_is_named_with_its_line_and_why():
    found = problems(
        '[pillow]\n'                      # 1
        'name = "x"\n'                    # 2
        'colour = "red"\n'                # 3 unknown key
        '[queue]\n'                       # 4
        'poll_min_seconds = "fast"\n'     # 5 wrong type
        'max_dequeue_count = 0\n'         # 6 out of range
        'backend = "kafka"\n'             # 7 not a choice
        '[leds]\n'                        # 8
        'brightness = 1.5\n'              # 9 out of range
        '[scenes.hug]\n'                  # 10 and no idle scene
        'effect = "sparkle"\n'            # 11 unknown effect
    )
    assert "unknown key" in found[("pillow.colour", 3)]
    assert "must be a number" in found[("queue.poll_min_seconds", 5)]
    assert "at least 1" in found[("queue.max_dequeue_count", 6)]
    assert "'local', 'azure'" in found[("queue.backend", 7)]
    assert "at most 1" in found[("leds.brightness", 9)]
    assert "unknown effect 'sparkle'" in found[("scenes.hug.effect", 11)]
    assert "must exist" in found[("scenes.idle", 10)]


def test_scene_problems():
    found = problems(
        '[scenes.idle]\n'              # 1
        'effect = "solid"\n'           # 2
        '[scenes.glow]\n'              # 3
        'color = "blue"\n'             # 4
        '[scenes.hug]\n'               # 5
        'effect = "breathe"\n'         # 6
        'speed = 3\n'                  # 7
        '[scenes.cuddle]\n'            # 8
        'aliases = ["IDLE"]\n'         # 9
        '[scenes.nap]\n'               # 10
        'duration = -5\n')             # 11
    assert "is not a colour" in found[("scenes.glow.color", 4)]
    assert "unknown key for effect 'breathe'" in found[("scenes.hug.speed", 7)]
    assert "already names scene 'idle'" in found[("scenes.cuddle.aliases", 9)]
    assert "at least 0" in found[("scenes.nap.duration", 11)]


def test_cross_key_rules_and_toml_syntax():
    found = problems('[queue]\npoll_min_seconds = 9\npoll_max_seconds = 1\n')
    assert "must not exceed queue.poll_max_seconds" in found[("queue.poll_min_seconds", 2)]
    found = problems('[queue]\nname = "Pillow_Queue"\n')
    assert "lowercase" in found[("queue.name", 2)]
    found = problems('[pillow\nname = 1\n')
    assert any(key == "(file)" and "not valid TOML" in why
               for (key, _), why in found.items())


def test_check_config_command(tmp_path):
    good = run_cli("check-config", "--config", str(ROOT / "config.toml"))
    assert "OK" in good.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('[leds]\ncount = -1\n[web]\nport = "http"\n')
    result = run_cli("check-config", "--config", str(bad), check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert f"{bad}:2: leds.count: must be at least 1, not -1" in lines
    assert any(line.startswith(f"{bad}:4: web.port: must be a whole number") for line in lines)
    missing = run_cli("check-config", "--config", str(tmp_path / "nope.toml"), check=False)
    assert missing.returncode == 1 and "no such file" in missing.stderr
    assert "Traceback" not in result.stderr + missing.stderr


def test_config_path_defaults_to_environment_variable(tmp_path):
    import os
    path = tmp_path / "env.toml"
    path.write_text('[pillow]\nname = "from-env"\n')
    env = {**os.environ, "PILLOWD_CONFIG": str(path)}
    assert str(path) in run_cli("check-config", env=env).stdout


def test_bad_usage_exits_2():
    result = run_cli("send", check=False)
    assert result.returncode == 2


def test_a_part_on_the_led_data_pin_is_refused():
    found = problems('[leds]\ndriver = "ws281x"\npin = 18\n'
                     '[actuators.vibration]\npin = 18\n'
                     '[scenes.idle]\neffect = "solid"\n')
    assert found[("actuators.vibration.pin", 5)] == "GPIO18 is already used by leds"
    parse('[leds]\ndriver = "pio"\n[actuators.vibration]\npin = 18\n'
          '[scenes.idle]\neffect = "solid"\n')  # the Pi 5 driver uses no such pin


HARDWARE = ("gpiozero", "rpi_ws281x", "_rpi_ws281x", "lgpio")


def imported_by(module: str) -> set[str]:
    """The top-level modules a fresh interpreter holds after importing *module*."""
    import json
    import subprocess
    import sys
    code = (f"import json, sys, {module}; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                            text=True, check=True)
    return set(json.loads(result.stdout))


def test_the_schema_imports_only_the_standard_library():
    import sys
    outside = {m for m in imported_by("pillowd.settings")
               if m not in sys.stdlib_module_names}
    assert not outside & {*HARDWARE, "numpy"}
    assert {m for m in outside if not m.startswith("_")} == {"pillowd"}, outside


def test_the_loader_imports_no_hardware_library():
    assert not imported_by("pillowd.config") & set(HARDWARE)


def test_the_default_led_pin_is_spi_which_needs_no_root():
    # GPIO 10 (SPI) runs under the unprivileged unit; 18 (PWM) would need root.
    assert parse("").leds.pin == 10


def test_drop_ins_in_config_d_override_the_keys_they_set_in_name_order(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[pillow]\nname = "main"\n[queue]\nname = "pillow"\n'
                      'poll_max_seconds = 7\n[scenes.idle]\neffect = "solid"\n'
                      'color = "#102030"\n')
    assert load(config).pillow.name == "main"  # no config.d: the file alone
    drop = tmp_path / "config.d"
    drop.mkdir()
    (drop / "50-pair.toml").write_text('[pillow]\nname = "alice"\n[queue]\n'
                                       'name = "pillow-alice"\n')
    (drop / "90-local.toml").write_text('[pillow]\nname = "alice-bedroom"\n'
                                        '[scenes.idle]\ncolor = "#000010"\n')
    (drop / "README").write_text("not toml: ignored\n")
    settings = load(config)
    assert settings.pillow.name == "alice-bedroom"          # the last file wins
    assert settings.queue.name == "pillow-alice"            # a key the drop-in sets
    assert settings.queue.poll_max_seconds == 7.0           # one it leaves alone
    assert settings.scenes["idle"].effect == "solid"        # merged table by table
    assert settings.source == str(config)  # sas_file stays relative to the config


def test_check_config_names_the_drop_in_file_and_line_of_a_bad_key(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[leds]\ncount = 30\n')
    drop = tmp_path / "config.d"
    drop.mkdir()
    bad = drop / "50-pair.toml"
    bad.write_text('[pillow]\nname = "alice"\n\n[queue]\npoll_max_seconds = "soon"\n')
    result = run_cli("check-config", "--config", str(config), check=False)
    assert result.returncode == 1
    assert result.stderr.strip().startswith(
        f"{bad}:5: queue.poll_max_seconds: must be a number")
    with pytest.raises(ConfigError) as caught:
        load(config)
    assert f"{bad} line 5: queue.poll_max_seconds" in str(caught.value)
    # A key of the config file itself is still named there, not in the drop-in.
    config.write_text('[leds]\ncount = -1\n')
    bad.write_text('[pillow]\nname = "alice"\n')
    result = run_cli("check-config", "--config", str(config), check=False)
    assert result.stderr.strip() == f"{config}:2: leds.count: must be at least 1, not -1"
    bad.write_text('[pillow\n')
    result = run_cli("check-config", "--config", str(config), check=False)
    assert result.stderr.startswith(f"{bad}:1: (file): not valid TOML")
    assert "Traceback" not in result.stderr


def test_the_family_roster_is_read_and_checked_key_by_key(tmp_path):
    base = (ROOT / "config.toml").read_text()
    roster = ('\n[partners.bob]\nqueue = "pillow-bob"\ncolor = "#3366ff"\n'
              '[partners.carol]\nqueue = "pillow-carol"\n')
    settings = parse(base + roster)
    assert settings.roster == {"bob": "pillow-bob", "carol": "pillow-carol"}
    assert settings.outbound_names == ("pillow-bob", "pillow-carol")   # join checks these
    assert settings.partners["bob"].color == "#3366ff"
    # An older config (outbound_name only): each queue is its own partner.
    # Named as pair named the queues (pillow-bob beside pillow-alice) ...
    older = parse(base.replace('outbound_name = ""', 'outbound_name = "pillow-bob"')
                  .replace('\nname = "pillow"\n', '\nname = "pillow-alice"\n'))
    assert older.roster == {"bob": "pillow-bob"}
    # ... else after the queue itself.
    older = parse(base.replace('outbound_name = ""', 'outbound_name = "hugs-for-bob"'))
    assert older.roster == {"hugs-for-bob": "hugs-for-bob"}
    # A queue outbound_name adds beside the roster never takes a roster partner's
    # name (bob's hugs and receipts stay on bob's queue); it is named after itself.
    both = parse(base.replace('outbound_name = ""', 'outbound_name = "pillow-bob"')
                 .replace('\nname = "pillow"\n', '\nname = "pillow-alice"\n')
                 + '\n[partners.bob]\nqueue = "family-bob"\n')
    assert both.roster == {"bob": "family-bob", "pillow-bob": "pillow-bob"}

    first = base.count("\n") + 1
    bad = tmp_path / "bad.toml"
    bad.write_text(base + '\n[partners.Bob]\nqueue = "pillow-bob"\n'
                   '[partners.dan]\ncolor = "#112233"\n'
                   '[partners.eve]\nqueue = "pillow-eve"\ncolor = "red"\nqueu = "x"\n'
                   '[partners.fay]\nqueue = "pillow"\n')
    result = run_cli("check-config", "--config", str(bad), check=False)
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert f"{bad}:{first + 1}: partners.Bob: the partner's name must be" in out
    assert f"{bad}:{first + 3}: partners.dan.queue: missing" in out
    assert f"{bad}:{first + 7}: partners.eve.color: must be a colour like" in out
    assert f"{bad}:{first + 8}: partners.eve.queu: unknown key (known: queue, color)" in out
    assert f"{bad}:{first + 10}: partners.fay.queue: must differ from queue.name" in out
