"""A dial decision's inputs in plain words, and flattened for a spreadsheet (pure, no I/O).

The send gate keeps, for every lead it lets go to ``sending``, what it read
(``dial_decisions.inputs``, docs/safety.md#the-record-of-every-dial-decision):
DoNotCall, consent, the suppression list, the per-number sends against each
cap, the duplicate-phone window and the calling hours with the local time.
``syncd explain`` and ``syncd audit export`` show those inputs to people who
must answer "why was this number called?", often long after the fact, so the
reading is tolerant: a key that is missing (a row older than the rule) reads as
"not recorded", a null one (the rule was off) as "off", and a value of an
unexpected shape is quoted as it is rather than dropped or fatal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from syncd.domain.durations import format_duration

#: The keys the send gate records, in the order they are told.
KNOWN_INPUTS = (
    "do_not_call",
    "consent",
    "suppression",
    "duplicate_window_seconds",
    "frequency",
    "calling_hours",
)

_DEFAULT_CAP_SOURCE = "rules.max_sends_per_number"
_LAPSE = re.compile(r"lapsing after ([^,)]+)")
_TRAILING_SOURCE = re.compile(r"\(([^()]*)\)\s*$")
_ZONE_SOURCES = {
    "phone": "from the phone number",
    "field": "from the record's time-zone field",
    "fixed": "the sync's fixed zone",
}


def _quoted(value: Any) -> str:
    """A value of an unexpected shape, as JSON (so nothing is hidden or reinterpreted)."""
    return json.dumps(value, sort_keys=True, default=str)


def _number(value: Any) -> float | None:
    """A JSON number (never a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _seconds(value: Any) -> str | None:
    """A number of seconds as people write periods (``24h``, ``7d``, ``90s``); None if not one.

    Up to two days in whole hours read as hours (``24h``, ``48h``), as rules are written.
    """
    seconds = _number(value)
    if seconds is None or seconds < 0 or seconds > 3650 * 86400:
        return None
    if 0 < seconds <= 2 * 86400 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    return format_duration(timedelta(seconds=seconds))


def age_words(seconds: float) -> str:
    """How old, in the largest whole unit: ``40 days``, ``5 hours``, ``1 minute``."""
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    count = max(int(seconds), 0)
    return f"{count} second{'s' if count != 1 else ''}"


def do_not_call_words(value: Any) -> str:
    if value is False:
        return "DoNotCall not set"
    if value is True:
        return "DoNotCall set"
    return f"DoNotCall recorded as {_quoted(value)}"


def consent_words(value: Any) -> str:
    if value is None:
        return "consent rule off"
    if not isinstance(value, Mapping):
        return f"consent recorded as {_quoted(value)}"
    rule = value.get("rule")
    field = rule.split(" (", 1)[0] if isinstance(rule, str) and rule else "the consent field"
    given = value.get("value")
    words = f"consent {field} = {given}" if given is not None else f"consent {field} empty"
    age = _number(value.get("age_seconds"))
    if age is not None and age >= 0:
        words += f", {age_words(age)} old"
    lapse = _LAPSE.search(rule) if isinstance(rule, str) else None
    if lapse is not None:
        words += f", within {lapse.group(1).strip()}"
    return words


def suppression_words(value: Any) -> str:
    if value is None:
        return "suppression list not checked"
    if not isinstance(value, Mapping):
        return f"suppression list recorded as {_quoted(value)}"
    if value.get("checked") is False:
        return "suppression list not checked"
    if value.get("listed") is False:
        return "number not on the suppression list"
    if value.get("listed") is True:
        return "number ON the suppression list"
    return f"suppression list recorded as {_quoted(dict(value))}"


def duplicate_window_words(value: Any) -> str:
    if value is None or _number(value) == 0:
        return "duplicate-phone window off"
    window = _seconds(value)
    if window is None:
        return f"duplicate-phone window recorded as {_quoted(value)}"
    return f"no other send of this number to the agent within {window}"


def _cap_words(cap: Any) -> str:
    if not isinstance(cap, Mapping):
        return f"frequency cap recorded as {_quoted(cap)}"
    period = _seconds(cap.get("per_seconds"))
    sent, count = _number(cap.get("sent")), _number(cap.get("count"))
    if period is None or sent is None or count is None:
        return f"frequency cap recorded as {_quoted(dict(cap))}"
    words = f"sends of this number in the last {period}: {int(sent)} of {int(count)} allowed"
    source = _TRAILING_SOURCE.search(cap["cap"]) if isinstance(cap.get("cap"), str) else None
    if source is not None and source.group(1) != _DEFAULT_CAP_SOURCE:
        words += f" ({source.group(1)})"
    return words


def frequency_words(value: Any) -> list[str]:
    if value is None or value == []:
        return ["no frequency cap"]
    if not isinstance(value, list):
        return [f"frequency caps recorded as {_quoted(value)}"]
    return [_cap_words(cap) for cap in value]


def _local_time(value: Any) -> str | None:
    """``08:00 Monday`` from an ISO local time; None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.strftime("%H:%M %A")


def calling_hours_words(value: Any) -> str:
    if value is None:
        return "no calling hours"
    if not isinstance(value, Mapping):
        return f"calling hours recorded as {_quoted(value)}"
    zones = value.get("zones")
    where = ", ".join(str(z) for z in zones) if isinstance(zones, list) and zones else None
    when = _local_time(value.get("local_time"))
    words = f"local time {when or value.get('local_time') or 'not recorded'}"
    if where:
        words += f" in {where}"
    source = value.get("zone_source")
    if source is not None:
        words += f" ({_ZONE_SOURCES.get(str(source), f'zone from {source}')})"
    words += f", inside {value.get('rule') or 'its calling hours'}"
    states = value.get("states")
    if isinstance(states, list) and states:
        words += f"; state {', '.join(str(s) for s in states)}"
        if value.get("state_source"):
            words += f" (from the {value['state_source']})"
        if value.get("profile"):
            words += f", {value['profile']} rules"
    return words


_CLAUSES: dict[str, Callable[[Any], str | list[str]]] = {
    "do_not_call": do_not_call_words,
    "consent": consent_words,
    "suppression": suppression_words,
    "duplicate_window_seconds": duplicate_window_words,
    "frequency": frequency_words,
    "calling_hours": calling_hours_words,
}
_NOT_RECORDED = {
    "do_not_call": "DoNotCall not recorded",
    "consent": "consent not recorded",
    "suppression": "suppression list not recorded",
    "duplicate_window_seconds": "duplicate-phone window not recorded",
    "frequency": "frequency caps not recorded",
    "calling_hours": "calling hours not recorded",
}


def decision_words(inputs: Any) -> list[str]:
    """The inputs of one dial decision as clauses, in :data:`KNOWN_INPUTS` order.

    Joined with ``"; "`` they read as one sentence: ``DoNotCall not set; consent
    ConsentDate__c = 2026-01-02, 40 days old, within 365d; number not on the
    suppression list; ...``. Keys the gate did not record read "not recorded";
    keys this version does not know are named with their values at the end.
    """
    if not isinstance(inputs, Mapping):
        return [f"inputs recorded as {_quoted(inputs)}"]
    clauses: list[str] = []
    for key in KNOWN_INPUTS:
        if key not in inputs:
            clauses.append(_NOT_RECORDED[key])
            continue
        said = _CLAUSES[key](inputs[key])
        clauses += said if isinstance(said, list) else [said]
    for key in sorted(set(inputs) - set(KNOWN_INPUTS), key=str):
        clauses.append(f"{key} = {_quoted(inputs[key])}")
    return clauses


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, Mapping):
        if not value:
            out[prefix] = ""
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out)
    elif isinstance(value, list) and any(isinstance(i, Mapping | list) for i in value):
        for index, item in enumerate(value):
            _flatten(f"{prefix}.{index}", item, out)
    elif isinstance(value, list):
        out[prefix] = " ".join(str(item) for item in value)
    elif value is None:
        out[prefix] = ""
    elif isinstance(value, bool):
        out[prefix] = "true" if value else "false"
    else:
        out[prefix] = str(value)


def flatten_inputs(inputs: Any) -> dict[str, str]:
    """One dial decision's inputs as ``column -> text``, for a CSV row.

    Nested keys join with dots (``consent.value``, ``calling_hours.zones``), list
    items of objects get their index (``frequency.0.sent``), lists of plain values
    are joined by spaces, and null is the empty string. Inputs that are not an
    object at all land in one ``inputs`` column.
    """
    out: dict[str, str] = {}
    if not isinstance(inputs, Mapping):
        _flatten("inputs", inputs, out)
        return out
    for key, value in inputs.items():
        _flatten(str(key), value, out)
    return out


def input_columns(rows: list[dict[str, str]]) -> list[str]:
    """The columns of every flattened row: the known inputs first in their order, then the rest."""
    seen = list(dict.fromkeys(column for row in rows for column in row))

    def rank(column: str) -> tuple[int, int]:
        head = column.split(".", 1)[0]
        known = KNOWN_INPUTS.index(head) if head in KNOWN_INPUTS else len(KNOWN_INPUTS)
        return known, seen.index(column)

    return sorted(seen, key=rank)
