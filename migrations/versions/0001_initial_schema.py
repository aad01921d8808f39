"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28 07:25:59.943643
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("sync_name", sa.String(length=63), nullable=False),
        sa.Column("agent_id", sa.String(length=255), nullable=False),
        sa.Column(
            "api_key_id",
            sa.String(length=16),
            nullable=False,
            comment="Fingerprint of the API key.",
        ),
        sa.Column("lead_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column(
            "outcome",
            sa.String(length=20),
            nullable=True,
            comment="None while in flight; then the classified answer.",
        ),
        sa.Column("simz_batch_id", sa.String(length=255), nullable=True),
        sa.Column("accepted", sa.Integer(), nullable=True),
        sa.Column("rejected", sa.Integer(), nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("response_excerpt", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(length=255), nullable=True, comment="Replica that sent it."),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
    )
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.create_index(
            "ix_batches_sync_agent", ["sync_name", "agent_id", "id"], unique=False
        )

    op.create_table(
        "pauses",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("scope", sa.String(length=16), nullable=False, comment="api_key or agent."),
        sa.Column(
            "key",
            sa.String(length=300),
            nullable=False,
            comment="API key fingerprint, or fingerprint/agent id.",
        ),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False, comment="For the backoff."),
        sa.Column("paused_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pauses")),
        sa.UniqueConstraint("scope", "key", name=op.f("uq_pauses_scope_key")),
    )
    op.create_table(
        "poll_runs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("sync_name", sa.String(length=63), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "status", sa.String(length=20), nullable=False, comment="running, ok, paused or error."
        ),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("fetched", sa.Integer(), nullable=False),
        sa.Column("new", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("invalid", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("watermark_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_poll_runs")),
    )
    with op.batch_alter_table("poll_runs", schema=None) as batch_op:
        batch_op.create_index("ix_poll_runs_sync", ["sync_name", "id"], unique=False)

    op.create_table(
        "sync_state",
        sa.Column("sync_name", sa.String(length=63), nullable=False),
        sa.Column(
            "watermark",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="Largest cursor value processed; None until the first page.",
        ),
        sa.Column(
            "start_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="Where the first poll started.",
        ),
        sa.Column("paused_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pause_reason", sa.String(length=500), nullable=True),
        sa.Column("last_poll_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_poll_ok_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_poll_status", sa.String(length=20), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sync_name", name=op.f("pk_sync_state")),
    )
    op.create_table(
        "leads",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("sync_name", sa.String(length=63), nullable=False),
        sa.Column("salesforce_id", sa.String(length=18), nullable=False),
        sa.Column("agent_id", sa.String(length=255), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column(
            "payload",
            sa.JSON(),
            nullable=False,
            comment="The LeadInput body exactly as it is (or was) sent to SimZ.",
        ),
        sa.Column("phone_e164", sa.String(length=20), nullable=True),
        sa.Column(
            "record_cursor",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="The record's cursor value (e.g. SystemModstamp) when last read.",
        ),
        sa.Column(
            "record_hash",
            sa.String(length=64),
            nullable=False,
            comment="Digest of the mapped source values, to tell a real change.",
        ),
        sa.Column(
            "note", sa.Text(), nullable=True, comment="Why invalid/skipped, or fields dropped."
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("batch_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("simz_batch_id", sa.String(length=255), nullable=True),
        sa.Column("error_code", sa.String(length=100), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column(
            "sent_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="When the request carrying this lead was started.",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('queued', 'sending', 'accepted', 'rejected', 'uncertain', 'invalid', 'skipped', 'failed')",
            name=op.f("ck_leads_state"),
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_leads_batch_id_batches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leads")),
        sa.UniqueConstraint(
            "sync_name", "salesforce_id", name=op.f("uq_leads_sync_name_salesforce_id")
        ),
    )
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.create_index(
            "ix_leads_claim",
            ["sync_name", "agent_id", "state", "next_attempt_at", "id"],
            unique=False,
        )
        batch_op.create_index("ix_leads_phone", ["agent_id", "phone_e164", "sent_at"], unique=False)
        batch_op.create_index("ix_leads_state", ["state"], unique=False)

    op.create_table(
        "lead_transitions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("lead_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("from_state", sa.String(length=16), nullable=True),
        sa.Column("to_state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("batch_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_lead_transitions_batch_id_batches")
        ),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
            name=op.f("fk_lead_transitions_lead_id_leads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lead_transitions")),
    )
    with op.batch_alter_table("lead_transitions", schema=None) as batch_op:
        batch_op.create_index("ix_lead_transitions_lead", ["lead_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("lead_transitions", schema=None) as batch_op:
        batch_op.drop_index("ix_lead_transitions_lead")

    op.drop_table("lead_transitions")
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_index("ix_leads_state")
        batch_op.drop_index("ix_leads_phone")
        batch_op.drop_index("ix_leads_claim")

    op.drop_table("leads")
    op.drop_table("sync_state")
    with op.batch_alter_table("poll_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_poll_runs_sync")

    op.drop_table("poll_runs")
    op.drop_table("pauses")
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_index("ix_batches_sync_agent")

    op.drop_table("batches")
