"""Alembic environment: the connection is handed in by archiver.index (no alembic.ini)."""

from alembic import context

from archiver.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  # SQLite cannot ALTER most things in place; batch mode copies the table
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
