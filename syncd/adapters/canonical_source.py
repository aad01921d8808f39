"""Records in canonical form, page by page (docs/design.md#one-canonical-form-of-a-record).

A :class:`CanonicalSource` wraps a record source (the REST poll, a Bulk API 2.0
query job, the stream's and the re-check's reads by Id) and puts each record of
each page through :func:`syncd.domain.canonical.canonical_page`, so the
mapping digests the same values whichever API read the record.

The values are typed by the fields' describe ``type``. A relationship path such
as ``Owner.Email`` is typed by describing the object its relationship refers to
(the field whose ``relationshipName`` is ``Owner``, its ``referenceTo``); a
polymorphic one (``Owner`` is a User or a Group) takes the type its objects
agree on, and stays untyped when they disagree. The types are read once per
source, before its first query, and kept; a describe that fails raises the
source's error (:class:`~syncd.adapters.salesforce.SalesforceSourceError`), as a
failed query does, and is tried again at the next read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from syncd.config.models import SyncConfig
from syncd.domain.canonical import FieldTypes, canonical_page
from syncd.domain.soql import query_fields

#: ``describe_fields`` of a Salesforce source: an object's describe ``fields``.
Describe = Callable[[str], list[dict[str, Any]]]


class PageSource(Protocol):
    """What is wrapped: a source of record pages (REST or Bulk)."""

    def query_pages(self, soql: str) -> Iterator[list[dict[str, Any]]]: ...

    def api_usage(self) -> tuple[int, int] | None: ...


@dataclass(frozen=True)
class _Described:
    """One object's describe: field types and relationship targets, by lower-case name."""

    types: dict[str, str]
    relationships: dict[str, tuple[str, ...]]

    @classmethod
    def of(cls, fields: Iterable[dict[str, Any]]) -> _Described:
        types: dict[str, str] = {}
        relationships: dict[str, tuple[str, ...]] = {}
        for field in fields:
            name, kind = field.get("name"), field.get("type")
            if isinstance(name, str) and isinstance(kind, str):
                types[name.lower()] = kind.lower()
            relationship, targets = field.get("relationshipName"), field.get("referenceTo")
            if isinstance(relationship, str) and isinstance(targets, list):
                objects = tuple(target for target in targets if isinstance(target, str))
                relationships[relationship.lower()] = objects
        return cls(types, relationships)


class FieldTyper:
    """The describe types of field paths, each object described once."""

    def __init__(self, describe: Describe) -> None:
        self._describe = describe
        self._objects: dict[str, _Described] = {}

    def types(self, sobject: str, paths: Iterable[str]) -> dict[str, str]:
        """Lower-case path -> type for every path of ``sobject`` that describe can type."""
        out: dict[str, str] = {}
        for path in paths:
            kind = self._type_of(sobject, path.split("."))
            if kind is not None:
                out[path.lower()] = kind
        return out

    def _type_of(self, sobject: str, parts: Sequence[str]) -> str | None:
        described = self._described(sobject)
        if len(parts) == 1:
            return described.types.get(parts[0].lower())
        targets = described.relationships.get(parts[0].lower(), ())
        kinds = {self._type_of(target, parts[1:]) for target in targets} - {None}
        return kinds.pop() if len(kinds) == 1 else None

    def _described(self, sobject: str) -> _Described:
        key = sobject.lower()
        described = self._objects.get(key)
        if described is None:
            described = self._objects[key] = _Described.of(self._describe(sobject))
        return described


class CanonicalSource:
    """A sync's record source whose pages come in canonical form; see the module docstring."""

    def __init__(self, pages: PageSource, describe: Describe, sync: SyncConfig) -> None:
        self.pages = pages
        self._typer = FieldTyper(describe)
        self._sobject = sync.object
        self._paths = query_fields(sync.query_spec)
        self._types: FieldTypes | None = None

    def field_types(self) -> FieldTypes:
        """The sync's field paths and their types (described on the first call)."""
        if self._types is None:
            self._types = self._typer.types(self._sobject, self._paths)
        return self._types

    def query_pages(self, soql: str) -> Iterator[list[dict[str, Any]]]:
        """The wrapped source's pages, each record in canonical form."""
        types = self.field_types()
        pages = self.pages.query_pages(soql)
        try:
            for page in pages:
                yield canonical_page(page, types)
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()  # stops a REST read-ahead in flight

    def api_usage(self) -> tuple[int, int] | None:
        return self.pages.api_usage()

    def last_query_size(self) -> int | None:
        """The running query's ``totalSize`` when the wrapped source knows it (REST), else None."""
        size_of = getattr(self.pages, "last_query_size", None)
        size = size_of() if callable(size_of) else None
        return size if isinstance(size, int) else None
