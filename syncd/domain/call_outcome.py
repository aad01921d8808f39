"""Read one call-outcome webhook body into a call outcome of one lead (pure).

The SimZ spec defines no webhook payload, so nothing here assumes a shape
beyond JSON (docs/call-outcomes.md#reading-the-payload):

* **which lead**: the correlation value (:mod:`syncd.domain.call_ref`) is looked
  for under its key name *anywhere* in the body, dicts and lists walked in
  document order; the first genuine value (its MAC checks out) names the
  Salesforce Id and the lead. None genuine: ``unmatched``, saying whether the
  key was absent or its value not genuine (a forgery, or another secret);
* **what happened**: configured JSON paths (RFC 9535, ``python-jsonpath``,
  compiled once in :class:`ReadingRules`) read the call id, outcome,
  disposition, duration, start and end times and a recording URL. A path that
  finds nothing leaves its value empty; a body that is not JSON, or where
  neither the outcome nor the disposition is found, is ``unreadable``;
* **values**: each is bounded to its column; a value of the wrong kind (a
  negative or absurd duration, a time without its offset, a recording link that
  is not http(s)) is left empty with a note, never an error.

:func:`read_call` never raises for any body.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import jsonpath

from syncd.domain.call_ref import read_ref, well_formed

#: The longest call key (the column): a longer call id is cut.
CALL_KEY_CHARS = 64
OUTCOME_CHARS = 100
DISPOSITION_CHARS = 255
URL_CHARS = 2_000
#: Longer than any real call: a duration above it is taken as a mistake.
MAX_DURATION_SECONDS = 24 * 3600
#: Nodes of a body walked looking for the correlation key, at most.
MAX_NODES = 100_000
_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")

#: The values read by path, in the order :class:`ReadingRules` takes them.
PATH_NAMES = (
    "call_id",
    "outcome",
    "disposition",
    "duration_seconds",
    "started_at",
    "ended_at",
    "recording_url",
)


@dataclass(frozen=True)
class ReadingRules:
    """Plain values of ``simz.webhook`` that reading needs, paths compiled once.

    Build it with :meth:`build`; ``disposition_map`` keys and ``opt_outs`` are
    kept lower-cased (both are matched ignoring case).
    """

    secret: bytes
    key: str
    paths: Mapping[str, jsonpath.JSONPath | jsonpath.CompoundJSONPath]
    disposition_map: Mapping[str, str] = field(default_factory=dict)
    opt_outs: frozenset[str] = frozenset()
    #: The paths as configured, for messages.
    path_texts: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        *,
        secret: bytes,
        key: str,
        paths: Mapping[str, str | None],
        disposition_map: Mapping[str, str],
        opt_out_dispositions: Sequence[str],
    ) -> ReadingRules:
        """Compile ``paths`` (name -> JSON path, None for "not read"); raises on a bad path."""
        compiled = {
            name: jsonpath.compile(text) for name, text in paths.items() if text is not None
        }
        unknown = set(compiled) - set(PATH_NAMES)
        if unknown:
            raise ValueError(f"unknown values to read: {', '.join(sorted(unknown))}")
        return cls(
            secret=secret,
            key=key,
            paths=compiled,
            disposition_map={k.strip().lower(): v for k, v in disposition_map.items()},
            opt_outs=frozenset(d.strip().lower() for d in opt_out_dispositions),
            path_texts={name: text for name, text in paths.items() if text is not None},
        )


@dataclass(frozen=True)
class CallReading:
    """One call of one lead as the body says it; ``notes`` name values left empty and why."""

    lead_id: int
    salesforce_id: str
    call_key: str
    outcome: str | None
    raw_disposition: str | None
    disposition: str | None
    duration_seconds: int | None
    started_at: datetime | None
    ended_at: datetime | None
    recording_url: str | None
    opt_out: bool
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class NotRead:
    """A body that names no lead (``unmatched``) or cannot be read (``unreadable``).

    ``lead`` is the (Salesforce Id, lead id) of an unreadable body whose
    correlation value was genuine.
    """

    status: Literal["unmatched", "unreadable"]
    detail: str
    lead: tuple[str, int] | None = None


def body_digest(body: str) -> str:
    """SHA-256 of the body's UTF-8 bytes, as hex (the call key of a body without a call id)."""
    return hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()


def read_call(body: str, rules: ReadingRules, digest: str | None = None) -> CallReading | NotRead:
    """Read ``body`` (the raw text) under ``rules``; ``digest`` is its stored SHA-256, if known."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return NotRead("unreadable", "the body is not JSON")
    ref = find_ref(document, rules)
    if isinstance(ref, NotRead):
        return ref
    salesforce_id, lead_id = ref
    notes: list[str] = []
    found = {name: _first(path, document) for name, path in rules.paths.items()}
    outcome = _text(found.get("outcome"), OUTCOME_CHARS, "outcome", notes)
    raw = _text(found.get("disposition"), DISPOSITION_CHARS, "disposition", notes)
    if outcome is None and raw is None:
        return NotRead(
            "unreadable",
            "the configured paths found neither an outcome nor a disposition "
            f"(outcome: {_shown(rules, 'outcome')}, disposition: {_shown(rules, 'disposition')})",
            lead=ref,
        )
    disposition = _mapped(raw, rules.disposition_map)
    call_id = _text(found.get("call_id"), None, "call id", notes)
    return CallReading(
        lead_id=lead_id,
        salesforce_id=salesforce_id,
        call_key=call_id[:CALL_KEY_CHARS] if call_id else (digest or body_digest(body)),
        outcome=outcome,
        raw_disposition=raw,
        disposition=disposition,
        duration_seconds=_duration(found.get("duration_seconds"), notes),
        started_at=_moment(found.get("started_at"), "start", notes),
        ended_at=_moment(found.get("ended_at"), "end", notes),
        recording_url=_url(found.get("recording_url"), notes),
        opt_out=disposition is not None and disposition.strip().lower() in rules.opt_outs,
        notes=tuple(notes),
    )


def find_ref(document: Any, rules: ReadingRules) -> tuple[str, int] | NotRead:
    """The first genuine correlation value under ``rules.key``, anywhere; else why not."""
    seen = shaped = 0
    for value in _values_of(document, rules.key):
        genuine = read_ref(rules.secret, value)
        if genuine is not None:
            return genuine
        seen += 1
        shaped += well_formed(value)
    if not seen:
        return NotRead("unmatched", f"no {rules.key} in the payload: it names no lead")
    if shaped:
        return NotRead(
            "unmatched",
            f"{rules.key} found but its MAC does not match (forged, altered, or made with "
            "another correlation_secret): it names no lead",
        )
    return NotRead("unmatched", f"{rules.key} found but it is not a correlation value")


def _values_of(document: Any, key: str) -> Iterator[Any]:
    """Every value stored under ``key`` in any dict of ``document``, in document order."""
    stack: list[Any] = [document]
    nodes = 0
    while stack and nodes < MAX_NODES:
        node = stack.pop()
        nodes += 1
        if isinstance(node, dict):
            if key in node:
                yield node[key]
            stack.extend(reversed(node.values()))
        elif isinstance(node, list):
            stack.extend(reversed(node))


def _first(path: jsonpath.JSONPath | jsonpath.CompoundJSONPath, document: Any) -> Any:
    """The first value the path finds, None when it finds nothing."""
    try:
        match = path.match(document)
    except jsonpath.JSONPathError:
        return None
    return None if match is None else match.obj


def _shown(rules: ReadingRules, name: str) -> str:
    return rules.path_texts.get(name, "not read")


def _text(value: Any, limit: int | None, what: str, notes: list[str]) -> str | None:
    """A short text from a string or a number; anything else is left empty with a note."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        notes.append(f"{what} is not text ({type(value).__name__}): left empty")
        return None
    text = str(value).strip()
    if not text:
        return None
    return text[:limit] if limit is not None else text


def _mapped(raw: str | None, table: Mapping[str, str]) -> str | None:
    if raw is None:
        return None
    return table.get(raw.lower(), raw)[:DISPOSITION_CHARS]


def _duration(value: Any, notes: list[str]) -> int | None:
    """Whole seconds from a number or numeric text; negative or absurd -> None with a note."""
    if value is None:
        return None
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and _NUMBER.match(value.strip()):
        number = float(value.strip())
    if number is None or not math.isfinite(number):
        notes.append(f"duration {str(value)[:40]!r} is not a number of seconds: left empty")
        return None
    if number < 0 or number > MAX_DURATION_SECONDS:
        notes.append(f"duration {number:g}s is not a call's length: left empty")
        return None
    return round(number)


def _moment(value: Any, what: str, notes: list[str]) -> datetime | None:
    """An ISO 8601 time with its offset, in UTC; anything else -> None with a note."""
    if value is None:
        return None
    parsed: datetime | None = None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            parsed = None
    if parsed is None or parsed.tzinfo is None or parsed.utcoffset() is None:
        notes.append(f"{what} {str(value)[:40]!r} is not an ISO 8601 time with offset: left empty")
        return None
    return parsed.astimezone(UTC)


def _url(value: Any, notes: list[str]) -> str | None:
    """An http(s) link; anything else -> None with a note."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        scheme, sep, rest = text.partition("://")
        if (
            sep
            and scheme.lower() in ("http", "https")
            and rest
            and not rest.startswith("/")
            and len(text) <= URL_CHARS
            and not any(c.isspace() for c in text)
        ):
            return text
    notes.append("recording URL is not an http(s) link: left empty")
    return None
