"""``spc-bridge audit``: the audit trail as text, oldest first, for one characteristic or all."""

from datetime import datetime, timezone
from typing import Any

from sqlalchemy.engine import Engine

from bridge.store import audit


def parse_instant(text: str) -> datetime:
    """An ISO 8601 date or instant (UTC when it names no offset); ValueError if it is neither."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _line(row: Any) -> str:
    subject = f"characteristic {row.characteristic_id}" if row.characteristic_id is not None else "bridge"
    lines = [f"{row.at}  {row.user}  {row.action}  {subject}  reason: {row.reason}"]
    for label, value in (("old", row.old), ("new", row.new)):
        if value is not None:
            lines.append(f"    {label}: {value}")
    return "\n".join(lines)


def audit_text(engine: Engine, characteristic_id: int | None = None, since: datetime | None = None) -> str:
    """The trail's rows from ``since`` on, one entry per change with its old and new values."""
    with engine.connect() as conn:
        rows = audit.read(conn, characteristic_id)
    if since is not None:
        rows = [row for row in rows if parse_instant(row.at) >= since]
    return "\n".join(_line(row) for row in rows)
