"""Storage: SQLAlchemy tables and the few queries the pipeline needs (SQLite or PostgreSQL)."""
