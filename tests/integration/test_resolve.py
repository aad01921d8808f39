"""``resolve``: uncertain leads SimZ confirmed it has become accepted, on SQLite and PostgreSQL.

The adapter's one set-based function and the use case around it, on real
databases: only ``uncertain`` leads of the named sync move, each with its audit
trail, its write-back and one ``operator_actions`` row, and the uncertain gauge
reads 0 at the next refresh.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import writeback_store
from syncd.adapters.db import make_session_factory
from syncd.adapters.operator_queries import resolve_uncertain
from syncd.adapters.orm import Lead, LeadTransition, OperatorAction, Writeback
from syncd.config import Config, parse_config
from syncd.metrics import REGISTRY
from syncd.services import operator as ops
from syncd.services.state_metrics import refresh_state_metrics
from tests.integration.operator_rows import T0, add_batch, add_lead, config_dict, sf_id

#: When the operator resolves.
AT = T0 + timedelta(hours=2)
#: When the lost request was started.
SENT = T0 - timedelta(minutes=10)
TRAIL = "SimZ ticket 42: lead present (by alice)"


def config_writing_back(states: list[str]) -> Config:
    """The operator tests' configuration, with sync web writing ``states`` back."""
    raw: dict[str, Any] = config_dict()
    raw["syncs"][0]["writeback"] = {"fields": {"status": "SimZ_Status__c"}, "states": states}
    return parse_config(yaml.safe_dump(raw))


def seed(sessions: sessionmaker[Session]) -> int:
    """Two uncertain web leads (one sent, one never stamped), a queued and an accepted web
    lead, and an uncertain partner lead with the same Id as the first; returns the batch id."""
    with sessions.begin() as s:
        batch = add_batch(s, "web", "agt_1", http_status=500, outcome="uncertain")
        sent = add_lead(
            s,
            "web",
            sf_id(1),
            "uncertain",
            batch=batch,
            error_code="HTTP_500",
            error_message="answer lost",
        )
        sent.sent_at = SENT
        add_lead(s, "web", sf_id(2), "uncertain", batch=batch, error_code="HTTP_500")
        add_lead(s, "web", sf_id(3), "queued")
        add_lead(s, "web", sf_id(4), "accepted")
        add_lead(s, "partner", sf_id(1), "uncertain", agent="agt_x")
        return batch.id


def leads(sessions: sessionmaker[Session]) -> dict[tuple[str, str], Lead]:
    with sessions() as s:
        return {(x.sync_name, x.salesforce_id): x for x in s.scalars(select(Lead))}


def resolutions(sessions: sessionmaker[Session]) -> list[tuple[str, str, str, str, int | None]]:
    """(Salesforce Id, from, to, reason, batch) of every move into accepted from uncertain."""
    with sessions() as s:
        rows = s.execute(
            select(
                Lead.salesforce_id,
                LeadTransition.from_state,
                LeadTransition.to_state,
                LeadTransition.reason,
                LeadTransition.batch_id,
                LeadTransition.at,
            )
            .join(Lead, Lead.id == LeadTransition.lead_id)
            .where(LeadTransition.from_state == "uncertain")
            .order_by(Lead.salesforce_id)
        ).all()
    assert all(row.at == AT for row in rows)
    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def transition_count(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(LeadTransition)) or 0)


class TestResolveUncertain:
    def test_moves_only_the_uncertain_leads_of_the_sync(
        self, sessions: sessionmaker[Session]
    ) -> None:
        """Named uncertain web leads become accepted; other states, Ids and syncs stay."""
        batch_id = seed(sessions)
        before = leads(sessions)
        with sessions.begin() as s:
            moved = resolve_uncertain(
                s, "web", [sf_id(2), sf_id(1), sf_id(3), sf_id(4), sf_id(9)], reason=TRAIL, at=AT
            )
        assert moved == [sf_id(2), sf_id(1)]
        after = leads(sessions)
        assert {key: lead.state for key, lead in after.items()} == {
            ("web", sf_id(1)): "accepted",
            ("web", sf_id(2)): "accepted",
            ("web", sf_id(3)): "queued",
            ("web", sf_id(4)): "accepted",
            ("partner", sf_id(1)): "uncertain",
        }
        first, second = after[("web", sf_id(1))], after[("web", sf_id(2))]
        assert first.sent_at == SENT  # kept
        assert second.sent_at == AT  # was never stamped
        assert (first.error_code, first.error_message, second.error_code) == (None, None, None)
        assert first.updated_at == AT and first.batch_id == batch_id
        for untouched in (("web", sf_id(3)), ("web", sf_id(4)), ("partner", sf_id(1))):
            assert after[untouched].updated_at == before[untouched].updated_at
        assert resolutions(sessions) == [
            (sf_id(1), "uncertain", "accepted", TRAIL, batch_id),
            (sf_id(2), "uncertain", "accepted", TRAIL, batch_id),
        ]

    def test_run_again_moves_nothing_and_writes_no_trail(
        self, sessions: sessionmaker[Session]
    ) -> None:
        """The UPDATE repeats state = 'uncertain': a second run finds nothing to move."""
        seed(sessions)
        with sessions.begin() as s:
            assert resolve_uncertain(s, "web", [sf_id(1)], reason=TRAIL, at=AT) == [sf_id(1)]
        trail = transition_count(sessions)
        with sessions.begin() as s:
            assert resolve_uncertain(s, "web", [sf_id(1)], reason=TRAIL, at=AT) == []
        assert transition_count(sessions) == trail

    @pytest.mark.parametrize(
        ("written", "expected"), [(["accepted"], {sf_id(1): "accepted"}), (["rejected"], {})]
    )
    def test_write_back_queued_when_the_sync_writes_accepted_back(
        self,
        engine: Engine,
        sessions: sessionmaker[Session],
        written: list[str],
        expected: dict[str, str],
    ) -> None:
        """A pending write-back row of state accepted, only when the sync writes accepted."""
        seed(sessions)
        factory = make_session_factory(engine)
        writeback_store.install(factory, config_writing_back(written).syncs)
        with factory.begin() as s:
            resolve_uncertain(s, "web", [sf_id(1)], reason=TRAIL, at=AT)
        with sessions() as s:
            rows = s.execute(
                select(Lead.salesforce_id, Writeback.state, Writeback.status).join(
                    Lead, Lead.id == Writeback.lead_id
                )
            ).all()
        assert {sf: state for sf, state, _status in rows} == expected
        assert all(status == "pending" for _sf, _state, status in rows)

    def test_statements_do_not_grow_with_the_leads(
        self, engine: Engine, sessions: sessionmaker[Session]
    ) -> None:
        """Set-based: resolving 40 leads runs as many statements as resolving 1."""
        with sessions.begin() as s:
            for n in range(1, 42):
                add_lead(s, "web", sf_id(n), "uncertain")
        factory = make_session_factory(engine)
        writeback_store.install(factory, config_writing_back(["accepted"]).syncs)
        seen: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            seen.append(statement)

        event.listen(engine, "before_cursor_execute", record)
        try:
            with factory.begin() as s:
                resolve_uncertain(s, "web", [sf_id(1)], reason=TRAIL, at=AT)
            one = len(seen)
            seen.clear()
            with factory.begin() as s:
                many = resolve_uncertain(
                    s, "web", [sf_id(n) for n in range(2, 42)], reason=TRAIL, at=AT
                )
        finally:
            event.remove(engine, "before_cursor_execute", record)
        assert len(many) == 40
        assert len(seen) == one


class TestResolveUseCase:
    def test_resolves_records_the_action_and_names_the_rest(
        self, sessions: sessionmaker[Session]
    ) -> None:
        """One operator_actions row; every Id left alone is named with its problem."""
        seed(sessions)
        result = ops.resolve(
            sessions,
            sync="web",
            salesforce_ids=[sf_id(1), sf_id(3), sf_id(4), sf_id(9), sf_id(1)],
            reason="SimZ ticket 42: lead present",
            actor="alice",
            now=lambda: AT,
        )
        assert result.resolved == [sf_id(1)]
        assert result.problems == [
            f"{sf_id(3)} is queued, not uncertain: only uncertain leads can be resolved",
            f"{sf_id(4)} is already accepted: nothing to resolve",
            f"{sf_id(9)}: no lead with this Id in sync web",
        ]
        assert (result.target, result.actor, result.at) == ("accepted", "alice", AT)
        assert [row[3] for row in resolutions(sessions)] == [TRAIL]
        with sessions() as s:
            actions = s.execute(
                select(
                    OperatorAction.action,
                    OperatorAction.scope,
                    OperatorAction.name,
                    OperatorAction.actor,
                    OperatorAction.reason,
                    OperatorAction.detail,
                    OperatorAction.at,
                )
            ).all()
        assert [tuple(row) for row in actions] == [
            (
                "resolve",
                "sync",
                "web",
                "alice",
                "SimZ ticket 42: lead present",
                f"uncertain -> accepted: {sf_id(1)}",
                AT,
            )
        ]

    def test_nothing_resolved_writes_nothing(self, sessions: sessionmaker[Session]) -> None:
        """Only Ids that are not uncertain: no lead, trail or audit row changes."""
        seed(sessions)
        trail = transition_count(sessions)
        result = ops.resolve(
            sessions, sync="partner", salesforce_ids=[sf_id(2)], actor="alice", now=lambda: AT
        )
        assert (result.resolved, result.problems) == (
            [],
            [f"{sf_id(2)}: no lead with this Id in sync partner"],
        )
        assert transition_count(sessions) == trail
        with sessions() as s:
            assert s.scalar(select(func.count()).select_from(OperatorAction)) == 0

    def test_preview_changes_nothing(self, sessions: sessionmaker[Session]) -> None:
        """The preview names the uncertain leads it would move and the problems of the rest."""
        seed(sessions)
        before = {key: lead.state for key, lead in leads(sessions).items()}
        preview = ops.preview_resolve(sessions, sync="web", salesforce_ids=[sf_id(3), sf_id(2)])
        assert preview.ready == [sf_id(2)]
        assert preview.problems == [
            f"{sf_id(3)} is queued, not uncertain: only uncertain leads can be resolved"
        ]
        assert {key: lead.state for key, lead in leads(sessions).items()} == before

    def test_only_accepted_and_some_id(self, sessions: sessionmaker[Session]) -> None:
        """resolve records what SimZ confirmed (accepted), and needs at least one Id."""
        seed(sessions)
        with pytest.raises(ValueError, match="only as accepted"):
            ops.resolve(sessions, sync="web", salesforce_ids=[sf_id(1)], actor="a", target="queued")
        with pytest.raises(ValueError, match="at least one"):
            ops.resolve(sessions, sync="web", salesforce_ids=[" "], actor="a")
        assert leads(sessions)[("web", sf_id(1))].state == "uncertain"

    def test_uncertain_gauge_reads_zero_at_the_next_refresh(
        self, sessions: sessionmaker[Session]
    ) -> None:
        """syncd_uncertain_leads, as the daemon's refresh computes it, drops to 0."""
        with sessions.begin() as s:
            add_lead(s, "web", sf_id(1), "uncertain")
        config = config_writing_back(["accepted"])

        def gauge(name: str, **labels: str) -> float | None:
            return REGISTRY.get_sample_value(name, labels)

        refresh_state_metrics(sessions, config, now=lambda: AT)
        assert gauge("syncd_uncertain_leads", sync="web") == 1
        ops.resolve(sessions, sync="web", salesforce_ids=[sf_id(1)], actor="alice")
        refresh_state_metrics(sessions, config, now=lambda: AT)
        assert gauge("syncd_uncertain_leads", sync="web") == 0
        assert gauge("syncd_leads", sync="web", state="accepted") == 1
