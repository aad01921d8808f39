"""Small value types shared by the config models: durations and field references.

The values themselves are the domain's (:mod:`syncd.domain.durations`,
:mod:`syncd.domain.fields`); this module adds how pydantic reads, writes and
documents them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, PlainValidator, WithJsonSchema

from syncd.domain.durations import format_duration, parse_duration
from syncd.domain.fields import FieldRef, parse_field_ref

__all__ = [
    "Duration",
    "FieldRef",
    "FieldRefValue",
    "format_duration",
    "parse_duration",
    "parse_field_ref",
]

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


FieldRefValue = Annotated[
    FieldRef,
    PlainValidator(parse_field_ref),
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
