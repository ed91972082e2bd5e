"""Text from outside shown safely: control and format characters escaped, never raw."""

# A message's id, sender or text reaches the journal, `systemctl status` and a
# terminal (`pillowd poison list`). Raw, a newline there forges a log line, an ESC
# sequence clears the owner's screen or retitles the window, a bidi override turns
# a line around. Escaped, each such character shows as \n, \x1b, \u202e: readable,
# and inert everywhere.

from __future__ import annotations

import logging
import unicodedata

# Unicode's control (Cc), format (Cf), line and paragraph separator (Zl, Zp), and
# the lone surrogates (Cs) no UTF-8 output can hold.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def unsafe(char: str) -> bool:
    """Whether *char* is a control or format character (escaped when shown)."""
    return unicodedata.category(char) in UNSAFE_CATEGORIES


def escape(text, keep: str = "") -> str:
    """*text* (anything: str() is taken) with every unsafe character but those in
    *keep* written as a Python escape; plain text comes back unchanged."""
    text = str(text)
    if text.isprintable():
        # The common case, in one pass of C code: str.isprintable() is False for
        # every unsafe category (and a few safe ones, left to the loop below).
        return text
    out = []
    for char in text:
        if char in keep or not unsafe(char):
            out.append(char)
        elif char in _NAMED:
            out.append(_NAMED[char])
        elif ord(char) <= 0xff:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xffff:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return "".join(out)


class EscapingFormatter(logging.Formatter):
    """A log formatter whose every line is one record: the message's control
    characters escaped (a newline in a message id cannot start a forged line);
    a traceback keeps its own line breaks, and only those."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        return super().formatMessage(record)

    def formatException(self, ei) -> str:
        return escape(super().formatException(ei), keep="\n")

    def formatStack(self, stack_info: str) -> str:
        return escape(super().formatStack(stack_info), keep="\n")
