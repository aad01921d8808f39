"""Rows of ``call_events`` and ``call_outcomes`` written straight into a real database, as the
receiver and the processor leave them, for the tests of what operators read about calls."""

from __future__ import annotations

import json
from datetime import datetime
from itertools import count
from typing import Any

from sqlalchemy.orm import Session

from syncd.adapters.call_events import digest
from syncd.adapters.orm import CallEvent, CallOutcome, Lead

_BODIES = count(1)


def add_event(
    session: Session,
    status: str,
    received_at: datetime,
    *,
    lead: Lead | None = None,
    detail: str | None = None,
) -> CallEvent:
    """One stored webhook POST, ``new`` or already processed into ``status``."""
    body = json.dumps({"n": next(_BODIES), "at": received_at.isoformat()})
    event = CallEvent(
        digest=digest(body.encode()),
        received_at=received_at,
        receiver="replica-a",
        headers={"content-type": "application/json"},
        body=body,
        status=status,
        processed_at=None if status == "new" else received_at,
        lead_id=lead.id if lead is not None else None,
        detail=detail,
    )
    session.add(event)
    session.flush()
    return event


def add_call(
    session: Session,
    lead: Lead,
    received_at: datetime,
    *,
    writeback_status: str = "none",
    disposition: str = "interested",
    **values: Any,
) -> CallOutcome:
    """One call outcome of ``lead`` with the event it was read from (``matched``)."""
    event = add_event(session, "matched", received_at, lead=lead)
    row = CallOutcome(
        lead_id=lead.id,
        event_id=event.id,
        call_key=values.pop("call_key", f"call_{event.id}"),
        sync_name=lead.sync_name,
        salesforce_id=lead.salesforce_id,
        outcome=values.pop("outcome", "answered"),
        disposition=disposition,
        raw_disposition=values.pop("raw_disposition", disposition),
        duration_seconds=values.pop("duration_seconds", 74),
        received_at=received_at,
        writeback_status=writeback_status,
        attempts=0,
        **values,
    )
    session.add(row)
    session.flush()
    return row
