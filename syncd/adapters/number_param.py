"""A list of values (numbers, lock keys) bound as one parameter: one JSON text.

The send gate reads the suppression list and the numbers' sends, and tries the
numbers' locks, for up to a claim's worth of numbers on every claim. An
expanding ``IN`` renders a bind per value for every execution, and on
PostgreSQL the driver then parses the long statement anew each time (it caches
only statements it has seen): about as much CPU as running the query. A
driver-side array is no better: psycopg dumps it element by element in Python,
about 3 us a value. One JSON text is serialised in one call, the statement is
compiled once per dialect, and the database unpacks the list (``json_each`` on
SQLite; on PostgreSQL ``json_array_elements_text`` into an array once per
execution, so that ``= ANY`` still reads an index).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    BindParameter,
    ColumnElement,
    String,
    any_,
    bindparam,
    cast,
    column,
    func,
    select,
)


def number_among(target: ColumnElement[Any], dialect: str, name: str) -> ColumnElement[bool]:
    """``target`` is one of the values of the JSON array bound as ``name`` (:func:`as_param`)."""
    listed = bindparam(name, type_=String)
    if dialect == "postgresql":
        values = select(func.json_array_elements_text(cast(listed, JSON))).scalar_subquery()
        return target == any_(func.array(values))
    each = select(column("value", String)).select_from(func.json_each(listed))
    return target.in_(each.scalar_subquery())


def id_array(listed: BindParameter[str]) -> ColumnElement[Any]:
    """PostgreSQL: the ids of the JSON array bound as ``listed``, unpacked once into one
    BIGINT array, so that ``column = ANY(...)`` reads the primary key."""
    values = select(cast(func.json_array_elements_text(cast(listed, JSON)), BigInteger))
    return func.array(values.scalar_subquery())


def id_among(target: ColumnElement[int], dialect: str, name: str) -> ColumnElement[bool]:
    """``target`` (an id column) is one of the ids of the JSON array bound as ``name``.

    PostgreSQL: ``= ANY`` of the array (:func:`id_array`); SQLite: ``IN`` the rows of
    ``json_each``, each a primary-key lookup. Either way one statement, compiled once,
    whatever the count (an expanding ``IN`` is rendered again on every execution).
    """
    listed = bindparam(name, type_=String)
    if dialect == "postgresql":
        return target == any_(id_array(listed))
    each = select(column("value", BigInteger)).select_from(func.json_each(listed))
    return target.in_(each.scalar_subquery())


def distinct_numbers(phones: Iterable[str | None]) -> list[str]:
    """The distinct non-empty numbers of ``phones``, sorted."""
    return sorted({phone for phone in phones if phone})


def as_param(values: Collection[str | int]) -> str:
    """The parameter's value for :func:`number_among` (and the locks' keys): a JSON array."""
    return json.dumps(list(values))
