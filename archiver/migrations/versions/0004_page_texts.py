"""Page texts: the extracted title, date and body text of every article page fetched, kept or not.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "page_texts",
        sa.Column("capture_id", _ID, primary_key=True, autoincrement=False),
        sa.Column("title", sa.Text),
        sa.Column("published", sa.Text),
        sa.Column("text_z", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("page_texts")
