"""Scale-out: where WARC files live, the shared frontier, claims on final URLs.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "warc_files",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("worker", sa.Text, nullable=False),
        sa.Column("location", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger),
        sa.Column("sha256", sa.Text),
        sa.Column("updated_at", sa.Text, nullable=False),
    )
    op.create_table(
        "frontier",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("outlet", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("pass_id", _ID, nullable=False),
        sa.Column("via_url", sa.Text, nullable=False),
        sa.Column("via_kind", sa.Text, nullable=False),
        sa.Column("via_record_id", sa.Text),
        sa.Column("title", sa.Text),
        sa.Column("summary", sa.Text),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("worker", sa.Text),
        sa.Column("capture_id", _ID),
        sa.Column("updated_at", sa.Text, nullable=False),
        sa.UniqueConstraint("outlet", "url", name="frontier_outlet_url"),
    )
    op.create_index("frontier_pass_state", "frontier", ["pass_id", "state"])
    op.create_table(
        "claims",
        sa.Column("final_url", sa.Text, primary_key=True),
        sa.Column("frontier_id", _ID, nullable=False),
    )


def downgrade() -> None:
    for name in ("claims", "frontier", "warc_files"):
        op.drop_table(name)
