"""The limit sets of each characteristic: every set of limits it has had, kept with who, when and why."""

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bridge.store import queries
from bridge.store.schema import limit_sets


class LimitSetRef(NamedTuple):
    """Which limit set is in force: its row id, its version for the characteristic, and the first
    sample it judged (None until one has been)."""

    id: int
    version: int
    effective_from: int | None


def insert_many(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[LimitSetRef]:
    """Add limit sets (the columns of the table, ``excluded_sample_ids`` a list); their references."""
    ids = queries.insert_ids(conn, limit_sets, [
        {**row, "excluded_sample_ids": json.dumps(sorted(row["excluded_sample_ids"]))} for row in rows])
    return [LimitSetRef(new_id, int(row["version"]), row.get("effective_from")) for new_id, row in zip(ids, rows)]


def set_effective_from(conn: Connection, ref: LimitSetRef, sample_id: int) -> LimitSetRef:
    """Record the first sample a limit set judged."""
    conn.execute(sa.update(limit_sets).where(limit_sets.c.id == ref.id).values(effective_from=sample_id))
    return ref._replace(effective_from=sample_id)


def current(conn: Connection, ids: Sequence[int] | None = None) -> dict[int, LimitSetRef]:
    """The latest limit set of each characteristic (of ``ids``, or all), by characteristic id."""
    latest = sa.select(limit_sets.c.characteristic_id, sa.func.max(limit_sets.c.version).label("version"))
    if ids is not None:
        latest = latest.where(limit_sets.c.characteristic_id.in_(ids))
    latest_q = latest.group_by(limit_sets.c.characteristic_id).subquery()
    query = sa.select(limit_sets.c.characteristic_id, limit_sets.c.id, limit_sets.c.version,
                      limit_sets.c.effective_from).join(
        latest_q, sa.and_(limit_sets.c.characteristic_id == latest_q.c.characteristic_id,
                          limit_sets.c.version == latest_q.c.version))
    return {r.characteristic_id: LimitSetRef(r.id, r.version, r.effective_from) for r in conn.execute(query)}


def recent(conn: Connection, characteristic_id: int, limit: int) -> list[dict[str, Any]]:
    """The last ``limit`` limit sets of a characteristic, oldest first, as JSON-ready dicts."""
    query = (sa.select(limit_sets).where(limit_sets.c.characteristic_id == characteristic_id)
             .order_by(limit_sets.c.version.desc()).limit(limit))
    rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:
        row["excluded_sample_ids"] = json.loads(row["excluded_sample_ids"])
    return list(reversed(rows))
