"""leads: record stamp, deletion and discard; intake_admissions for the stream's guard

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 07:00:00.000000

Several paths change one lead (poll, stream, backfill, re-fetch, operators);
``record_stamp`` (the record's SystemModstamp of the newest read applied) lets
the ledger ignore an older read that commits later. ``deleted_at`` keeps a
deletion on the lead whatever its state, and ``discarded_at`` makes an
operator's discard final. ``intake_admissions`` counts the leads each intake
made sendable, for the blast-radius guard's rolling window on streamed syncs.
Existing leads get NULL: they have no stamp yet, so the next read applies.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("leads") as batch:
        batch.add_column(
            sa.Column(
                "record_stamp",
                sa.DateTime(timezone=True),
                nullable=True,
                comment="SystemModstamp of the newest read applied; an older read is ignored.",
            )
        )
        batch.add_column(
            sa.Column(
                "deleted_at",
                sa.DateTime(timezone=True),
                nullable=True,
                comment="When the record was found deleted in Salesforce; never sent while set.",
            )
        )
        batch.add_column(
            sa.Column(
                "discarded_at",
                sa.DateTime(timezone=True),
                nullable=True,
                comment="When an operator discarded the lead: final until an operator restores it.",
            )
        )
    op.create_table(
        "intake_admissions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("sync_name", sa.String(length=63), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("leads", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_intake_admissions")),
    )
    op.create_index(
        "ix_intake_admissions_sync_at", "intake_admissions", ["sync_name", "at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_intake_admissions_sync_at", table_name="intake_admissions")
    op.drop_table("intake_admissions")
    with op.batch_alter_table("leads") as batch:
        batch.drop_column("discarded_at")
        batch.drop_column("deleted_at")
        batch.drop_column("record_stamp")
