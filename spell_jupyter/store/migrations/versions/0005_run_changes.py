"""One sequence of the changes panels show (created, status, labels, archived): the event
stream's IDs. Filled from the status history, so IDs already handed out stay good.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_run_changes_run_id", "run_changes", ["run_id"])
    op.execute("INSERT INTO run_changes (id, run_id) SELECT id, run_id FROM status_history")
    if op.get_bind().dialect.name == "postgresql":  # the sequence goes on after the copied IDs
        op.execute(
            "SELECT setval(pg_get_serial_sequence('run_changes', 'id'), "
            "COALESCE((SELECT MAX(id) FROM run_changes), 0) + 1, false)"
        )


def downgrade() -> None:
    op.drop_index("ix_run_changes_run_id", "run_changes")
    op.drop_table("run_changes")
