"""writebacks and writeback_attempts: lead outcomes written back to Salesforce

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 03:00:00.000000

A lead that reaches a state a sync writes back gets a ``writebacks`` row in the
same transaction as the state change; the write-back job sends pending rows
with the sObject Collections update and records every try in
``writeback_attempts``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "writebacks",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("lead_id", _ID, nullable=False),
        sa.Column("sync_name", sa.String(length=63), nullable=False),
        sa.Column(
            "state", sa.String(length=16), nullable=False, comment="The lead state to write."
        ),
        sa.Column(
            "status", sa.String(length=16), nullable=False, comment="pending, done or failed."
        ),
        sa.Column(
            "generation",
            sa.Integer(),
            nullable=False,
            comment="+1 each time a newer outcome replaces the row.",
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'done', 'failed')", name=op.f("ck_writebacks_status")
        ),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
            name=op.f("fk_writebacks_lead_id_leads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_writebacks")),
        sa.UniqueConstraint("lead_id", name=op.f("uq_writebacks_lead_id")),
    )
    op.create_index(
        "ix_writebacks_due",
        "writebacks",
        ["sync_name", "status", "next_attempt_at", "id"],
        unique=False,
    )
    op.create_table(
        "writeback_attempts",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("lead_id", _ID, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "state",
            sa.String(length=16),
            nullable=False,
            comment="The lead state that was written.",
        ),
        sa.Column(
            "outcome", sa.String(length=16), nullable=False, comment="done, retry or failed."
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
            name=op.f("fk_writeback_attempts_lead_id_leads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_writeback_attempts")),
    )
    op.create_index(
        "ix_writeback_attempts_lead", "writeback_attempts", ["lead_id", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_writeback_attempts_lead", table_name="writeback_attempts")
    op.drop_table("writeback_attempts")
    op.drop_index("ix_writebacks_due", table_name="writebacks")
    op.drop_table("writebacks")
