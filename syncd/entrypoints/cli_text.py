"""Terminal-safe output for every CLI command.

Everything the CLI prints goes through :func:`syncd.text.printable`, which
shows control characters from outside (vendor error messages, Salesforce
fields, config values) as escapes. Plain newlines are kept only between the
lines of output that is multi-line by design (:func:`echo_lines`). JSON output is ``json.dumps``
with ``ensure_ascii``: every control and every non-ASCII character is a
``\\uXXXX`` escape, and the output stays valid JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import click

from syncd.text import printable

__all__ = ["echo", "echo_json", "echo_lines", "printable", "secho"]


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
