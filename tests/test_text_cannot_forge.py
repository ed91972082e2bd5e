"""Text that cannot forge: what a message holds never reaches a log line, a terminal
or `systemctl status` as raw control characters (the issue's examples, for real)."""

import io
import json
import logging

from conftest import wait_for
from pillowd.seams.printable import EscapingFormatter, escape

FORGED_ID = "x\nERROR pillowd: FORGED LOG LINE"
SCREEN = "\x1b[2J\x1b[H\x1b]0;owned\x07"   # clear the screen, home, set the window title


def test_escape_shows_every_control_and_format_character_and_keeps_the_rest():
    assert escape("Grandma 👵 ♥ — «hug»") == "Grandma 👵 ♥ — «hug»"
    assert escape(FORGED_ID) == "x\\nERROR pillowd: FORGED LOG LINE"
    assert escape(SCREEN) == "\\x1b[2J\\x1b[H\\x1b]0;owned\\x07"
    assert escape("\x9b2J \u202egnp \u2028 \u200d \ud800 \U000e0001") == \
        "\\x9b2J \\u202egnp \\u2028 \\u200d \\ud800 \\U000e0001"
    assert escape("line one\nline two", keep="\n") == "line one\nline two"


def test_a_log_record_is_one_line_whatever_its_arguments_hold():
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(EscapingFormatter("%(levelname)s %(name)s: %(message)s"))
    log = logging.getLogger("pillowd.test.forge")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        log.info("message %s applied", FORGED_ID)
        try:
            raise ValueError(f"bad {SCREEN}")
        except ValueError:
            log.exception("decoding %s", "\x1b[31mred")
    finally:
        log.removeHandler(handler)
        log.propagate = True
        log.setLevel(logging.NOTSET)
    lines = out.getvalue().splitlines()
    assert lines[0] == \
        "INFO pillowd.test.forge: message x\\nERROR pillowd: FORGED LOG LINE applied"
    assert not any(line.startswith("ERROR pillowd: FORGED") for line in lines)
    assert "\x1b" not in out.getvalue()
    assert lines[1] == "ERROR pillowd.test.forge: decoding \\x1b[31mred"
    assert lines[2].startswith("Traceback")  # a traceback keeps its own lines
    assert lines[-1] == "ValueError: bad \\x1b[2J\\x1b[H\\x1b]0;owned\\x07"


def test_the_issues_messages_forge_no_log_line_and_poison_list_shows_them_escaped(
        pillow, queues):
    p = pillow()
    found = queues(p.config)
    found.main.put(json.dumps({"scene": "hug", "id": FORGED_ID, "from": "Mallory"}))
    found.main.put(SCREEN)
    found.main.put(json.dumps({"scene": "hug", "from": "Eve\x1b]0;owned\x07"}))
    wait_for(lambda: p.state()["queue"]["rejected"] == 3, message="three rejections")
    reasons = sorted(i["reason"] for i in p.get("/api/history").json()["items"])
    assert "from contains control or format characters (U+001B)" in reasons
    assert "id contains control or format characters (U+000A)" in reasons

    listed = p.cli("poison", "list").stdout
    # The bodies are there to read, inert: no ESC reaches the owner's terminal.
    assert "\x1b" not in listed and "\x07" not in listed
    assert "\\x1b[2J\\x1b[H\\x1b]0;owned\\x07" in listed
    assert not any(line.startswith("ERROR pillowd: FORGED") for line in listed.splitlines())
    p.stop()
    log = "".join(p.output)
    assert not any(line.startswith("ERROR pillowd: FORGED") for line in log.splitlines())
    assert "\x1b" not in log
