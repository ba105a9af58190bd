"""Adaptive polling: when each discovery document was polled, is due again, and how often it changes.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "document_polls",
        sa.Column("outlet", sa.Text, primary_key=True),
        sa.Column("url", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("polled_at", sa.Text, nullable=False),
        sa.Column("due_at", sa.Text, nullable=False),
        sa.Column("interval", sa.Float, nullable=False),
        sa.Column("items", sa.Float, nullable=False, server_default="0"),
        sa.Column("watched", sa.Float, nullable=False, server_default="0"),
        sa.Column("polls", sa.Integer, nullable=False, server_default="0"),
        sa.Column("changed_at", sa.Text),
        sa.Column("listed", sa.Text, nullable=False, server_default="[]"),
    )


def downgrade() -> None:
    op.drop_table("document_polls")
