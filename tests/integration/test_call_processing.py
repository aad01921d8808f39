"""Stored call-outcome webhooks processed into outcomes and opt-outs, on SQLite and PostgreSQL.

The receiver's rows are written straight into ``call_events`` (status ``new``),
as it commits them; :class:`CallProcessor` does the rest against the real database.
"""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import timedelta
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import call_outcome_store, suppression_store
from syncd.adapters.orm import CallEvent, CallOutcome, Lead, LeadTransition
from syncd.bootstrap import bootstrap
from syncd.config import parse_config
from syncd.config.calls import WebhookConfig
from syncd.domain.call_ref import make_ref
from syncd.metrics import REGISTRY
from syncd.services.call_processing import CallProcessor
from tests.clock import Clock
from tests.integration.delivery_rows import T0, insert_leads, make_sync, sf_id, states

SECRET = "c" * 40
WEBHOOK = WebhookConfig.model_validate(
    {
        "public_url": "https://hooks.example.com",
        "token": "t" * 40,
        "correlation_secret": SECRET,
        "disposition_map": {"DNC": "do_not_call"},
    }
)
SYNCS = [make_sync("web"), make_sync("other", call_writeback={"mode": "tasks"})]
PHONE = "+14155550100"
RECEIVED = T0 + timedelta(minutes=5)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + timedelta(minutes=10))


@pytest.fixture
def processor(sessions: sessionmaker[Session], clock: Clock) -> CallProcessor:
    return CallProcessor(sessions, WEBHOOK, SYNCS, holder="test", now=clock, batch=2)


def lead_id(sessions: sessionmaker[Session], salesforce_id: str) -> int:
    with sessions() as session:
        return int(session.scalar(select(Lead.id).where(Lead.salesforce_id == salesforce_id)))


def hook(salesforce_id: str, lead: int, *, secret: str = SECRET, **call: Any) -> dict[str, Any]:
    """The example payload of docs/call-outcomes.md for one lead."""
    return {
        "event": "call.completed",
        "callId": call.pop("call_id", "call_1"),
        "lead": {"customData": {"syncdRef": make_ref(secret.encode(), salesforce_id, lead)}},
        "call": {
            "outcome": "answered",
            "disposition": "interested",
            "durationSeconds": 74,
            "startedAt": "2026-01-05T09:03:00Z",
            **call,
        },
    }


def store_event(
    sessions: sessionmaker[Session], body: dict[str, Any] | str, received: Any = RECEIVED
) -> int:
    """One webhook POST as the receiver commits it."""
    text = body if isinstance(body, str) else json.dumps(body)
    with sessions.begin() as session:
        return int(
            session.execute(
                insert(CallEvent)
                .values(
                    digest=hashlib.sha256(text.encode()).hexdigest(),
                    received_at=received,
                    receiver="test",
                    headers={"content-type": "application/json"},
                    body=text,
                    status="new",
                )
                .returning(CallEvent.id)
            ).scalar_one()
        )


def events(sessions: sessionmaker[Session]) -> list[tuple[Any, ...]]:
    with sessions() as session:
        rows = session.execute(
            select(CallEvent.id, CallEvent.status, CallEvent.lead_id, CallEvent.detail).order_by(
                CallEvent.id
            )
        )
        return [tuple(row) for row in rows]


def outcomes(sessions: sessionmaker[Session]) -> list[CallOutcome]:
    with sessions() as session:
        return list(session.scalars(select(CallOutcome).order_by(CallOutcome.id)))


def first_call(sessions: sessionmaker[Session], salesforce_id: str) -> Any:
    with sessions() as session:
        return session.scalar(select(Lead.first_call_at).where(Lead.salesforce_id == salesforce_id))


def set_state(sessions: sessionmaker[Session], salesforce_id: str, state: str) -> None:
    with sessions.begin() as session:
        session.execute(update(Lead).where(Lead.salesforce_id == salesforce_id).values(state=state))


class TestOutcomes:
    def test_a_hook_becomes_one_outcome_of_its_lead(
        self, sessions: sessionmaker[Session], processor: CallProcessor
    ) -> None:
        [web] = insert_leads(sessions, [1], sync="web")
        [other] = insert_leads(sessions, [2], sync="other")
        store_event(sessions, hook(web, lead_id(sessions, web)))
        store_event(sessions, hook(other, lead_id(sessions, other), call_id="call_2"))
        result = processor.run()
        assert (result.status, result.matched, result.outcomes) == ("ok", 2, 2)
        rows = outcomes(sessions)
        assert [(r.salesforce_id, r.call_key, r.sync_name) for r in rows] == [
            (web, "call_1", "web"),
            (other, "call_2", "other"),
        ]
        first = rows[0]
        assert (first.outcome, first.disposition, first.duration_seconds) == (
            "answered",
            "interested",
            74,
        )
        assert first.received_at == RECEIVED
        # Only the sync with call_writeback queues its outcomes for Salesforce.
        assert [r.writeback_status for r in rows] == ["none", "pending"]
        assert [status for _id, status, _lead, _d in events(sessions)] == ["matched", "matched"]
        assert first_call(sessions, web) == RECEIVED
        assert states(sessions) == {web: "queued", other: "queued"}

    def test_duplicate_and_out_of_order_hooks_of_one_call_make_one_outcome(
        self, sessions: sessionmaker[Session], processor: CallProcessor
    ) -> None:
        """A redelivery with other bytes, then an older hook arriving late: still one row."""
        [web] = insert_leads(sessions, [1], sync="web")
        lead = lead_id(sessions, web)
        first = hook(web, lead, disposition="callback")
        redelivered = copy.deepcopy(first) | {"deliveredAt": "2026-01-05T09:06:00Z"}
        late = hook(web, lead, outcome="ringing", disposition=None)
        store_event(sessions, first)
        store_event(sessions, redelivered, RECEIVED + timedelta(seconds=5))
        store_event(sessions, late, RECEIVED + timedelta(seconds=9))
        store_event(sessions, hook(web, lead, call_id="call_2"), RECEIVED + timedelta(minutes=1))
        result = processor.run()
        assert (result.matched, result.outcomes) == (4, 2)
        rows = outcomes(sessions)
        assert [(r.call_key, r.disposition) for r in rows] == [
            ("call_1", "callback"),
            ("call_2", "interested"),
        ]
        details = [detail for _id, _status, _lead, detail in events(sessions)]
        assert details[0] is None
        assert details[1] == details[2] == "call call_1 was stored already: the first is kept"
        assert first_call(sessions, web) == RECEIVED
        assert processor.run().events == 0

    def test_a_crash_mid_batch_leaves_the_events_new_and_they_are_processed_once(
        self,
        sessions: sessionmaker[Session],
        processor: CallProcessor,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        [web] = insert_leads(sessions, [1], sync="web")
        lead = lead_id(sessions, web)
        store_event(sessions, hook(web, lead))
        store_event(sessions, hook(web, lead, call_id="call_2"))
        mark = call_outcome_store.mark
        calls: list[int] = []

        def dies_on_the_second(*args: Any, **kwargs: Any) -> None:
            calls.append(1)
            if len(calls) == 2:
                raise SystemExit("process killed")
            mark(*args, **kwargs)

        monkeypatch.setattr(call_outcome_store, "mark", dies_on_the_second)
        with pytest.raises(SystemExit):
            processor.run()
        assert [status for _id, status, _l, _d in events(sessions)] == ["new", "new"]
        assert outcomes(sessions) == [] and first_call(sessions, web) is None
        monkeypatch.setattr(call_outcome_store, "mark", mark)
        assert processor.run().outcomes == 2
        assert len(outcomes(sessions)) == 2


class TestNothingMatched:
    def test_a_forged_hook_is_unmatched_and_changes_nothing(
        self, sessions: sessionmaker[Session], processor: CallProcessor
    ) -> None:
        [web] = insert_leads(sessions, [1], sync="web", phones={1: PHONE})
        lead = lead_id(sessions, web)
        forged = hook(web, lead, secret="f" * 40, disposition="do_not_call")
        store_event(sessions, forged)
        result = processor.run()
        assert (result.unmatched, result.outcomes, result.opt_outs) == (1, 0, 0)
        [(_id, status, event_lead, detail)] = events(sessions)
        assert (status, event_lead) == ("unmatched", None)
        assert "MAC does not match" in detail
        assert outcomes(sessions) == [] and first_call(sessions, web) is None
        assert states(sessions) == {web: "queued"}
        with sessions() as session:
            assert suppression_store.count(session) == 0

    def test_a_genuine_ref_of_a_lead_that_is_not_there_is_unmatched(
        self, sessions: sessionmaker[Session], processor: CallProcessor
    ) -> None:
        store_event(sessions, hook(sf_id(9), 999_999))
        processor.run()
        [(_id, status, _lead, detail)] = events(sessions)
        assert (status, detail) == ("unmatched", f"no such lead: {sf_id(9)} lead 999999")

    def test_bodies_the_paths_cannot_read_are_kept_unreadable(
        self, sessions: sessionmaker[Session], processor: CallProcessor
    ) -> None:
        [web] = insert_leads(sessions, [1], sync="web")
        lead = lead_id(sessions, web)
        shapeless = hook(web, lead)
        shapeless["call"] = {"result": "answered"}
        store_event(sessions, shapeless)
        store_event(sessions, "not json at all")
        result = processor.run()
        assert result.unreadable == 2
        rows = events(sessions)
        assert [(status, event_lead) for _id, status, event_lead, _d in rows] == [
            ("unreadable", lead),
            ("unreadable", None),
        ]
        assert rows[1][3] == "the body is not JSON"
        assert outcomes(sessions) == [] and first_call(sessions, web) is None


class TestOptOuts:
    def test_an_opt_out_suppresses_the_number_and_skips_its_leads_in_every_sync(
        self, sessions: sessionmaker[Session], processor: CallProcessor
    ) -> None:
        """The called lead's number goes on the list; a queued and a held lead of that
        number in another sync are skipped; another number's lead is untouched."""
        [called] = insert_leads(sessions, [1], sync="web", phones={1: PHONE})
        queued, held = insert_leads(sessions, [2, 3], sync="other", agent="agt_2",
                                    phones={2: PHONE, 3: PHONE})  # fmt: skip
        [elsewhere] = insert_leads(sessions, [4], sync="other")
        set_state(sessions, called, "accepted")
        set_state(sessions, held, "held")
        before = REGISTRY.get_sample_value("syncd_call_optout_seconds_count") or 0
        event = store_event(sessions, hook(called, lead_id(sessions, called), disposition="DNC"))
        result = processor.run()
        assert (result.opt_outs, result.skipped) == (1, 2)
        assert states(sessions) == {
            called: "accepted",
            queued: "skipped",
            held: "skipped",
            elsewhere: "queued",
        }
        queued_id = lead_id(sessions, queued)
        with sessions() as session:
            [entry] = suppression_store.listed(session)
            reasons = session.scalars(
                select(LeadTransition.reason).where(
                    LeadTransition.to_state == "skipped", LeadTransition.lead_id == queued_id
                )
            ).all()
        assert (entry.phone_e164, entry.source, entry.added_by) == (
            PHONE,
            "call_outcome",
            "call outcome",
        )
        assert (entry.record_id, entry.sync_name, entry.seen_at) == (called, "web", RECEIVED)
        assert "'do_not_call'" in entry.reason and f"call event {event}" in entry.reason
        assert reasons == ["number opted out on a call: do_not_call"]
        assert [r.opt_out for r in outcomes(sessions)] == [True]
        after = REGISTRY.get_sample_value("syncd_call_optout_seconds_count")
        assert after == before + 1

    def test_a_late_hook_of_a_stored_call_still_honours_its_opt_out(
        self, sessions: sessionmaker[Session], processor: CallProcessor
    ) -> None:
        """The first hook of the call said interested; a later one says opt out: the
        outcome is the first, and the number is suppressed all the same."""
        [called] = insert_leads(sessions, [1], sync="web", phones={1: PHONE})
        [queued] = insert_leads(sessions, [2], sync="other", phones={2: PHONE})
        lead = lead_id(sessions, called)
        store_event(sessions, hook(called, lead))
        processor.run()
        store_event(sessions, hook(called, lead, disposition="opt_out"), RECEIVED + timedelta(1))
        assert processor.run().opt_outs == 1
        assert [r.disposition for r in outcomes(sessions)] == ["interested"]
        assert states(sessions)[queued] == "skipped"
        with sessions() as session:
            assert suppression_store.suppressed_among(session, [PHONE])


class TestLeadership:
    def test_only_the_lease_holder_processes(
        self, sessions: sessionmaker[Session], clock: Clock, processor: CallProcessor
    ) -> None:
        [web] = insert_leads(sessions, [1], sync="web")
        store_event(sessions, hook(web, lead_id(sessions, web)))
        other = CallProcessor(sessions, WEBHOOK, SYNCS, holder="other", now=clock)
        assert processor.run().matched == 1
        store_event(sessions, hook(web, lead_id(sessions, web), call_id="call_2"))
        assert other.run().status == "standby"
        assert [status for _i, status, _l, _d in events(sessions)] == ["matched", "new"]
        processor.close()
        assert other.run().matched == 1


class TestRuntime:
    def test_the_runtime_processes_with_a_webhook_and_not_without(
        self, sessions: sessionmaker[Session], engine: Engine
    ) -> None:
        """``syncd run``'s calls job and ``syncd once`` call Runtime.process_calls."""
        data: dict[str, Any] = {
            "database": {"url": "sqlite:///unused.db"},
            "salesforce": {
                "auth": {
                    "method": "session",
                    "session_id": "dummy-session-id",
                    "instance_url": "https://127.0.0.1:9",
                }
            },
            "simz": {"base_url": "http://127.0.0.1:9", "api_key": "literal-test-key"},
            "syncs": [{"name": "web", "agent": "agt_1", "mapping": {"phoneNumber": "Phone"}}],
        }
        plain = parse_config(yaml.safe_dump(data))
        data["simz"]["webhook"] = WEBHOOK.model_dump(mode="json") | {
            "token": "t" * 40,
            "correlation_secret": SECRET,
        }
        hooked = parse_config(yaml.safe_dump(data))
        [web] = insert_leads(sessions, [1], sync="web")
        store_event(sessions, hook(web, lead_id(sessions, web)))
        for config, expected in ((plain, None), (hooked, 1)):
            runtime = bootstrap(config, engine=engine, apply_migrations=False, recover=False)
            try:
                result = runtime.process_calls()
                assert (result.matched if result is not None else None) == expected
            finally:
                runtime.close()
        assert len(outcomes(sessions)) == 1


class TestSpeedToLead:
    def test_a_leads_first_call_is_observed_once_from_its_accept(
        self, sessions: sessionmaker[Session], processor: CallProcessor
    ) -> None:
        """first_call = accepted -> first hook received, observed for the first call only."""
        from syncd.metrics import REGISTRY

        [web] = insert_leads(sessions, [1], sync="web")
        with sessions.begin() as session:
            session.execute(
                update(Lead)
                .where(Lead.salesforce_id == web)
                .values(accepted_at=RECEIVED - timedelta(seconds=40))
            )
        labels = {"sync": "web", "stage": "first_call"}

        def observed() -> tuple[float, float]:
            count = REGISTRY.get_sample_value("syncd_speed_to_lead_seconds_count", labels)
            total = REGISTRY.get_sample_value("syncd_speed_to_lead_seconds_sum", labels)
            return count or 0.0, total or 0.0

        before = observed()
        lead = lead_id(sessions, web)
        store_event(sessions, hook(web, lead))
        store_event(sessions, hook(web, lead, call_id="call_2"), RECEIVED + timedelta(minutes=1))
        assert processor.run().outcomes == 2
        count, total = observed()
        assert (count - before[0], round(total - before[1], 3)) == (1.0, 40.0)

    def test_a_hook_before_the_accept_counts_zero(
        self, sessions: sessionmaker[Session], processor: CallProcessor
    ) -> None:
        """The accept not recorded yet: first_call is observed as 0, not left out."""
        from syncd.metrics import REGISTRY

        [web] = insert_leads(sessions, [1], sync="web")
        labels = {"sync": "web", "stage": "first_call"}

        def observed() -> tuple[float, float]:
            count = REGISTRY.get_sample_value("syncd_speed_to_lead_seconds_count", labels)
            total = REGISTRY.get_sample_value("syncd_speed_to_lead_seconds_sum", labels)
            return count or 0.0, total or 0.0

        before = observed()
        store_event(sessions, hook(web, lead_id(sessions, web)))
        assert processor.run().outcomes == 1
        count, total = observed()
        assert (count - before[0], total - before[1]) == (1.0, 0.0)
