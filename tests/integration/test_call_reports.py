"""What operators read about calls: ``status``'s calls section, ``explain``'s calls of a lead
and ``audit export``'s calls of a number, from rows in a real SQLite file and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from syncd.entrypoints.cli_explain import render, story_json
from syncd.entrypoints.cli_status import _render_status
from syncd.services import operator as ops
from syncd.services.audit_export import CALL_ROW, csv_table, export_number
from syncd.services.explain import explain
from tests.integration.call_rows import add_call, add_event
from tests.integration.operator_rows import T0, add_lead, make_config, sf_id
from tests.integration.test_call_metrics import calls_config

NUMBER = "+15551234567"  # every lead of operator_rows.add_lead has it


def seed(sessions: sessionmaker[Session]) -> dict[str, Any]:
    """Two leads of the number; three calls (one an opt-out), one event unmatched, one new."""
    with sessions.begin() as s:
        lead = add_lead(s, "web", sf_id(1), "accepted")
        other = add_lead(s, "partner", sf_id(2), "skipped", agent="agt_x")
        first = add_call(
            s,
            lead,
            T0 - timedelta(minutes=9),
            writeback_status="done",
            task_id="00T000000000001AAA",
        )
        add_call(
            s,
            lead,
            T0 - timedelta(minutes=4),
            writeback_status="failed",
            disposition="do_not_call",
            raw_disposition="DNC",
            opt_out=True,
            last_error="FIELD_CUSTOM_VALIDATION_EXCEPTION: no",
        )
        add_call(s, other, T0 - timedelta(minutes=3), writeback_status="none", outcome="voicemail")
        add_event(s, "unmatched", T0 - timedelta(minutes=2), detail="no correlation value")
        add_event(s, "new", T0 - timedelta(seconds=90))
        return {"lead": lead.id, "other": other.id, "first_event": first.event_id}


def test_status_counts_events_and_write_backs(sessions: sessionmaker[Session]) -> None:
    """Events by status with the oldest new one; call write-backs by status per sync."""
    seed(sessions)
    report = ops.status(sessions, calls_config(), now=lambda: T0)
    calls = report.to_dict()["calls"]
    assert calls["events"] == {"new": 1, "matched": 3, "unmatched": 1, "unreadable": 0}
    assert calls["oldest_pending_seconds"] == 90
    web, partner = calls["writebacks"]
    assert web == {"sync": "web", "mode": "tasks", "pending": 0, "sending": 0, "done": 1,
                   "failed": 1, "none": 0}  # fmt: skip
    assert (partner["sync"], partner["mode"], partner["none"]) == ("partner", None, 1)
    text = "\n".join(_render_status(report))
    assert "events  1 new, 3 matched, 1 unmatched, 0 unreadable; oldest new received" in text
    assert "(1.5m ago)" in text
    assert "tasks" in text and "IN DOUBT" in text


def test_status_has_no_calls_section_without_webhooks(sessions: sessionmaker[Session]) -> None:
    """Webhooks off and nothing stored: no section, in text or JSON; stored events show it."""
    report = ops.status(sessions, make_config(), now=lambda: T0)
    assert report.to_dict()["calls"] is None
    assert "calls (webhooks" not in "\n".join(_render_status(report))
    seed(sessions)
    assert ops.status(sessions, make_config(), now=lambda: T0).calls is not None


def test_status_without_events(sessions: sessionmaker[Session]) -> None:
    """Webhooks on, nothing received yet: zeros, and nothing waits."""
    report = ops.status(sessions, calls_config(), now=lambda: T0)
    assert report.calls is not None
    assert report.calls.oldest_pending_seconds is None
    assert "none waits to be processed" in "\n".join(_render_status(report))


def test_explain_lists_the_leads_calls(sessions: sessionmaker[Session]) -> None:
    """Each lead has its own calls, oldest first, with the Task or the refusal."""
    ids = seed(sessions)
    [story] = explain(sessions, sf_id(1))
    assert [c.disposition for c in story.calls] == ["interested", "do_not_call"]
    lines = render([story])
    calls_at = lines.index("  calls:")
    assert "write-back done, Task 00T000000000001AAA" in lines[calls_at + 1]
    assert "do_not_call (SimZ: DNC), 74s, OPT-OUT" in lines[calls_at + 2]
    assert "failed: FIELD_CUSTOM_VALIDATION_EXCEPTION: no" in lines[calls_at + 2]
    assert lines[calls_at + 3].startswith("  speed to lead")
    body = story_json(story)
    assert body["calls"][0]["event_id"] == ids["first_event"]
    assert body["calls"][1]["opt_out"] is True
    [other] = explain(sessions, str(ids["other"]))
    assert [c.outcome for c in other.calls] == ["voicemail"]


def test_audit_export_has_the_numbers_calls(sessions: sessionmaker[Session]) -> None:
    """Every sync's calls of the number, in JSON and as CSV rows of kind call; another
    number's pack has none."""
    seed(sessions)
    pack = export_number(sessions, NUMBER, now=T0)
    assert [(c.sync, c.disposition) for c in pack.calls] == [
        ("web", "interested"),
        ("web", "do_not_call"),
        ("partner", "interested"),
    ]
    _headers, rows = csv_table(pack)
    calls = [row for row in rows if row[0] == CALL_ROW]
    assert len(calls) == 3
    assert "an opt-out: the number was put on the suppression list" in calls[1][10]
    assert export_number(sessions, "+15550000000", now=T0).calls == []
