"""Baseline: the index as single-machine archives have had it (meta, passes, captures).

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# frozen here as created: later changes are later migrations, never edits to this one
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_LATER_TEXT = ("warc_record_id", "request_record_id", "conversion_record_id", "metadata_record_id")


def upgrade() -> None:
    op.create_table("meta", sa.Column("key", sa.Text, primary_key=True),
                    sa.Column("value", sa.Text, nullable=False))
    op.create_table(
        "passes",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("outlet", sa.Text, nullable=False),
        sa.Column("started_at", sa.Text, nullable=False),
        sa.Column("ended_at", sa.Text),
        sa.Column("software", sa.Text, nullable=False),
        sa.Column("config_sha256", sa.Text, nullable=False),
        sa.Column("counts", sa.Text),
        sa.Column("error", sa.Text),
    )
    text = [sa.Column(n, sa.Text) for n in (
        "payload_digest", "content_type", "truncated", "ip_address", "title", "byline", "published", "language",
        "text_path", "text_sha256", "page_text_path", "page_text_sha256", "extractor", "extractor_version",
        "renderer", "error")]
    op.create_table(
        "captures",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("pass_id", _ID),
        sa.Column("outlet", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("final_url", sa.Text),
        sa.Column("status", sa.Integer),
        sa.Column("fetched_at", sa.Text, nullable=False),
        sa.Column("discovered_via_url", sa.Text),
        sa.Column("discovered_via_record_id", sa.Text),
        sa.Column("topics", sa.Text, nullable=False, server_default="[]"),
        sa.Column("matched", sa.Text, nullable=False, server_default="{}"),
        sa.Column("warc_file", sa.Text),
        sa.Column("warc_offset", sa.BigInteger),
        sa.Column("warc_length", sa.BigInteger),
        *(sa.Column(n, sa.Text) for n in _LATER_TEXT),
        sa.Column("redirect_record_ids", sa.Text, nullable=False, server_default="[]"),
        *text,
        sa.Column("etag", sa.Text),
        sa.Column("last_modified", sa.Text),
        sa.Column("previous_capture_id", _ID),
        sa.Column("revisit_of", sa.Text),
    )
    op.create_index("captures_url", "captures", ["url"])
    op.create_index("captures_final_url", "captures", ["final_url"])
    op.create_index("captures_outlet_kind", "captures", ["outlet", "kind", "state"])
    op.create_index("captures_record", "captures", ["warc_record_id"])


def downgrade() -> None:
    for name in ("captures", "passes", "meta"):
        op.drop_table(name)
