"""A set of E.164 numbers bound as one parameter: an array (PostgreSQL) or a JSON text (SQLite).

The send gate reads the suppression list and the numbers' sends for up to a
claim's worth of numbers on every claim. An expanding ``IN`` renders a bind per
number for every execution, and on PostgreSQL the driver then parses the long
statement anew each time (it caches only statements it has seen): about as
much CPU as running the query. Bound as one value, the statement is compiled
once per dialect and its text never changes.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import JSON, ColumnElement, String, any_, bindparam, column, func, select
from sqlalchemy.dialects.postgresql import ARRAY


def number_among(target: ColumnElement[Any], dialect: str, name: str) -> ColumnElement[bool]:
    """``target`` is one of the numbers bound as ``name`` (a list of strings, see :func:`bound`)."""
    if dialect == "postgresql":
        return target == any_(bindparam(name, type_=ARRAY(String)))
    listed = func.json_each(bindparam(name, type_=JSON))
    return target.in_(select(column("value", String)).select_from(listed).scalar_subquery())


def bound(phones: Collection[str]) -> list[str]:
    """The parameter's value for :func:`number_among`: the distinct non-empty numbers, sorted."""
    return sorted({phone for phone in phones if phone})
