"""stream_state: the Pub/Sub replay id of each streamed sync

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 02:30:00.000000

A sync in stream mode resumes its Change Data Capture subscription after the
replay id stored here. It is written only once the leads of its events are
committed, so a crash re-reads events rather than skipping them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stream_state",
        sa.Column("sync_name", sa.String(length=63), nullable=False),
        sa.Column(
            "topic",
            sa.String(length=255),
            nullable=False,
            comment="The topic the replay id belongs to.",
        ),
        sa.Column(
            "replay_id",
            sa.LargeBinary(),
            nullable=True,
            comment="Opaque; stored only after the leads of its events are committed.",
        ),
        sa.Column(
            "replay_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="Commit time of the last handled event, or when a keepalive's id was stored.",
        ),
        sa.Column(
            "last_event_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="When the last change event was handled.",
        ),
        sa.Column(
            "replay_resets",
            sa.Integer(),
            nullable=False,
            comment="Times the stored replay id was refused (a gap reconciled).",
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sync_name", name=op.f("pk_stream_state")),
    )


def downgrade() -> None:
    op.drop_table("stream_state")
