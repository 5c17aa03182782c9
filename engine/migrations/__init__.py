"""Alembic migrations: every schema change goes through here, from the first table on."""
