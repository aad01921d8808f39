"""What every configuration model shares: the strict base model and the checks.

The domain reads its settings from the config models, so no config module
imports an infrastructure library at import time: the two checks that need one,
a cron expression (APScheduler) and a database URL (SQLAlchemy), go through
:func:`cron_trigger` and :func:`parse_database_url`, which import it when first
called, that is when a configuration is validated.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, ValidationInfo

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger
    from sqlalchemy.engine import URL

SYNC_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
SOBJECT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def cron_trigger(cron: str, timezone: str) -> CronTrigger:
    """APScheduler's trigger for a crontab (APScheduler is imported here, not by the module)."""
    from apscheduler.triggers.cron import CronTrigger

    return CronTrigger.from_crontab(cron, timezone=timezone)


def parse_database_url(value: str) -> URL:
    """SQLAlchemy's parse of a database URL, ValueError if malformed (SQLAlchemy imported here)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(value)
    except ArgumentError as exc:
        raise ValueError(str(exc)) from None


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are refused and values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def _describe_character(char: str) -> str:
    """Name a character without printing it (it may be part of a secret)."""
    names = {"\n": "a line feed (\\n)", "\r": "a carriage return (\\r)", "\t": "a tab (\\t)"}
    return names.get(char, f"the character U+{ord(char):04X}")


def header_safe(value: SecretStr) -> SecretStr:
    """Refuse a secret that cannot travel in an HTTP header as it is, without showing it.

    Header values are visible ASCII; a control character (often a newline left at
    the end of a secret file) or a non-ASCII letter would be escaped or refused
    by the HTTP client, and the escaped secret would end up in errors and logs.
    """
    text = value.get_secret_value()
    for index, char in enumerate(text):
        if not "\x21" <= char <= "\x7e" and not (char == " " and 0 < index < len(text) - 1):
            where = "at the end" if index == len(text) - 1 else f"at position {index + 1}"
            raise ValueError(
                f"contains {_describe_character(char)} {where}; it is sent in an HTTP "
                "header, which takes visible ASCII only (check the secret's source; the value "
                "is not shown)"
            )
    return value


def is_loopback_host(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1: traffic that never leaves the machine."""
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def require_https(url: HttpUrl | None, info: ValidationInfo, section: str) -> None:
    """Refuse ``http://`` to a host off this machine unless the section allows it."""
    if url is None or url.scheme != "http" or is_loopback_host(url.host or ""):
        return
    if info.data.get("allow_insecure_http") is True:
        return
    raise ValueError(
        "http:// would send credentials in clear text; use https://, or set "
        f"{section}.allow_insecure_http: true (loopback hosts need neither)"
    )


def allow_insecure_http_field() -> Any:
    """The ``allow_insecure_http`` field of a section that holds credential-bearing URLs."""
    return Field(
        default=False,
        description="Accept http:// URLs to hosts other than loopback (credentials then travel "
        "in clear text). Only for a trusted network, e.g. a TLS-terminating sidecar.",
    )


def config_dir(info: ValidationInfo) -> Path | None:
    """The configuration file's folder, when the loader passed it as validation context."""
    context = info.context
    folder = context.get("config_dir") if isinstance(context, dict) else None
    return folder if isinstance(folder, Path) else None


def resolve_path(value: str, info: ValidationInfo) -> Path:
    """``value`` as a path; a relative one is read from the configuration file's folder."""
    path = Path(value).expanduser()
    folder = config_dir(info)
    return folder / path if folder is not None and not path.is_absolute() else path


def existing_file(value: str | None, info: ValidationInfo) -> str | None:
    """Resolve a file setting and make sure the file is there now, not at the first call."""
    if value is None:
        return None
    if not value.strip():
        raise ValueError("the path is empty")
    path = resolve_path(value, info)
    if not path.is_file():
        relative = not Path(value).expanduser().is_absolute()
        note = " (relative paths start at the config file's folder)" if relative else ""
        raise ValueError(f"no such file: {path}{note}")
    return str(path)
