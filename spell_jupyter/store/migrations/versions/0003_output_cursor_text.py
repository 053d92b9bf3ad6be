"""A run's output cursor becomes opaque text: a byte offset for the local backend, a
(log timestamp, entries) position for the Docker backend.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.alter_column(
            "output_cursor",
            existing_type=sa.Integer,
            type_=sa.String(200),
            existing_nullable=False,
            server_default="",
            postgresql_using="output_cursor::text",
        )


def downgrade() -> None:
    with op.batch_alter_table("runs", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.alter_column(
            "output_cursor",
            existing_type=sa.String(200),
            type_=sa.Integer,
            existing_nullable=False,
            server_default="0",
            postgresql_using="NULLIF(output_cursor, '')::integer",
        )
