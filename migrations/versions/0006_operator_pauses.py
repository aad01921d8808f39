"""operator_pauses and operator_actions: runtime pause/resume and its audit trail

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 02:30:00.000000

``syncd pause`` stops delivery of a sync or an agent until ``syncd resume``;
every replica reads ``operator_pauses`` when it claims a batch. Each pause,
resume and backfill is recorded in ``operator_actions`` with who and why.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "operator_pauses",
        sa.Column("scope", sa.String(length=16), nullable=False, comment="sync or agent."),
        sa.Column("name", sa.String(length=255), nullable=False, comment="Sync or agent id."),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("paused_by", sa.String(length=255), nullable=False, comment="Who paused it."),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "name", name=op.f("pk_operator_pauses")),
    )
    op.create_table(
        "operator_actions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column(
            "action", sa.String(length=20), nullable=False, comment="pause, resume or backfill."
        ),
        sa.Column("scope", sa.String(length=16), nullable=False, comment="sync or agent."),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_actions")),
    )
    op.create_index(op.f("ix_operator_actions_at"), "operator_actions", ["at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_operator_actions_at"), table_name="operator_actions")
    op.drop_table("operator_actions")
    op.drop_table("operator_pauses")
