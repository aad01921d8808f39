"""Small value types shared by the config models: durations and field references."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, WithJsonSchema

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
#: Ten years: longer is surely a typo, and timedelta overflows not far beyond.
_MAX_SECONDS = 3650 * 86400.0


def parse_duration(value: Any) -> timedelta:
    """Turn ``90``, ``"90s"``, ``"10m"``, ``"24h"`` or ``"1d"`` into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 10m, 24h or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
    else:
        raise ValueError(
            f"{value!r} is not a duration; use a number of seconds or 30s, 10m, 24h, 1d"
        )
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a duration; use a number of seconds or 30s, 10m, 24h")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > _MAX_SECONDS:
        raise ValueError(f"{value!r} is too long a duration (at most 3650d)")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit in ("d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"},
                {"type": "number", "minimum": 0},
            ],
            "description": "A duration: seconds as a number, or 500ms, 30s, 10m, 24h, 1d.",
        }
    ),
]


class FieldRef(BaseModel):
    """Where a lead value comes from: a Salesforce field path, or a constant.

    In YAML a plain string is a field path (``Phone``, ``Owner.Email``) and a
    mapping ``{const: value}`` is a constant.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = None
    const: str | int | float | bool | None = None

    @property
    def is_const(self) -> bool:
        return self.path is None


_FIELD_PATH = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$")


def _field_ref(value: Any) -> Any:
    if isinstance(value, FieldRef):
        return value
    if isinstance(value, str):
        if not _FIELD_PATH.match(value):
            raise ValueError(
                f"{value!r} is not a Salesforce field path (letters, digits, _ and dots, "
                "e.g. Phone or Owner.Email); write {const: ...} for a constant"
            )
        return FieldRef(path=value)
    if isinstance(value, dict):
        if set(value) != {"const"}:
            raise ValueError("expected a field path or {const: value}")
        const = value["const"]
        if isinstance(const, dict | list):
            raise ValueError("a constant must be a string, number or boolean")
        return FieldRef(const=const)
    raise ValueError("expected a field path (e.g. Phone) or {const: value}")


FieldRefValue = Annotated[
    FieldRef,
    BeforeValidator(_field_ref),
    PlainSerializer(lambda ref: ref.path if ref.path is not None else {"const": ref.const}),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "description": "Salesforce field path, e.g. Owner.Email"},
                {
                    "type": "object",
                    "properties": {"const": {"type": ["string", "number", "boolean"]}},
                    "required": ["const"],
                    "additionalProperties": False,
                },
            ]
        }
    ),
]
