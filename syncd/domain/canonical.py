"""One form of a record, whatever API read it (docs/design.md#one-canonical-form-of-a-record).

The REST query API answers JSON (``true``, ``42``, ``12.5``, ``null``); a Bulk
API 2.0 query answers CSV, where every value is text (``"true"``, ``"42"``,
``"12.5"``, empty for null) and datetimes end in ``Z`` instead of ``+0000``. The
mapping digests the values it reads, so the same record must reach it in the
same form either way, or a Bulk backfill would find every known record changed.

The canonical form is the REST API's, so that leads already stored from REST
reads keep their digests. By the field's describe ``type``:

* ``boolean``: True or False;
* ``int``: an int;
* ``double``, ``currency``, ``percent``: a float, as Salesforce's JSON writes
  these types (``42.0``, ``1.2345678E7``), even for a whole number;
* ``datetime``: text in UTC with milliseconds, ``2026-12-01T10:00:00.000+0000``;
* every other type (``date``, ``time``, ``string``, ``picklist``, ``id``,
  ``reference``, ``phone``, ``email``, ``textarea`` ...) and a type not known:
  the value as read (both APIs write dates as ``2026-12-01``);
* empty text is None for every type (Salesforce stores no empty text: REST
  answers null).

A value that does not read as its type (``"abc"`` for an int) is kept as it
came: the mapping and the rules decide what it means, nothing here raises.

Relationship values stay nested dicts (REST nests them and Bulk's ``Owner.Email``
columns are nested the same way when read); their fields are typed by the
dotted path, ``owner.email``.

Pure code: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

#: A path's describe type, keyed by the dotted field path in lower case (``owner.email``).
FieldTypes = Mapping[str, str]

# ASCII digits only: int() and float() would also take other scripts' digits.
_INT = re.compile(r"[+-]?\d+", re.ASCII)
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_REST_DATETIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", re.ASCII)
_ATTRIBUTES = "attributes"


def _boolean(value: Any) -> Any:
    if isinstance(value, str):
        folded = value.strip().lower()
        if folded == "true":
            return True
        if folded == "false":
            return False
    return value


def _int(value: Any) -> Any:
    if isinstance(value, str) and _INT.fullmatch(value.strip()):
        try:
            return int(value)
        except ValueError:  # more digits than Python reads from text
            return value
    return value


def _double(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:  # larger than any double: not a value Salesforce sends
            return value
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        number = float(value)
        return number if math.isfinite(number) else value
    return value


def _datetime(value: Any) -> Any:
    if not isinstance(value, str) or _REST_DATETIME.fullmatch(value):
        return value
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return value
    if moment.tzinfo is None:  # no zone: which instant it means is not known
        return value
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


_CONVERT: dict[str, Callable[[Any], Any]] = {
    "boolean": _boolean,
    "int": _int,
    "double": _double,
    "currency": _double,
    "percent": _double,
    "datetime": _datetime,
}


def canonical_value(kind: str | None, value: Any) -> Any:
    """``value`` of a field of describe type ``kind`` (None: not known) in canonical form."""
    if value is None or value == "":
        return None
    convert = _CONVERT.get(kind) if kind is not None else None
    return value if convert is None else convert(value)


def canonical_record(record: Mapping[str, Any], types: FieldTypes) -> dict[str, Any]:
    """A copy of ``record`` with every value in canonical form (``attributes`` kept as is)."""
    return _canonical(record, types, "", {})


def canonical_page(records: Iterable[Mapping[str, Any]], types: FieldTypes) -> list[dict[str, Any]]:
    """:func:`canonical_record` of each record; each field's conversion found once a page."""
    converters: dict[tuple[str, str], Callable[[Any], Any] | None] = {}
    return [_canonical(record, types, "", converters) for record in records]


#: The values that are never nested records (tested first: the Mapping check is slower).
_SCALARS = (str, int, float, type(None))


def _canonical(
    record: Mapping[str, Any],
    types: FieldTypes,
    prefix: str,
    converters: dict[tuple[str, str], Callable[[Any], Any] | None],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key == _ATTRIBUTES:
            out[key] = value
        elif not isinstance(value, _SCALARS) and isinstance(value, Mapping):
            out[key] = _canonical(value, types, f"{prefix}{key.lower()}.", converters)
        elif value is None or value == "":
            out[key] = None
        else:
            try:
                convert = converters[prefix, key]
            except KeyError:
                kind = types.get(f"{prefix}{key.lower()}")
                convert = converters[prefix, key] = None if kind is None else _CONVERT.get(kind)
            out[key] = value if convert is None else convert(value)
    return out
