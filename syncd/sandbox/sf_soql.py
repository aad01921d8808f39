"""A strict SOQL subset for the Salesforce emulator: parse, check, evaluate.

The emulator exists to catch our mistakes before a real org does, so this
module refuses what it does not understand instead of guessing: a syntax it
does not know is ``MALFORMED_QUERY``, an unknown field or relationship is
``INVALID_FIELD``, an unknown object is ``INVALID_TYPE`` and a literal of the
wrong type for its field is ``INVALID_FIELD`` (as Salesforce answers
``value of filter criterion for field 'X' must be of type dateTime and should
not be enclosed in quotes``).

Supported: ``SELECT`` of fields, relationship paths (``Owner.Email``) or
``COUNT()``; ``FROM`` one object; ``WHERE`` with ``AND``/``OR``/``NOT`` and
parentheses (mixing ``AND`` and ``OR`` without parentheses is an error, as in
SOQL), ``= != <> < <= > >=``, ``[NOT] IN (...)``, ``LIKE`` with ``%`` and
``_``, string literals with SOQL escapes, numbers, ``true``/``false``/``null``,
date and datetime literals; ``ORDER BY`` several fields ``ASC``/``DESC``
``NULLS FIRST``/``LAST``; ``LIMIT``; ``OFFSET``. String comparisons, ``LIKE``
and string ordering ignore case, as Salesforce does.

A query is compiled once (:func:`compile_query`) into closures, then run over
a snapshot of records; the emulator keeps the sorted result per query locator
and only slices pages from it. The text is parsed by :mod:`.sf_soql_syntax`;
this module binds the tree to the org's catalog and evaluates it.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal, Protocol

from syncd.sandbox.sf_soql_syntax import (
    ESCAPES,
    BoolOp,
    Comparison,
    Literal_,
    Node,
    Not,
    OrderItem,
    ParsedQuery,
    SoqlError,
    Token,
    decode_string,
    parse,
    tokenize,
    truncate_ms,
)

__all__ = [
    "TYPE_KEY",
    "BoolOp",
    "BoundPath",
    "Catalog",
    "Comparison",
    "CompiledQuery",
    "FieldInfo",
    "FieldType",
    "Literal_",
    "Node",
    "Not",
    "OrderItem",
    "ParsedQuery",
    "Record",
    "SoqlError",
    "Token",
    "bind_path",
    "compile_query",
    "decode_string",
    "format_datetime",
    "id_suffix",
    "normalize_id",
    "parse",
    "project_record",
    "relationship_name",
    "to_json_value",
    "tokenize",
    "truncate_ms",
]

FieldType = Literal["id", "reference", "string", "boolean", "number", "datetime", "date"]
Record = Mapping[str, Any]
TYPE_KEY = "_type"  # where a stored record keeps its sobject name (no real field starts with _)


@dataclass(frozen=True)
class FieldInfo:
    name: str  # canonical API name
    type: FieldType
    target: str | None = None  # for references: the sobject it points at


class Catalog(Protocol):
    """What the evaluator needs to know about the org (the record store provides it)."""

    def object_name(self, name: str) -> str | None:
        """The canonical sobject name for ``name`` (any case), or None if unknown."""

    def fields(self, sobject: str) -> Mapping[str, FieldInfo]:
        """The fields of a known sobject, keyed by lower-case name."""

    def lookup(self, record_id: str) -> Record | None:
        """The stored record with this 18-character Id, of any sobject."""


# --------------------------------------------------------------------------- ids

_ID_CHARS = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def id_suffix(id15: str) -> str:
    """The 3-character case-safe checksum Salesforce appends to a 15-character Id."""
    out = []
    for chunk in range(3):
        bits = 0
        for i, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << i
        out.append(_SUFFIX[bits])
    return "".join(out)


def normalize_id(value: str) -> str | None:
    """The 18-character form of a 15 or 18 character Id; None if it is not a valid Id."""
    if not _ID_CHARS.match(value):
        return None
    if len(value) == 15:
        return value + id_suffix(value)
    if id_suffix(value[:15]) != value[15:].upper():
        return None
    return value[:15] + id_suffix(value[:15])


# --------------------------------------------------------------------------- values


def format_datetime(value: datetime) -> str:
    """Salesforce's JSON datetime format: ``2024-01-01T00:00:00.000+0000``."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def to_json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


# --------------------------------------------------------------------------- binding

Getter = Callable[[Record], Any]
Predicate = Callable[[Record], bool]


@dataclass(frozen=True)
class BoundPath:
    names: tuple[str, ...]  # canonical: relationship names then the field name
    objects: tuple[str, ...]  # the sobject at each step (len == len(names))
    references: tuple[str, ...]  # the reference field followed at each relationship step
    field: FieldInfo
    get: Getter


def _relationship_field(name: str) -> str:
    return name[:-3] + "__c" if name.lower().endswith("__r") else name + "Id"


def relationship_name(field: str) -> str:
    """A reference field's relationship name: ``OwnerId`` -> ``Owner``, ``X__c`` -> ``X__r``."""
    return field[:-3] + "__r" if field.endswith("__c") else field[:-2]


def bind_path(catalog: Catalog, sobject: str, path: str) -> BoundPath:
    """Resolve ``Owner.Email`` on ``Lead`` to canonical names and a getter."""
    parts = path.split(".")
    if len(parts) > 1 and parts[0].lower() == sobject.lower():
        parts = parts[1:]  # SOQL allows prefixing a field with its object name
    names: list[str] = []
    objects: list[str] = []
    references: list[str] = []
    current = sobject
    for part in parts[:-1]:
        ref = catalog.fields(current).get(_relationship_field(part).lower())
        if ref is None or ref.type != "reference" or ref.target is None:
            raise SoqlError(
                "INVALID_FIELD",
                f"Didn't understand relationship '{part}' in field path. If you are attempting "
                "to use a custom relationship, be sure to append the '__r' after the custom "
                "relationship name.",
            )
        names.append(relationship_name(ref.name))
        objects.append(current)
        references.append(ref.name)
        current = ref.target
    info = catalog.fields(current).get(parts[-1].lower())
    if info is None:
        raise SoqlError(
            "INVALID_FIELD",
            f"No such column '{parts[-1]}' on entity '{current}'. If you are attempting to use "
            "a custom field, be sure to append the '__c' after the custom field name.",
        )
    names.append(info.name)
    objects.append(current)
    getter = _getter(catalog, references, info.name)
    return BoundPath(tuple(names), tuple(objects), tuple(references), info, getter)


def _getter(catalog: Catalog, references: Sequence[str], field: str) -> Getter:
    if not references:
        return lambda record: record.get(field)
    lookup = catalog.lookup

    def get(record: Record) -> Any:
        current: Record | None = record
        for ref in references:
            assert current is not None
            target = current.get(ref)
            current = lookup(target) if target else None
            if current is None:
                return None
        assert current is not None
        return current.get(field)

    return get


_TYPE_WORD = {
    "id": "id",
    "reference": "id",
    "string": "string",
    "boolean": "boolean",
    "number": "double",
    "datetime": "dateTime",
    "date": "date",
}
_LITERAL_FOR = {
    "id": "string",
    "reference": "string",
    "string": "string",
    "boolean": "boolean",
    "number": "number",
    "datetime": "datetime",
    "date": "date",
}


def _check_literal(field: FieldInfo, literal: Literal_) -> Any:
    """The comparable value of ``literal`` for ``field``, or the error Salesforce gives."""
    if literal.kind == "null":
        return None
    wanted = _LITERAL_FOR[field.type]
    if literal.kind != wanted:
        quoted = "be enclosed in quotes" if wanted == "string" else "not be enclosed in quotes"
        raise SoqlError(
            "INVALID_FIELD",
            f"value of filter criterion for field '{field.name}' must be of type "
            f"{_TYPE_WORD[field.type]} and should {quoted}",
        )
    if field.type in ("id", "reference"):
        normalized = normalize_id(literal.value)
        if normalized is None:
            raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {literal.value}")
        return normalized
    if field.type == "string":
        return literal.value.replace("\\%", "%").replace("\\_", "_").casefold()
    return literal.value


def _like_regex(raw: str) -> re.Pattern[str]:
    body = raw[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            nxt = body[i + 1]
            if nxt in "%_":
                out.append(re.escape(nxt))
            elif nxt.lower() in ESCAPES:
                out.append(re.escape(ESCAPES[nxt.lower()]))
            else:
                raise SoqlError("MALFORMED_QUERY", f"invalid escape sequence \\{nxt} in {raw}")
            i += 2
            continue
        out.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def _comparable(field: FieldInfo, get: Getter) -> Getter:
    if field.type == "string":

        def folded(record: Record) -> Any:
            value = get(record)
            return value.casefold() if isinstance(value, str) else value

        return folded
    return get


def _bind_condition(catalog: Catalog, sobject: str, node: Node) -> Predicate:
    if isinstance(node, Not):
        inner = _bind_condition(catalog, sobject, node.operand)
        return lambda record: not inner(record)
    if isinstance(node, BoolOp):
        parts = [_bind_condition(catalog, sobject, child) for child in node.operands]
        if node.op == "and":
            return lambda record: all(part(record) for part in parts)
        return lambda record: any(part(record) for part in parts)
    try:
        return _bind_comparison(catalog, sobject, node)
    except SoqlError as exc:
        raise exc.at(node.pos) from None


_ORDERED_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _bind_comparison(catalog: Catalog, sobject: str, node: Comparison) -> Predicate:
    path = bind_path(catalog, sobject, node.path)
    field = path.field
    get = _comparable(field, path.get)
    if node.op == "like":
        if field.type != "string":
            raise SoqlError(
                "INVALID_FIELD",
                f"invalid operator on {_TYPE_WORD[field.type]} field '{field.name}': LIKE",
            )
        pattern = _like_regex(node.values[0].value)
        raw_get = path.get

        def like(record: Record) -> bool:
            value = raw_get(record)
            return isinstance(value, str) and pattern.fullmatch(value) is not None

        return like
    values = [_check_literal(field, literal) for literal in node.values]
    if node.op in ("in", "notin"):
        members = frozenset(values)
        if node.op == "in":
            return lambda record: (value := get(record)) is not None and value in members
        return lambda record: get(record) not in members
    value = values[0]
    if node.op == "=":
        return lambda record: get(record) == value
    if node.op == "!=":
        return lambda record: get(record) != value
    if value is None:
        raise SoqlError(
            "MALFORMED_QUERY", f"invalid operator {node.op} with null for field '{field.name}'"
        )
    if field.type == "boolean":
        raise SoqlError(
            "INVALID_FIELD", f"invalid operator on boolean field '{field.name}': {node.op}"
        )
    compare = _ORDERED_OPS[node.op]

    def ordered(record: Record) -> bool:
        current = get(record)
        return current is not None and bool(compare(current, value))

    return ordered


# --------------------------------------------------------------------------- compiled query


@dataclass(frozen=True)
class CompiledQuery:
    """A checked query: run it once, then project the records page by page."""

    soql: str
    sobject: str
    count: bool
    paths: tuple[BoundPath, ...]
    where: Predicate | None
    order_keys: tuple[tuple[Getter, bool, bool], ...]  # getter, descending, nulls_last
    limit: int | None
    offset: int | None
    lookup: Callable[[str], Record | None]

    def run(self, records: Iterable[Record]) -> list[Record]:
        """Filter, sort once, then apply OFFSET and LIMIT."""
        where = self.where
        rows = [r for r in records if where(r)] if where is not None else list(records)
        # Stable sorts from the last key to the first give a multi-key order with
        # per-key direction and null placement.
        for getter, descending, nulls_last in reversed(self.order_keys):
            null_group = 2 if nulls_last != descending else 0

            def key(record: Record, get: Getter = getter, group: int = null_group) -> Any:
                value = get(record)
                return (group, 0) if value is None else (1, value)

            rows.sort(key=key, reverse=descending)
        start = self.offset or 0
        end = None if self.limit is None else start + self.limit
        return rows[start:end]

    def project(self, record: Record, version: str) -> dict[str, Any]:
        """The JSON shape Salesforce returns for one record, nested relationships included."""
        return project_record(record, self.paths, self.lookup, version)


def _attributes(record: Record, version: str) -> dict[str, str]:
    sobject = record[TYPE_KEY]
    return {"type": sobject, "url": f"/services/data/v{version}/sobjects/{sobject}/{record['Id']}"}


def project_record(
    record: Record,
    paths: Sequence[BoundPath],
    lookup: Callable[[str], Record | None],
    version: str,
) -> dict[str, Any]:
    """One record as Salesforce's JSON: ``attributes``, fields, nested relationship objects.

    Several paths through the same relationship share one nested object; a null
    or dangling lookup gives ``"Owner": null``.
    """
    out: dict[str, Any] = {"attributes": _attributes(record, version)}
    # relationship prefix -> (nested JSON object or None, the related record)
    nested: dict[tuple[str, ...], tuple[dict[str, Any] | None, Record | None]] = {}
    for path in paths:
        target: dict[str, Any] | None = out
        current: Record | None = record
        for depth, name in enumerate(path.names[:-1]):
            prefix = path.names[: depth + 1]
            if prefix not in nested:
                ref_id = current.get(path.references[depth]) if current is not None else None
                related = lookup(ref_id) if ref_id else None
                child = (
                    {"attributes": _attributes(related, version)} if related is not None else None
                )
                if target is not None:
                    target[name] = child
                nested[prefix] = (child, related)
            target, current = nested[prefix]
            if target is None:
                break
        else:
            assert target is not None and current is not None
            target[path.names[-1]] = to_json_value(current.get(path.names[-1]))
    return out


def compile_query(soql: str, catalog: Catalog) -> CompiledQuery:
    """Parse and check ``soql``; raise :class:`SoqlError` where Salesforce would refuse it."""
    parsed = parse(soql)
    sobject = catalog.object_name(parsed.sobject)
    if sobject is None:
        raise SoqlError(
            "INVALID_TYPE",
            f"sObject type '{parsed.sobject}' is not supported. If you are attempting to use a "
            "custom object, be sure to append the '__c' after the entity name.",
            parsed.sobject_pos,
        )
    paths: list[BoundPath] = []
    seen: set[tuple[str, ...]] = set()
    positions = parsed.field_pos or (0,) * len(parsed.fields)
    for name, pos in zip(parsed.fields, positions, strict=True):
        try:
            path = bind_path(catalog, sobject, name)
        except SoqlError as exc:
            raise exc.at(pos) from None
        key = tuple(n.lower() for n in path.names)
        if key in seen:
            raise SoqlError("MALFORMED_QUERY", f"duplicate field selected: {name}", pos)
        seen.add(key)
        paths.append(path)
    where = _bind_condition(catalog, sobject, parsed.where) if parsed.where else None
    order_keys = []
    for item in parsed.order_by:
        try:
            path = bind_path(catalog, sobject, item.path)
        except SoqlError as exc:
            raise exc.at(item.pos) from None
        order_keys.append((_comparable(path.field, path.get), item.descending, item.nulls_last))
    if parsed.count and parsed.order_by:
        raise SoqlError("MALFORMED_QUERY", "ORDER BY is not allowed with COUNT()")
    return CompiledQuery(
        soql=soql,
        sobject=sobject,
        count=parsed.count,
        paths=tuple(paths),
        where=where,
        order_keys=tuple(order_keys),
        limit=parsed.limit,
        offset=parsed.offset,
        lookup=catalog.lookup,
    )
