"""Where a lead value comes from: a Salesforce field path, or a constant (pure, no I/O).

The mapping, the routing and the query builder all read :class:`FieldRef`
values; the configuration parses them from YAML with :func:`parse_field_ref`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: A field path: API names joined by dots (``Phone``, ``Owner.Email``).
FIELD_PATH = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class FieldRef:
    """A Salesforce field path, or (``path`` None) the constant ``const``.

    In YAML a plain string is a field path and a mapping ``{const: value}`` is a
    constant.
    """

    path: str | None = None
    const: str | int | float | bool | None = None

    @property
    def is_const(self) -> bool:
        return self.path is None


def parse_field_ref(value: Any) -> FieldRef:
    """A :class:`FieldRef` from a path string or ``{const: value}``; ValueError otherwise."""
    if isinstance(value, FieldRef):
        return value
    if isinstance(value, str):
        if not FIELD_PATH.match(value):
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


def field_paths(refs: Any) -> list[str]:
    """The paths of the references that are fields (constants and None left out)."""
    return [ref.path for ref in refs if ref is not None and ref.path is not None]
