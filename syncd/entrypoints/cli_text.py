"""Terminal-safe output for every CLI command.

Text from outside (vendor error messages, Salesforce fields, config values)
may carry control characters: an ``ESC ] 0 ; ... BEL`` retitles the operator's
terminal, a carriage return or a bidi override hides what precedes or follows
it, a newline forges an output line. Everything the CLI prints goes through
:func:`printable`: C0 and C1 controls, DEL, the Unicode line and paragraph
separators and the bidi controls are shown as escapes (``\\x1b``, ``\\n``,
``\\u202e``). Plain newlines are kept only between the lines of output that
is multi-line by design (:func:`echo_lines`). JSON output is ``json.dumps``
with ``ensure_ascii``: every control and every non-ASCII character is a
``\\uXXXX`` escape, and the output stays valid JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import click

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(value: object) -> str:
    """``str(value)`` with every control character shown as an escape; one line."""
    return _UNSAFE.sub(_escape, str(value))


def echo(message: object = "", *, err: bool = False) -> None:
    """Print one line (its control characters, newlines included, escaped)."""
    click.echo(printable(message), err=err)


def secho(message: object, *, err: bool = False, **style: Any) -> None:
    """:func:`echo` in colour (the style's own escape codes are added after escaping)."""
    click.secho(printable(message), err=err, **style)


def echo_lines(lines: Iterable[object], *, err: bool = False) -> None:
    """Print several lines; each is escaped on its own, then they are joined by newlines."""
    click.echo("\n".join(printable(line) for line in lines), err=err)


def echo_json(data: Any, *, err: bool = False) -> None:
    """Print ``data`` as indented JSON, every non-ASCII character escaped."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=True), err=err)
