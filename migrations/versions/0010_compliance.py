"""compliance: suppression list, org identity, dial decisions, consent and state on leads

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 13:00:00.000000

``suppressions`` is the one list of numbers nobody may call, across syncs and
agents. ``org_identity`` remembers the Salesforce org(s) this database met and
the one an operator trusts. ``dial_decisions`` keeps the send gate's inputs for
every lead it let go (``rules_versions`` the rules a version hash stands for).
``leads`` gains the record's consent and state fields, read again at the gate,
an index over one number's sends across every agent (the frequency caps), and
one over a sync's leads by record cursor (the reconciliation sweep's range).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "org_identity",
        sa.Column("org_id", sa.String(length=18), nullable=False),
        sa.Column("is_sandbox", sa.Boolean(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "trusted",
            sa.Boolean(),
            nullable=False,
            comment="Delivery runs only against the one trusted org.",
        ),
        sa.Column("trusted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("trusted_by", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_org_identity")),
    )
    op.create_table(
        "rules_versions",
        sa.Column("version", sa.String(length=16), nullable=False),
        sa.Column("sync_name", sa.String(length=63), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_rules_versions")),
    )
    op.create_table(
        "suppressions",
        sa.Column("phone_e164", sa.String(length=20), nullable=False),
        sa.Column(
            "source",
            sa.String(length=16),
            nullable=False,
            comment="operator, do_not_call, import, query or call_outcome.",
        ),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column(
            "added_by", sa.String(length=255), nullable=False, comment="Who or what added it."
        ),
        sa.Column(
            "record_id",
            sa.String(length=18),
            nullable=True,
            comment="The Salesforce record that asked for it, if one did.",
        ),
        sa.Column("sync_name", sa.String(length=63), nullable=True),
        sa.Column(
            "seen_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="When the opt-out was first seen (the record's stamp, or when it was added).",
        ),
        sa.Column(
            "added_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="When the suppression took effect.",
        ),
        sa.CheckConstraint(
            "source IN ('operator', 'do_not_call', 'import', 'query', 'call_outcome')",
            name=op.f("ck_suppressions_source"),
        ),
        sa.PrimaryKeyConstraint("phone_e164", name=op.f("pk_suppressions")),
    )
    op.create_table(
        "dial_decisions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("lead_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("sync_name", sa.String(length=63), nullable=False),
        sa.Column("agent_id", sa.String(length=255), nullable=False),
        sa.Column("phone_e164", sa.String(length=20), nullable=True),
        sa.Column("batch_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rules_version", sa.String(length=16), nullable=False),
        sa.Column(
            "inputs",
            sa.JSON(),
            nullable=False,
            comment="DoNotCall, consent, suppression, frequency counts, local time and zone.",
        ),
        sa.ForeignKeyConstraint(
            ["lead_id"], ["leads.id"], name=op.f("fk_dial_decisions_lead_id_leads")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dial_decisions")),
    )
    with op.batch_alter_table("dial_decisions", schema=None) as batch_op:
        batch_op.create_index("ix_dial_decisions_lead_id", ["lead_id"], unique=False)
        batch_op.create_index(
            "ix_dial_decisions_phone_e164", ["phone_e164", "decided_at"], unique=False
        )

    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "consent",
                sa.String(length=64),
                nullable=True,
                comment="The record's consent field as read, when the consent rule is on.",
            )
        )
        batch_op.add_column(
            sa.Column(
                "region",
                sa.String(length=64),
                nullable=True,
                comment="The record's state field, when calling hours read one.",
            )
        )
        batch_op.create_index("ix_leads_number", ["phone_e164", "sent_at"], unique=False)
        batch_op.create_index("ix_leads_sync_cursor", ["sync_name", "record_cursor"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_index("ix_leads_sync_cursor")
        batch_op.drop_index("ix_leads_number")
        batch_op.drop_column("region")
        batch_op.drop_column("consent")

    with op.batch_alter_table("dial_decisions", schema=None) as batch_op:
        batch_op.drop_index("ix_dial_decisions_phone_e164")
        batch_op.drop_index("ix_dial_decisions_lead_id")

    op.drop_table("dial_decisions")
    op.drop_table("suppressions")
    op.drop_table("rules_versions")
    op.drop_table("org_identity")
