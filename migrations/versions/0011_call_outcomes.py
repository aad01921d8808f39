"""call outcomes: webhook events as received, one outcome per call, speed-to-lead stages

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 16:21:53.034685

``call_events`` keeps every accepted webhook POST raw, committed before the
2xx and stored once per body. ``call_outcomes`` is one call of one lead as the
configured paths read it, with its write-back to Salesforce (a Task or fields).
``leads`` gains the moments of each speed-to-lead stage.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "call_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "digest",
            sa.String(length=64),
            nullable=False,
            comment="SHA-256 of the body: the same body is stored once.",
        ),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "receiver", sa.String(length=255), nullable=False, comment="Replica that received it."
        ),
        sa.Column(
            "headers", sa.JSON(), nullable=False, comment="Request headers, secrets left out."
        ),
        sa.Column("body", sa.Text(), nullable=False, comment="The JSON body exactly as received."),
        sa.Column(
            "status",
            sa.String(length=16),
            nullable=False,
            comment="new, matched, unmatched (no lead) or unreadable (paths failed).",
        ),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lead_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True, comment="Why unmatched or unreadable."),
        sa.CheckConstraint(
            "status IN ('new', 'matched', 'unmatched', 'unreadable')",
            name=op.f("ck_call_events_status"),
        ),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
            name=op.f("fk_call_events_lead_id_leads"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_events")),
        sa.UniqueConstraint("digest", name=op.f("uq_call_events_digest")),
    )
    with op.batch_alter_table("call_events", schema=None) as batch_op:
        batch_op.create_index("ix_call_events_status", ["status", "id"], unique=False)

    op.create_table(
        "call_outcomes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("lead_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "call_key",
            sa.String(length=64),
            nullable=False,
            comment="The payload's call id, else its digest: one outcome per call.",
        ),
        sa.Column("sync_name", sa.String(length=63), nullable=False),
        sa.Column("salesforce_id", sa.String(length=18), nullable=False),
        sa.Column("outcome", sa.String(length=100), nullable=True),
        sa.Column(
            "disposition",
            sa.String(length=255),
            nullable=True,
            comment="The disposition after the configured map.",
        ),
        sa.Column("raw_disposition", sa.String(length=255), nullable=True),
        sa.Column("duration_seconds", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recording_url", sa.Text(), nullable=True),
        sa.Column("opt_out", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="When its first hook was received.",
        ),
        sa.Column(
            "writeback_status",
            sa.String(length=16),
            nullable=False,
            comment="none, pending, sending, done or failed.",
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "task_id",
            sa.String(length=18),
            nullable=True,
            comment="The Salesforce Task written for this call (tasks mode).",
        ),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"], ["call_events.id"], name=op.f("fk_call_outcomes_event_id_call_events")
        ),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
            name=op.f("fk_call_outcomes_lead_id_leads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_outcomes")),
        sa.UniqueConstraint("lead_id", "call_key", name=op.f("uq_call_outcomes_lead_id_call_key")),
    )
    with op.batch_alter_table("call_outcomes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_call_outcomes_writeback",
            ["writeback_status", "next_attempt_at", "id"],
            unique=False,
        )

    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "record_created_at",
                sa.DateTime(timezone=True),
                nullable=True,
                comment="The record's CreatedDate, when the query read it.",
            )
        )
        batch_op.add_column(
            sa.Column(
                "read_at",
                sa.DateTime(timezone=True),
                nullable=True,
                comment="When syncd first read the record (its page or event arrived).",
            )
        )
        batch_op.add_column(
            sa.Column(
                "queued_at",
                sa.DateTime(timezone=True),
                nullable=True,
                comment="When the lead first became queued.",
            )
        )
        batch_op.add_column(
            sa.Column(
                "accepted_at",
                sa.DateTime(timezone=True),
                nullable=True,
                comment="When SimZ's answer accepting the lead was recorded.",
            )
        )
        batch_op.add_column(
            sa.Column(
                "first_call_at",
                sa.DateTime(timezone=True),
                nullable=True,
                comment="When the first call outcome for the lead was received.",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_column("first_call_at")
        batch_op.drop_column("accepted_at")
        batch_op.drop_column("queued_at")
        batch_op.drop_column("read_at")
        batch_op.drop_column("record_created_at")

    with op.batch_alter_table("call_outcomes", schema=None) as batch_op:
        batch_op.drop_index("ix_call_outcomes_writeback")

    op.drop_table("call_outcomes")
    with op.batch_alter_table("call_events", schema=None) as batch_op:
        batch_op.drop_index("ix_call_events_status")

    op.drop_table("call_events")
