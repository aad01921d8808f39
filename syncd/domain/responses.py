"""Classify a SimZ answer into what happens to the leads of a batch (docs/design.md#simz-answers).

Pure code: status code and body bytes in, a :class:`Classified` decision out.
The delivery service applies the decision to the database; nothing here knows
about sessions or HTTP clients, so every row of the table is a plain unit test.

The one rule that matters most: a lead may go back to ``queued`` only when
SimZ said that nothing was queued (400-family, 401, 402, 404, 429, 503) or the
connection never opened. Anything we cannot read makes the batch
``uncertain``, because SimZ has no idempotency key and a resend could make a
machine phone a person twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Handling(StrEnum):
    """How delivery handles the leads of a batch, given SimZ's answer (the gate's
    per-lead verdicts are :class:`syncd.domain.gate.Action`)."""

    #: 200: accepted, except the leads named in ``errors[]`` -> rejected.
    RECORD = "record"
    #: 400 and unlisted 4xx: nothing queued; split and resend halves (one lead -> rejected).
    SPLIT = "split"
    #: 429, 503, nothing sent: back to ``queued`` after a backoff, one attempt consumed.
    RETRY = "retry"
    #: 401, 402: back to ``queued`` (no attempt consumed) and pause the API key.
    PAUSE_KEY = "pause_key"
    #: 404: back to ``queued`` (no attempt consumed) and pause the agent.
    PAUSE_AGENT = "pause_agent"
    #: The request may have reached SimZ and we cannot tell: ``uncertain``, never resent.
    UNCERTAIN = "uncertain"


@dataclass(frozen=True)
class Rejection:
    """One entry of a 200's ``errors[]``: the lead at ``index`` was refused."""

    index: int
    code: str | None
    message: str | None


@dataclass(frozen=True)
class Classified:
    """The decision for one answer; ``reason`` goes into each lead's transition."""

    action: Handling
    reason: str
    status: int | None = None
    simz_batch_id: str | None = None
    #: For RECORD: index in the request -> why that lead was rejected.
    rejections: dict[int, Rejection] = field(default_factory=dict)
    #: Things worth a warning log (odd counts, bad indexes); never a crash.
    warnings: tuple[str, ...] = ()
    #: ``code``/``message`` of an error body (used when a single lead is rejected on 4xx).
    error_code: str | None = None
    error_message: str | None = None
    #: 402 only: the body's ``data.actionRequired``.
    action_required: str | None = None
    #: The ``accepted``/``rejected`` counts SimZ reported, when it did.
    reported_accepted: int | None = None
    reported_rejected: int | None = None


class UnreadableBody(ValueError):
    """A body that is not what the spec promises for its status."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        decoded = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnreadableBody(f"body is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(decoded, dict):
        raise UnreadableBody(f"body is JSON {type(decoded).__name__}, not an object")
    return decoded


def _optional_str(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None or isinstance(value, str):
        return value
    raise UnreadableBody(f"{name} is {type(value).__name__}, not a string")


def _error_fields(body: bytes) -> tuple[str | None, str | None, dict[str, Any]]:
    """``code``, ``message`` and the object of an error answer; lenient (it only informs)."""
    try:
        data = _json_object(body)
    except UnreadableBody:
        return None, None, {}
    code = data.get("code")
    message = data.get("message")
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else None,
        data,
    )


@dataclass(frozen=True)
class _OkBody:
    """A 200's body, read as the spec promises it."""

    batch_id: str | None
    success: bool | None
    accepted: int | None
    rejected: int | None
    errors: tuple[Rejection, ...]


def _optional_int(data: dict[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is not None and not _is_int(value):
        raise UnreadableBody(f"{name} is not an integer")
    return value


def _errors(data: dict[str, Any]) -> tuple[Rejection, ...]:
    """``errors[]`` as given (absent: none); every entry needs an integer index."""
    errors = data.get("errors")
    if errors is None:
        errors = []
    if not isinstance(errors, list):
        raise UnreadableBody("errors is not an array")
    parsed: list[Rejection] = []
    for item in errors:
        if not isinstance(item, dict) or not _is_int(item.get("index")):
            raise UnreadableBody("an errors[] entry has no integer index")
        parsed.append(
            Rejection(item["index"], _optional_str(item, "code"), _optional_str(item, "message"))
        )
    return tuple(parsed)


def _read_ok(body: bytes) -> _OkBody:
    """The fields of a 200's body; :class:`UnreadableBody` if one has the wrong type."""
    data = _json_object(body)
    batch_id = _optional_str(data, "batchId")
    success = data.get("success")
    if success is not None and not isinstance(success, bool):
        raise UnreadableBody("success is not a boolean")
    accepted = _optional_int(data, "accepted")
    rejected = _optional_int(data, "rejected")
    return _OkBody(batch_id, success, accepted, rejected, _errors(data))


def _by_index(
    parsed: tuple[Rejection, ...], lead_count: int, warnings: list[str]
) -> dict[int, Rejection]:
    """The rejections by index in the batch; an index out of range or named twice is
    left out with a warning."""
    rejections: dict[int, Rejection] = {}
    for rejection in parsed:
        if not 0 <= rejection.index < lead_count:
            warnings.append(
                f"errors[] names index {rejection.index}, outside a batch of {lead_count}"
            )
        elif rejection.index in rejections:
            warnings.append(f"errors[] names index {rejection.index} more than once")
        else:
            rejections[rejection.index] = rejection
    return rejections


def _count_warnings(read: _OkBody, rejected: int, lead_count: int) -> list[str]:
    """The counts SimZ reported that disagree with its ``errors[]``."""
    warnings: list[str] = []
    accepted_count = lead_count - rejected
    if read.accepted is not None and read.accepted != accepted_count:
        warnings.append(
            f"SimZ reported accepted={read.accepted} but errors[] leaves {accepted_count}"
        )
    if read.rejected is not None and read.rejected != rejected:
        warnings.append(f"SimZ reported rejected={read.rejected} but errors[] names {rejected}")
    return warnings


def classify_ok(body: bytes, lead_count: int) -> Classified:
    """A 200: who was accepted and who was rejected, or ``uncertain`` if unreadable."""
    try:
        read = _read_ok(body)
    except UnreadableBody as exc:
        return Classified(Handling.UNCERTAIN, f"200 with an unreadable body: {exc}", status=200)
    warnings: list[str] = []
    rejections = _by_index(read.errors, lead_count, warnings)
    if read.success is False and not rejections:
        return Classified(
            Handling.UNCERTAIN,
            "200 with success=false and no usable errors[]: outcome unknown",
            status=200,
            simz_batch_id=read.batch_id,
            warnings=tuple(warnings),
        )
    warnings.extend(_count_warnings(read, len(rejections), lead_count))
    return Classified(
        Handling.RECORD,
        "accepted by SimZ",
        status=200,
        simz_batch_id=read.batch_id,
        rejections=rejections,
        warnings=tuple(warnings),
        reported_accepted=read.accepted,
        reported_rejected=read.rejected,
    )


def classify(status: int, body: bytes, lead_count: int) -> Classified:
    """Decide what an HTTP answer means for the ``lead_count`` leads of its batch."""
    if status == 200:
        return classify_ok(body, lead_count)
    code, message, data = _error_fields(body)
    detail = f" ({code}: {message})" if code or message else ""
    common: dict[str, Any] = {"status": status, "error_code": code, "error_message": message}
    if status == 401:
        return Classified(Handling.PAUSE_KEY, f"401 API key refused{detail}", **common)
    if status == 402:
        nested = data.get("data")
        action_required = nested.get("actionRequired") if isinstance(nested, dict) else None
        return Classified(
            Handling.PAUSE_KEY,
            f"402 insufficient credits{detail}",
            action_required=action_required if isinstance(action_required, str) else None,
            **common,
        )
    if status == 404:
        return Classified(Handling.PAUSE_AGENT, f"404 agent not found{detail}", **common)
    if status == 429:
        return Classified(Handling.RETRY, f"429 rate limited{detail}", **common)
    if status == 503:
        return Classified(Handling.RETRY, f"503 billing check failed{detail}", **common)
    if 400 <= status < 500:
        return Classified(Handling.SPLIT, f"{status} nothing queued{detail}", **common)
    return Classified(
        Handling.UNCERTAIN, f"unexpected HTTP {status}: SimZ may have queued the batch", **common
    )


def nothing_sent(reason: str) -> Classified:
    """The connection never opened (refused, DNS, TLS, connect timeout): retry later."""
    return Classified(Handling.RETRY, f"nothing sent: {reason}")


def maybe_sent(reason: str) -> Classified:
    """The request may have reached SimZ (read timeout, reset, write failure)."""
    return Classified(Handling.UNCERTAIN, f"outcome unknown: {reason}")
