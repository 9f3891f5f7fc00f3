"""The audit trail: append-only rows of who changed what, when and why, and the triggers that keep it so."""

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from bridge.store.schema import audit

APPEND_ONLY = "the audit trail is append-only: its rows are never updated or deleted"

# Refused by the database itself, whoever asks: a bug in the bridge, or an administrator's client.
_TRIGGERS = {
    "sqlite": [
        f"CREATE TRIGGER IF NOT EXISTS audit_no_{verb.lower()} BEFORE {verb} ON audit "
        f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
        for verb in ("UPDATE", "DELETE")
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$",
        "DROP TRIGGER IF EXISTS audit_append_only ON audit",
        "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()",
    ],
}


def protect(engine: Engine) -> None:
    """Make the audit table refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL)."""
    with engine.begin() as conn:
        for statement in _TRIGGERS[conn.dialect.name]:
            conn.exec_driver_sql(statement)


def entry(at: str, user: str, action: str, characteristic_id: int | None, old: Any, new: Any,
          reason: str) -> dict[str, Any]:
    """One audit row; ``old`` and ``new`` are stored as JSON (None when there is none)."""
    return {"at": at, "user": user, "action": action, "characteristic_id": characteristic_id,
            "old": None if old is None else json.dumps(old, sort_keys=True),
            "new": None if new is None else json.dumps(new, sort_keys=True), "reason": reason}


def append(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Add rows made by :func:`entry`."""
    if rows:
        conn.execute(sa.insert(audit), list(rows))


def read(conn: Connection, characteristic_id: int | None = None, since: str | None = None) -> list[Any]:
    """The trail in order, of one characteristic and from an ISO 8601 instant if given."""
    query = sa.select(audit).order_by(audit.c.id)
    if characteristic_id is not None:
        query = query.where(audit.c.characteristic_id == characteristic_id)
    if since is not None:
        query = query.where(audit.c.at >= since)
    return list(conn.execute(query))
