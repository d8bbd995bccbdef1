"""Alembic revision scripts, one per schema change, written by hand."""
