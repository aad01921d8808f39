"""Build the body of one SimZ request from stored lead payloads and sync options.

Pure code. The spec allows ``null`` for optional fields, but docs/design.md#requests
asks for absent fields to be left out, and empty strings are sent as absent:
nothing here ever emits ``null`` or ``""`` for an optional field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def _is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def clean_lead(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The LeadInput without null or empty optional fields (customData likewise)."""
    lead: dict[str, Any] = {}
    for name, value in payload.items():
        if name != "phoneNumber" and _is_blank(value):
            continue
        if name == "customData" and isinstance(value, Mapping):
            custom = {k: v for k, v in value.items() if not _is_blank(v)}
            if not custom:
                continue
            value = custom
        lead[name] = value
    return lead


def request_body(
    payloads: Iterable[Mapping[str, Any]],
    options: Mapping[str, Any] | None = None,
    refs: tuple[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """A LeadSubmissionRequest: ``leads`` in claim order, ``options`` only when set.

    ``refs`` (webhooks on): the customData key syncd adds and each lead's value,
    in the same order as ``payloads``; it replaces a mapped value of that key.
    The payloads themselves are never changed.
    """
    leads = [clean_lead(p) for p in payloads]
    if refs is not None:
        key, values = refs
        for lead, value in zip(leads, values, strict=True):
            custom = lead.get("customData")
            lead["customData"] = (
                {**custom, key: value} if isinstance(custom, Mapping) else {key: value}
            )
    body: dict[str, Any] = {"leads": leads}
    if options:
        present = {k: v for k, v in options.items() if not _is_blank(v)}
        if present:
            body["options"] = present
    return body
