"""Metrics, run tokens, and the workflow, search and project a run belongs to.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

from spell_jupyter.store.orm import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(sa.Column("workflow_id", sa.Integer, nullable=True))
        batch.add_column(sa.Column("search_id", sa.Integer, nullable=True))
        batch.add_column(sa.Column("project", sa.String(64), nullable=True))
        batch.create_index("ix_runs_workflow_id", ["workflow_id"])
        batch.create_index("ix_runs_search_id", ["search_id"])
        batch.create_index("ix_runs_project", ["project"])
    op.create_table(
        "run_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column(
            "run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_run_tokens_run_id", "run_tokens", ["run_id"])
    op.create_table(
        "metrics",
        sa.Column(
            "run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("index", sa.Integer, primary_key=True),
        sa.Column("timestamp", UTCDateTime, nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("text", sa.Text, nullable=True),
        sa.Column("seq", sa.Integer, nullable=False),
    )
    op.create_index("ix_metrics_run_seq", "metrics", ["run_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_metrics_run_seq", "metrics")
    op.drop_table("metrics")
    op.drop_index("ix_run_tokens_run_id", "run_tokens")
    op.drop_table("run_tokens")
    with op.batch_alter_table("runs", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_index("ix_runs_project")
        batch.drop_index("ix_runs_search_id")
        batch.drop_index("ix_runs_workflow_id")
        batch.drop_column("project")
        batch.drop_column("search_id")
        batch.drop_column("workflow_id")
