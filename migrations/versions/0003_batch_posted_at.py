"""batches.posted_at: a batch claimed ahead is told apart from one that was posted

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 10:00:00.000000

Delivery claims the next batch while the current one is in flight; that batch
is only released for sending (``posted_at`` set, committed) once the current
answer is recorded. Recovery puts the leads of an open batch with no
``posted_at`` back in the queue: it was never sent. Batches written before this
revision were posted as soon as they were claimed, so they get
``posted_at = created_at``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "posted_at",
                sa.DateTime(timezone=True),
                nullable=True,
                comment=(
                    "Committed just before the POST started; NULL: claimed ahead, never sent."
                ),
            )
        )
    op.execute("UPDATE batches SET posted_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_column("posted_at")
