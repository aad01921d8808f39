"""SQLAlchemy 2 models for the tables of docs/design.md#storage.

Times are stored in UTC and always come back timezone-aware, on SQLite too.
Migrations in ``migrations/`` must match these models; a test runs Alembic's
autogenerate against both backends and fails on any difference.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from syncd.domain.states import LeadState

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores it naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# BIGINT keys on PostgreSQL; INTEGER on SQLite, where only that is the rowid alias.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


_STATES = ", ".join(f"'{state.value}'" for state in LeadState)


class SyncState(Base):
    """Per sync: the poll cursor and whether polling is paused."""

    __tablename__ = "sync_state"

    sync_name: Mapped[str] = mapped_column(String(63), primary_key=True)
    watermark: Mapped[datetime | None] = mapped_column(
        comment="Largest cursor value processed; None until the first page."
    )
    start_at: Mapped[datetime] = mapped_column(comment="Where the first poll started.")
    paused_until: Mapped[datetime | None]
    pause_reason: Mapped[str | None] = mapped_column(String(500))
    last_poll_at: Mapped[datetime | None]
    last_poll_ok_at: Mapped[datetime | None]
    last_poll_status: Mapped[str | None] = mapped_column(String(20))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Lead(Base):
    """One Salesforce record of one sync: the outbox row and its outcome."""

    __tablename__ = "leads"
    __table_args__ = (
        UniqueConstraint("sync_name", "salesforce_id"),
        CheckConstraint(f"state IN ({_STATES})", name="state"),
        Index("ix_leads_claim", "sync_name", "agent_id", "state", "next_attempt_at", "id"),
        Index("ix_leads_state", "state"),
        Index("ix_leads_phone", "agent_id", "phone_e164", "sent_at"),
        # One number's sends across every agent and sync: the frequency caps.
        Index("ix_leads_number", "phone_e164", "sent_at"),
        # A sync's leads by their record's cursor: the reconciliation sweep's range.
        Index("ix_leads_sync_cursor", "sync_name", "record_cursor"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sync_name: Mapped[str] = mapped_column(String(63))
    salesforce_id: Mapped[str] = mapped_column(String(18))
    agent_id: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16))
    # The LeadInput as mapped. With simz.webhook set, the send adds one key to its
    # customData (the correlation value, docs/call-outcomes.md#correlation) that is
    # not stored here; everything else is sent exactly as stored.
    payload: Mapped[dict[str, Any]] = mapped_column(
        comment="The LeadInput body exactly as it is (or was) sent to SimZ."
    )
    phone_e164: Mapped[str | None] = mapped_column(String(20))
    record_cursor: Mapped[datetime] = mapped_column(
        comment="The record's cursor value (e.g. SystemModstamp) when last read."
    )
    record_hash: Mapped[str] = mapped_column(
        String(64), comment="Digest of the mapped source values, to tell a real change."
    )
    note: Mapped[str | None] = mapped_column(
        Text, comment="Why invalid/skipped, or fields dropped."
    )
    do_not_call: Mapped[bool] = mapped_column(
        Boolean,
        default=False,
        server_default=false(),
        comment="DoNotCall as read from the record's latest known state.",
    )
    record_stamp: Mapped[datetime | None] = mapped_column(
        comment="SystemModstamp of the newest read applied; an older read is ignored."
    )
    deleted_at: Mapped[datetime | None] = mapped_column(
        comment="When the record was found deleted in Salesforce; never sent while set."
    )
    discarded_at: Mapped[datetime | None] = mapped_column(
        comment="When an operator discarded the lead: final until an operator restores it."
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    time_zone: Mapped[str | None] = mapped_column(
        String(64), comment="The record's time-zone field, when calling hours read one."
    )
    consent: Mapped[str | None] = mapped_column(
        String(64), comment="The record's consent field as read, when the consent rule is on."
    )
    region: Mapped[str | None] = mapped_column(
        String(64), comment="The record's state field, when calling hours read one."
    )
    waiting_for: Mapped[str | None] = mapped_column(
        String(32), comment="calling_hours: next_attempt_at is when the lead's window opens."
    )
    batch_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("batches.id"))
    simz_batch_id: Mapped[str | None] = mapped_column(String(255))
    error_code: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(
        comment="When the request carrying this lead was started."
    )
    # Speed to lead: when each stage of the lead's first way to a call happened.
    record_created_at: Mapped[datetime | None] = mapped_column(
        comment="The record's CreatedDate, when the query read it."
    )
    read_at: Mapped[datetime | None] = mapped_column(
        comment="When syncd first read the record (its page or event arrived)."
    )
    queued_at: Mapped[datetime | None] = mapped_column(comment="When the lead first became queued.")
    accepted_at: Mapped[datetime | None] = mapped_column(
        comment="When SimZ's answer accepting the lead was recorded."
    )
    first_call_at: Mapped[datetime | None] = mapped_column(
        comment="When the first call outcome for the lead was received."
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Batch(Base):
    """One POST to SimZ: who, when, and what came back."""

    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_sync_agent", "sync_name", "agent_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sync_name: Mapped[str] = mapped_column(String(63))
    agent_id: Mapped[str] = mapped_column(String(255))
    api_key_id: Mapped[str] = mapped_column(String(16), comment="Fingerprint of the API key.")
    lead_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    posted_at: Mapped[datetime | None] = mapped_column(
        comment="Committed just before the POST started; NULL: claimed ahead, never sent."
    )
    finished_at: Mapped[datetime | None]
    http_status: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str | None] = mapped_column(
        String(20), comment="None while in flight; then the classified answer."
    )
    simz_batch_id: Mapped[str | None] = mapped_column(String(255))
    accepted: Mapped[int | None] = mapped_column(Integer)
    rejected: Mapped[int | None] = mapped_column(Integer)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(255), comment="Replica that sent it.")


class LeadTransition(Base):
    """The audit trail: every state change of every lead, with time and reason."""

    __tablename__ = "lead_transitions"
    __table_args__ = (Index("ix_lead_transitions_lead", "lead_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    lead_id: Mapped[int] = mapped_column(BigId, ForeignKey("leads.id", ondelete="CASCADE"))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(500))
    batch_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("batches.id"))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class IntakeAdmission(Base):
    """Leads one intake made sendable without an operator, for the guard's rolling window."""

    __tablename__ = "intake_admissions"
    __table_args__ = (Index("ix_intake_admissions_sync_at", "sync_name", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sync_name: Mapped[str] = mapped_column(String(63))
    at: Mapped[datetime]
    leads: Mapped[int] = mapped_column(Integer)


class PollRun(Base):
    """One poll of one sync: its window and what it found."""

    __tablename__ = "poll_runs"
    __table_args__ = (Index("ix_poll_runs_sync", "sync_name", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sync_name: Mapped[str] = mapped_column(String(63))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    window_from: Mapped[datetime | None]
    window_to: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(20), comment="running, ok, paused or error.")
    pages: Mapped[int] = mapped_column(Integer, default=0)
    fetched: Mapped[int] = mapped_column(Integer, default=0)
    new: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    invalid: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    eligible: Mapped[int] = mapped_column(
        Integer, default=0, comment="New leads ready to call (queued or held)."
    )
    held: Mapped[int] = mapped_column(
        Integer, default=0, comment="Of those, held by the blast-radius guard."
    )
    watermark_after: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)


class Pause(Base):
    """A delivery pause: an API key (401/402) or one agent of a key (404)."""

    __tablename__ = "pauses"
    __table_args__ = (UniqueConstraint("scope", "key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(16), comment="api_key or agent.")
    key: Mapped[str] = mapped_column(
        String(300), comment="API key fingerprint, or fingerprint/agent id."
    )
    reason: Mapped[str] = mapped_column(String(500))
    http_status: Mapped[int | None] = mapped_column(Integer)
    failures: Mapped[int] = mapped_column(Integer, default=1, comment="For the backoff.")
    paused_until: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Lease(Base):
    """Who may run one sync's loops right now (see :mod:`syncd.adapters.leases`).

    A holder owns the lease until ``expires_at`` (the database's clock) unless it
    renews it; another replica may take it over only after that. ``token`` grows by
    one at each change of holder, so work can be fenced by it.
    """

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True, comment="e.g. sync:web.")
    holder: Mapped[str] = mapped_column(String(255), comment="Replica id of the holder.")
    token: Mapped[int] = mapped_column(BigInteger, comment="Fencing token, +1 per new holder.")
    acquired_at: Mapped[datetime]
    renewed_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class Replica(Base):
    """One running ``syncd run`` process and its heartbeat (for ``syncd status``)."""

    __tablename__ = "replicas"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(comment="Presumed dead after this.")


class OperatorPause(Base):
    """A delivery pause an operator set (``syncd pause``): a sync or an agent, no expiry.

    Only ``syncd resume`` removes it; SimZ's answers never do.
    """

    __tablename__ = "operator_pauses"

    scope: Mapped[str] = mapped_column(String(16), primary_key=True, comment="sync or agent.")
    name: Mapped[str] = mapped_column(String(255), primary_key=True, comment="Sync or agent id.")
    reason: Mapped[str] = mapped_column(String(500))
    paused_by: Mapped[str] = mapped_column(String(255), comment="Who paused it.")
    paused_at: Mapped[datetime]


class OperatorAction(Base):
    """The operators' audit trail: who paused, resumed or backfilled what, when and why."""

    __tablename__ = "operator_actions"
    __table_args__ = (Index("ix_operator_actions_at", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(20), comment="pause, resume or backfill.")
    scope: Mapped[str] = mapped_column(String(16), comment="sync or agent.")
    name: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(String(500))
    detail: Mapped[str | None] = mapped_column(Text)


WRITEBACK_STATUSES = ("pending", "done", "failed")


class Writeback(Base):
    """A lead's outcome waiting to be (or already) written back to its Salesforce record.

    One row per lead: a later outcome of the same lead replaces the row's state
    and makes it pending again, with ``generation`` one higher, so a send that was
    under way for the older outcome cannot mark the newer one done.
    """

    __tablename__ = "writebacks"
    __table_args__ = (
        UniqueConstraint("lead_id"),
        CheckConstraint("status IN ('pending', 'done', 'failed')", name="status"),
        Index("ix_writebacks_due", "sync_name", "status", "next_attempt_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    lead_id: Mapped[int] = mapped_column(BigId, ForeignKey("leads.id", ondelete="CASCADE"))
    sync_name: Mapped[str] = mapped_column(String(63))
    state: Mapped[str] = mapped_column(String(16), comment="The lead state to write.")
    status: Mapped[str] = mapped_column(String(16), comment="pending, done or failed.")
    generation: Mapped[int] = mapped_column(
        Integer, default=1, comment="+1 each time a newer outcome replaces the row."
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    done_at: Mapped[datetime | None]


class WritebackAttempt(Base):
    """One try at writing a lead's outcome to Salesforce, and what came of it."""

    __tablename__ = "writeback_attempts"
    __table_args__ = (Index("ix_writeback_attempts_lead", "lead_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    lead_id: Mapped[int] = mapped_column(BigId, ForeignKey("leads.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    state: Mapped[str] = mapped_column(String(16), comment="The lead state that was written.")
    outcome: Mapped[str] = mapped_column(String(16), comment="done, retry or failed.")
    error: Mapped[str | None] = mapped_column(Text)


class StreamState(Base):
    """Per streamed sync: where its Pub/Sub subscription resumes (see docs/streaming.md)."""

    __tablename__ = "stream_state"

    sync_name: Mapped[str] = mapped_column(String(63), primary_key=True)
    topic: Mapped[str] = mapped_column(String(255), comment="The topic the replay id belongs to.")
    replay_id: Mapped[bytes | None] = mapped_column(
        LargeBinary, comment="Opaque; stored only after the leads of its events are committed."
    )
    replay_at: Mapped[datetime | None] = mapped_column(
        comment="Commit time of the last handled event, or when a keepalive's id was stored."
    )
    last_event_at: Mapped[datetime | None] = mapped_column(
        comment="When the last change event was handled."
    )
    replay_resets: Mapped[int] = mapped_column(
        Integer, default=0, comment="Times the stored replay id was refused (a gap reconciled)."
    )
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


SUPPRESSION_SOURCES = ("operator", "do_not_call", "import", "query", "call_outcome")


class Suppression(Base):
    """A number nobody may call, whatever sync, agent or record it comes from."""

    __tablename__ = "suppressions"
    __table_args__ = (
        CheckConstraint(
            "source IN ({})".format(", ".join(f"'{s}'" for s in SUPPRESSION_SOURCES)),
            name="source",
        ),
    )

    phone_e164: Mapped[str] = mapped_column(String(20), primary_key=True)
    source: Mapped[str] = mapped_column(
        String(16), comment="operator, do_not_call, import, query or call_outcome."
    )
    reason: Mapped[str] = mapped_column(String(500))
    added_by: Mapped[str] = mapped_column(String(255), comment="Who or what added it.")
    record_id: Mapped[str | None] = mapped_column(
        String(18), comment="The Salesforce record that asked for it, if one did."
    )
    sync_name: Mapped[str | None] = mapped_column(String(63))
    seen_at: Mapped[datetime] = mapped_column(
        comment="When the opt-out was first seen (the record's stamp, or when it was added)."
    )
    added_at: Mapped[datetime] = mapped_column(comment="When the suppression took effect.")


class OrgIdentity(Base):
    """A Salesforce org this database has met, and whether an operator trusts it."""

    __tablename__ = "org_identity"

    org_id: Mapped[str] = mapped_column(String(18), primary_key=True)
    is_sandbox: Mapped[bool] = mapped_column(Boolean)
    first_seen_at: Mapped[datetime]
    trusted: Mapped[bool] = mapped_column(
        Boolean, comment="Delivery runs only against the one trusted org."
    )
    trusted_at: Mapped[datetime | None]
    trusted_by: Mapped[str | None] = mapped_column(String(255))


class RulesVersion(Base):
    """The effective rules a version hash stands for (see DialDecision.rules_version)."""

    __tablename__ = "rules_versions"

    version: Mapped[str] = mapped_column(String(16), primary_key=True)
    sync_name: Mapped[str] = mapped_column(String(63))
    rules: Mapped[dict[str, Any]]
    first_seen_at: Mapped[datetime]


class DialDecision(Base):
    """The send gate's inputs when it let a lead go to ``sending``: why it was dialled."""

    __tablename__ = "dial_decisions"
    __table_args__ = (
        Index("ix_dial_decisions_lead_id", "lead_id"),
        Index("ix_dial_decisions_phone_e164", "phone_e164", "decided_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    lead_id: Mapped[int] = mapped_column(BigId, ForeignKey("leads.id"))
    sync_name: Mapped[str] = mapped_column(String(63))
    agent_id: Mapped[str] = mapped_column(String(255))
    phone_e164: Mapped[str | None] = mapped_column(String(20))
    batch_id: Mapped[int | None] = mapped_column(BigId)
    decided_at: Mapped[datetime]
    rules_version: Mapped[str] = mapped_column(String(16))
    inputs: Mapped[dict[str, Any]] = mapped_column(
        comment="DoNotCall, consent, suppression, frequency counts, local time and zone."
    )


class CallEvent(Base):
    """One webhook POST as received, committed before the 2xx: never lost, stored once."""

    __tablename__ = "call_events"
    __table_args__ = (
        CheckConstraint("status IN ('new', 'matched', 'unmatched', 'unreadable')", name="status"),
        Index("ix_call_events_status", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    digest: Mapped[str] = mapped_column(
        String(64), unique=True, comment="SHA-256 of the body: the same body is stored once."
    )
    received_at: Mapped[datetime]
    receiver: Mapped[str] = mapped_column(String(255), comment="Replica that received it.")
    headers: Mapped[dict[str, Any]] = mapped_column(comment="Request headers, secrets left out.")
    body: Mapped[str] = mapped_column(Text, comment="The JSON body exactly as received.")
    status: Mapped[str] = mapped_column(
        String(16), comment="new, matched, unmatched (no lead) or unreadable (paths failed)."
    )
    processed_at: Mapped[datetime | None]
    lead_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("leads.id", ondelete="SET NULL"))
    detail: Mapped[str | None] = mapped_column(Text, comment="Why unmatched or unreadable.")


class CallOutcome(Base):
    """One call of one lead, read from its hook(s); its write-back to Salesforce."""

    __tablename__ = "call_outcomes"
    __table_args__ = (
        UniqueConstraint("lead_id", "call_key"),
        Index("ix_call_outcomes_writeback", "writeback_status", "next_attempt_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    lead_id: Mapped[int] = mapped_column(BigId, ForeignKey("leads.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(BigId, ForeignKey("call_events.id"))
    call_key: Mapped[str] = mapped_column(
        String(64), comment="The payload's call id, else its digest: one outcome per call."
    )
    sync_name: Mapped[str] = mapped_column(String(63))
    salesforce_id: Mapped[str] = mapped_column(String(18))
    outcome: Mapped[str | None] = mapped_column(String(100))
    disposition: Mapped[str | None] = mapped_column(
        String(255), comment="The disposition after the configured map."
    )
    raw_disposition: Mapped[str | None] = mapped_column(String(255))
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    recording_url: Mapped[str | None] = mapped_column(Text)
    opt_out: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    received_at: Mapped[datetime] = mapped_column(comment="When its first hook was received.")
    writeback_status: Mapped[str] = mapped_column(
        String(16), comment="none, pending, sending, done or failed."
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    task_id: Mapped[str | None] = mapped_column(
        String(18), comment="The Salesforce Task written for this call (tasks mode)."
    )
    written_at: Mapped[datetime | None]
