"""Control characters made visible: text from outside may not drive the terminal.

Pure code. Text from Salesforce, SimZ or a config file may carry control
characters: an ``ESC ] 0 ; ... BEL`` retitles the operator's terminal, a
carriage return or a bidi override hides what precedes or follows it, a
newline forges an output line. :func:`printable` shows C0 and C1 controls,
DEL, the Unicode line and paragraph separators and the bidi controls as
escapes (``\\x1b``, ``\\n``, ``\\u202e``); other text, non-ASCII letters
included, is kept as it is.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_UNSAFE_BUT_NEWLINE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(value: object, *, keep_newlines: bool = False) -> str:
    """``str(value)`` with every control character shown as an escape.

    ``keep_newlines`` leaves plain newlines alone, for text that is multi-line
    by design (a traceback).
    """
    pattern = _UNSAFE_BUT_NEWLINE if keep_newlines else _UNSAFE
    return pattern.sub(_escape, str(value))


#: A cell a spreadsheet would read as a formula: ``=``, ``@``, a tab or carriage return
#: first, or ``+``/``-`` followed by anything but a number.
_FORMULA = re.compile(r"^(?:[=@\t\r]|[+-](?![0-9][0-9 .()-]*$))")


def spreadsheet_safe(value: str) -> str:
    """``value`` for a CSV cell: text a spreadsheet would run as a formula gets a leading
    ``'`` (shown, never run); numbers such as ``+14155550123`` or ``-3.5`` are kept."""
    return "'" + value if _FORMULA.match(value) else value
