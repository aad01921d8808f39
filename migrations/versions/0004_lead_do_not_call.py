"""leads.do_not_call: the DoNotCall flag of the lead's latest known record state

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 02:30:00.000000

The send gate checks DoNotCall again when delivery claims a lead, from the
flag the poll stored for the record's latest state (also for leads that were
already sent, failed or rejected). Leads written before this revision were
queued only when the flag was clear, so they get ``false``; a lead skipped for
DoNotCall is never claimed, whatever its flag says.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "do_not_call",
                sa.Boolean(),
                nullable=False,
                server_default=sa.false(),
                comment="DoNotCall as read from the record's latest known state.",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_column("do_not_call")
