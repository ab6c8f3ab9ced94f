"""The approved schema: six tables exactly as spec/data-model.md, and the lookup rows.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

LOOKUPS = {
    "status": [(1, "ATIVO"), (2, "CANCELADO"), (3, "PAUSADO")],
    "club_status": [(1, "ATIVO"), (2, "FECHADO"), (3, "INATIVO")],
}


def _lookup_table(name: str) -> sa.Table:
    return op.create_table(
        name,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=True),
    )


def _history_columns() -> list[sa.Column]:
    return [
        sa.Column("effect_date", sa.DateTime, nullable=True),
        sa.Column("create_date", sa.DateTime, nullable=True),
        sa.Column("details", sa.String(256), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "club",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=True),
        sa.Column("store_sku", sa.Integer, nullable=True),
    )
    club_status = _lookup_table("club_status")
    op.create_table(
        "club_status_history",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("club_id", sa.Integer, sa.ForeignKey("club.id", ondelete="RESTRICT")),
        sa.Column(
            "club_status_id", sa.Integer, sa.ForeignKey("club_status.id", ondelete="RESTRICT")
        ),
        *_history_columns(),
    )
    op.create_table(
        "subscription",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("club_id", sa.Integer, sa.ForeignKey("club.id", ondelete="RESTRICT")),
        sa.Column("customer_store_id", sa.String(36), nullable=True),
        sa.Column("create_date", sa.DateTime, nullable=True),
    )
    status = _lookup_table("status")
    op.create_table(
        "subscription_status_history",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "subscription_id",
            sa.String(36),
            sa.ForeignKey("subscription.id", ondelete="RESTRICT"),
        ),
        sa.Column("status_id", sa.Integer, sa.ForeignKey("status.id", ondelete="RESTRICT")),
        *_history_columns(),
    )
    for table in (status, club_status):
        op.bulk_insert(table, [{"id": i, "name": n} for i, n in LOOKUPS[table.name]])
        # Rows were given explicit ids: move the sequence past them for operators' inserts.
        op.execute(
            f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
            f"(SELECT max(id) FROM {table.name}))"
        )


def downgrade() -> None:
    for name in (
        "subscription_status_history",
        "status",
        "subscription",
        "club_status_history",
        "club_status",
        "club",
    ):
        op.drop_table(name)
