"""Persistence: SQLAlchemy models, sessions and export. Never imports engine or app."""
