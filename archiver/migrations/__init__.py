"""Alembic migrations of the index (SQLite and PostgreSQL alike); run by `archiver migrate`
and by any process that opens the index for writing and finds it behind."""
