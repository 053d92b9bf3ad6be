"""The first schema: runs, labels, status history and log entries.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

from spell_jupyter.store.orm import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("command", sa.Text, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("status_message", sa.Text, nullable=False, server_default=""),
        sa.Column("user_exit_code", sa.Integer, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=True),
        sa.Column("ended_at", UTCDateTime, nullable=True),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("machine_type", sa.String(64), nullable=False),
        sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("requested_action", sa.String(16), nullable=True),
        sa.Column("requested_at", UTCDateTime, nullable=True),
        sa.Column("backend", sa.String(32), nullable=True),
        sa.Column("handle", sa.JSON, nullable=True),
        sa.Column("output_cursor", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_log_offset", sa.Integer, nullable=False, server_default="0"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_table(
        "run_labels",
        sa.Column(
            "run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("label", sa.String(64), primary_key=True),
    )
    op.create_index("ix_run_labels_label", "run_labels", ["label"])
    op.create_table(
        "status_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("ix_status_history_run_id", "status_history", ["run_id"])
    op.create_table(
        "log_entries",
        sa.Column(
            "run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("offset", sa.Integer, primary_key=True),
        sa.Column("timestamp", UTCDateTime, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("status_event", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("level", sa.String(16), nullable=False, server_default="info"),
        sa.Column("stream", sa.String(16), nullable=True),
        sa.Column("text", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("log_entries")
    op.drop_table("status_history")
    op.drop_table("run_labels")
    op.drop_table("runs")
