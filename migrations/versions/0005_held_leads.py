"""held leads and calling hours: the guard's lead state, what each poll held, waiting_for

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 02:30:00.000000

A poll that finds more new leads than the sync's guard allows puts them in the
new state ``held``, which delivery never claims; ``leads.state``'s CHECK
constraint admits it. ``poll_runs`` gains ``eligible`` (new leads ready to
call, which the trailing average is taken over) and ``held``; rows written
before this revision count 0 for both. ``leads.waiting_for`` says that a
queued lead waits for its calling hours to open (at ``next_attempt_at``);
``leads.time_zone`` keeps the record's zone field for ``timezone: {field: ...}``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_STATES = (
    "'queued', 'sending', 'accepted', 'rejected', 'uncertain', 'invalid', 'skipped', 'failed'"
)
_NEW_STATES = f"{_OLD_STATES}, 'held'"


def _state_check(states: str) -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_leads_state"), type_="check")
        batch_op.create_check_constraint(op.f("ck_leads_state"), f"state IN ({states})")


def upgrade() -> None:
    _state_check(_NEW_STATES)
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "time_zone",
                sa.String(length=64),
                nullable=True,
                comment="The record's time-zone field, when calling hours read one.",
            )
        )
        batch_op.add_column(
            sa.Column(
                "waiting_for",
                sa.String(length=32),
                nullable=True,
                comment="calling_hours: next_attempt_at is when the lead's window opens.",
            )
        )
    with op.batch_alter_table("poll_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "eligible",
                sa.Integer(),
                nullable=False,
                server_default="0",
                comment="New leads ready to call (queued or held).",
            )
        )
        batch_op.add_column(
            sa.Column(
                "held",
                sa.Integer(),
                nullable=False,
                server_default="0",
                comment="Of those, held by the blast-radius guard.",
            )
        )
    with op.batch_alter_table("poll_runs", schema=None) as batch_op:
        batch_op.alter_column("eligible", server_default=None)
        batch_op.alter_column("held", server_default=None)


def downgrade() -> None:
    op.execute("UPDATE leads SET state = 'skipped' WHERE state = 'held'")
    with op.batch_alter_table("poll_runs", schema=None) as batch_op:
        batch_op.drop_column("held")
        batch_op.drop_column("eligible")
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_column("waiting_for")
        batch_op.drop_column("time_zone")
    _state_check(_OLD_STATES)
