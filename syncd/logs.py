"""One structlog processor chain for syncd's own logs and every stdlib logger.

* JSON lines when stdout is not a terminal, console rendering on a terminal,
  or as ``--log-format``/``observability.log_format`` says;
* alembic, sqlalchemy, httpx, apscheduler and every other stdlib logger go
  through the same chain via :class:`structlog.stdlib.ProcessorFormatter`;
* the loggers that would print rows, SQL parameters or HTTP bodies and
  headers (SQLAlchemy, httpx, httpcore, urllib3, simple-salesforce) log
  warnings and errors only, at every level, debug included: those lines
  carry phone numbers, names and emails;
* on the console, control characters in values are shown as escapes
  (:func:`syncd.text.printable`; JSON lines escape them already);
* :class:`Redactor` runs last before rendering: values of keys that look like
  credentials are masked, and every configured secret value is cut out of
  every string, whichever logger printed it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from syncd.text import printable

REDACTED = "[REDACTED]"
SENSITIVE_KEY = re.compile(
    r"key|token|password|passwd|secret|authorization|session_id|cookie", re.I
)

#: Stdlib loggers that are chatty at INFO; they log at WARNING unless syncd runs at DEBUG.
_NOISY = ("alembic", "apscheduler", "zeep")
#: Stdlib loggers whose INFO/DEBUG lines carry personal data (SQL parameters, result
#: rows, request and response bodies): WARNING at every level.
_PERSONAL_DATA = ("sqlalchemy", "httpx", "httpcore", "urllib3", "hpack", "simple_salesforce")


def written_forms(secret: str) -> set[str]:
    """``secret`` as it may appear in a line: itself, and escaped by repr() or JSON.

    A secret with a control, quote or non-ASCII character changes when an error
    message quotes it (``'abc\\n'``, ``b'abc\\n'``) or a JSON renderer escapes it; each of those
    spellings must be cut too, also a JSON-escaped repr (a repr inside a JSON line).
    """
    forms = {
        secret,
        repr(secret)[1:-1],
        repr(secret.encode("utf-8"))[2:-1],  # b'...', as HTTP clients quote header bytes
        secret.encode("unicode_escape").decode("ascii"),
    }
    for form in list(forms):
        forms.add(json.dumps(form)[1:-1])
        forms.add(json.dumps(form, ensure_ascii=False)[1:-1])
    return forms


class Redactor:
    """A structlog processor that masks credentials and configured secret values."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._pattern: re.Pattern[str] | None = None
        self.set_secrets(secrets)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is cut whole.
        forms = {form for secret in secrets if secret for form in written_forms(secret)}
        values = sorted({s for s in forms if len(s) >= 4}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._pattern.sub(REDACTED, value) if self._pattern else value
        if isinstance(value, dict):
            return {k: self._value(k, v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._scrub(item) for item in value]
        if isinstance(value, int | float | bool) or value is None:
            return value
        return self._scrub(str(value))

    def _value(self, key: Any, value: Any) -> Any:
        if (
            isinstance(key, str)
            and SENSITIVE_KEY.search(key)
            and value not in (None, "")
            and not isinstance(value, int | float | bool | dict | list)
        ):
            return REDACTED
        return self._scrub(value)

    def scrub_rendered(self, _logger: WrappedLogger, _name: str, rendered: Any) -> Any:
        """Cut secrets out of the final line too (runs after the renderer).

        The event-dict pass above is the main defence (JSON escaping could hide
        a secret from a text search); this one catches anything a renderer adds.
        """
        return self._scrub(rendered) if isinstance(rendered, str) else rendered

    def __call__(self, _logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
        for key in list(event_dict):
            if key.startswith("_"):  # structlog's own bookkeeping (_record, _from_structlog)
                continue
            event_dict[key] = self._value(key, event_dict[key])
        return event_dict


_redactor = Redactor()


def _escape_controls(_l: WrappedLogger, _n: str, event_dict: EventDict) -> EventDict:
    """Show control characters in string values as escapes (console rendering only)."""
    for key, value in event_dict.items():
        if isinstance(value, str) and not key.startswith("_"):
            event_dict[key] = printable(value, keep_newlines=key == "exception")
    return event_dict


def _drop_color_message(_l: WrappedLogger, _n: str, event_dict: EventDict) -> EventDict:
    event_dict.pop("color_message", None)
    return event_dict


def configure_logging(
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    stream: TextIO | None = None,
    secrets: Iterable[str] = (),
) -> None:
    """Configure structlog and the stdlib root logger; safe to call again."""
    out = stream or sys.stdout
    _redactor.set_secrets(secrets)
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_color_message,
    ]
    renderer: Processor = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if use_console
        else structlog.processors.JSONRenderer()
    )
    # Tracebacks become text *before* the redactor, in both formats: an
    # exception message may carry a secret, and a renderer that formats the
    # exception itself would print it after redaction.
    final: list[Processor] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        structlog.processors.format_exc_info,
        _redactor,
        *([_escape_controls] if use_console else []),
        renderer,
        _redactor.scrub_rendered,
    ]
    formatter = structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=final)

    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = getattr(logging, level.upper())
    root.setLevel(numeric)
    for name in _NOISY:
        logging.getLogger(name).setLevel(numeric if numeric <= logging.DEBUG else logging.WARNING)
    for name in _PERSONAL_DATA:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str | None = None, **initial: Any) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger.bind(**initial) if initial else logger


def bind_context(**values: Any) -> None:
    """Clear the context variables and bind ``values``: one unit of work's log context."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(**values)
