"""The few queries the bridge needs: open the database, restore, batch writes, outbox."""

import functools
import json
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from sqlalchemy.dialects import postgresql, sqlite

from bridge.store import audit
from bridge.store.lease import LeaseLost
from bridge.store.schema import (
    changed_by_file, characteristics, deliveries, engine_state, metadata, outbox, readings, samples,
    subscriptions, violations,
)


def open_database(url: str) -> Engine:
    """An engine for ``url`` (SQLite file or PostgreSQL); it connects when first used.

    ``postgresql://`` means the psycopg 3 driver. SQLite runs in WAL mode with synchronous=FULL,
    so a commit is on disk when it returns (durable, unlike WAL's default NORMAL).
    """
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    engine = sa.create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.close()
    return engine


def create_tables(engine: Engine) -> None:
    """Create the missing tables, and bring the tables of an older spc-bridge up to date: the
    columns it lacked are added (all nullable) with the indexes on them."""
    metadata.create_all(engine)
    with engine.begin() as conn:
        inspector = sa.inspect(conn)
        for table in metadata.sorted_tables:
            present = {c["name"] for c in inspector.get_columns(table.name)}
            missing = [c for c in table.columns if c.name not in present]
            for column in missing:
                conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} "
                                     f"{column.type.compile(conn.dialect)}"))
            if table is readings and readings.c.reading_key in missing:
                # 0.1 identified readings by seq alone; its readings keep that identity, with no digest
                conn.execute(sa.update(readings).where(readings.c.seq.is_not(None))
                             .values(reading_key=sa.literal("seq:") + readings.c.seq))
            for index in table.indexes:
                if any(c in missing for c in index.columns):
                    index.create(conn)
    audit.protect(engine)


def unavailable(engine: Engine, error: Exception) -> bool:
    """Whether ``error`` means the database cannot be used for now, rather than that it refuses
    the data: a lost connection, a lock or deadlock to wait out, no answer to a trivial query, or a
    lease this instance no longer holds (its batch waits for the instance that took over)."""
    if isinstance(error, LeaseLost):
        return True
    if isinstance(error, DBAPIError) and (error.connection_invalidated or isinstance(
            error.orig, (psycopg.errors.TransactionRollback, psycopg.errors.LockNotAvailable))):
        return True
    if isinstance(error, OperationalError) and engine.dialect.name == "sqlite" and any(
            word in str(error.orig) for word in ("locked", "busy", "disk I/O")):
        return True
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception:
        return True
    return False


def save_characteristics(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or update characteristics (id, name, topic, chart, config, version, imported, retired)."""
    _upsert(conn, characteristics, ("id",), ("name", "topic", "chart", "config", "version", "imported", "retired"),
            rows)


def stored_characteristics(conn: Connection, ids: Sequence[int] | None = None) -> dict[int, Any]:
    """The characteristics rows (of ``ids``, or all), by id."""
    query = sa.select(characteristics)
    if ids is not None:
        query = query.where(characteristics.c.id.in_(ids))
    return {row.id: row for row in conn.execute(query)}


def load_states(conn: Connection, ids: Sequence[int] | None = None
                ) -> dict[int, tuple[dict[str, Any], list[list[Any]]]]:
    """Saved engine state and collected single values, by characteristic id (of ``ids``, or all)."""
    query = sa.select(engine_state)
    if ids is not None:
        query = query.where(engine_state.c.characteristic_id.in_(ids))
    return {r.characteristic_id: (json.loads(r.state), json.loads(r.pending)) for r in conn.execute(query)}


def _changed_by_file(conn: Connection) -> dict[int, bool]:
    """The characteristics marked as changed by a file, and whether reshaped (a few rows)."""
    rows = conn.execute(sa.select(changed_by_file.c.characteristic_id, changed_by_file.c.reshaped))
    return {cid: bool(reshaped) for cid, reshaped in rows}


def mark_changed_by_file(conn: Connection, changed: Iterable[int], reshaped: set[int], retired: Iterable[int]
                         ) -> None:
    """Record that a file changed ``changed`` (``reshaped`` among them), for the bridge that runs each
    (:func:`take_changed_by_file`); a mark, once reshaped, stays so; the marks of ``retired`` go."""
    marked = _changed_by_file(conn)
    rows = [{"characteristic_id": cid, "reshaped": cid in reshaped or marked.get(cid, False)} for cid in changed]
    _upsert(conn, changed_by_file, ("characteristic_id",), ("reshaped",), rows)
    gone = sorted(set(retired) & marked.keys())
    if gone:
        conn.execute(sa.delete(changed_by_file).where(changed_by_file.c.characteristic_id.in_(gone)))


def take_changed_by_file(conn: Connection, ids: Iterable[int]) -> dict[int, bool]:
    """Which of ``ids`` a file changed since their bridge last started, and whether reshaped; they are
    no longer recorded."""
    wanted = set(ids)
    taken = {cid: reshaped for cid, reshaped in _changed_by_file(conn).items() if cid in wanted}
    if taken:
        conn.execute(sa.delete(changed_by_file).where(changed_by_file.c.characteristic_id.in_(sorted(taken))))
    return taken


def save_states(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Write the state of each characteristic in ``rows`` (characteristic_id, state, pending)."""
    _upsert(conn, engine_state, ("characteristic_id",), ("state", "pending"), rows)


def _upsert(conn: Connection, table: sa.Table, keys: tuple[str, ...], columns: tuple[str, ...],
            rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows``, updating ``columns`` of those whose ``keys`` exist: one statement."""
    if rows:
        conn.execute(_upsert_statement(conn.dialect.name, table, keys, columns), rows)


@functools.cache
def _upsert_statement(dialect: str, table: sa.Table, keys: tuple[str, ...],
                      columns: tuple[str, ...]) -> sa.Executable:
    # built once: constructing the ON CONFLICT clause costs more than executing it for a few rows
    statement = (postgresql if dialect == "postgresql" else sqlite).insert(table)
    return statement.on_conflict_do_update(index_elements=[table.c[k] for k in keys],
                                           set_={c: statement.excluded[c] for c in columns})


# One query per batch, whatever the number of characteristics in it: the (characteristic, key) pairs
# joined to the unique index ux_readings_key. A row-value IN would scan the whole index on SQLite.
_KNOWN_KEYS = {
    "sqlite": sa.text(
        f"SELECT r.characteristic_id, r.reading_key, r.digest FROM json_each(:pairs) AS j"
        f" JOIN {readings.name} AS r ON r.characteristic_id = json_extract(j.value, '$[0]')"
        " AND r.reading_key = json_extract(j.value, '$[1]')"),
    "postgresql": sa.text(
        "SELECT r.characteristic_id, r.reading_key, r.digest"
        " FROM unnest(CAST(:characteristics AS integer[]), CAST(:keys AS varchar[])) AS v(c, k)"
        f" JOIN {readings.name} AS r ON r.characteristic_id = v.c AND r.reading_key = v.k"),
}


def known_keys(conn: Connection, pairs: Sequence[tuple[int, str]]) -> dict[tuple[int, str], str | None]:
    """The digests of those (characteristic_id, reading key) pairs already stored as readings."""
    if not pairs:
        return {}
    if conn.dialect.name == "postgresql":
        params: dict[str, Any] = {"characteristics": [c for c, _ in pairs], "keys": [k for _, k in pairs]}
    else:
        params = {"pairs": json.dumps(pairs)}
    return {(cid, key): digest for cid, key, digest in conn.execute(_KNOWN_KEYS[conn.dialect.name], params)}


def recent_digests(conn: Connection, characteristic_id: int, limit: int) -> set[str]:
    """The digests of a characteristic's last ``limit`` readings."""
    query = (sa.select(readings.c.digest).where(readings.c.characteristic_id == characteristic_id)
             .order_by(readings.c.sample_idx.desc(), readings.c.id.desc()).limit(limit))
    return {digest for digest, in conn.execute(query) if digest is not None}


def insert_samples(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert samples; their ids in the order of ``rows``."""
    return insert_ids(conn, samples, rows)


_LAST_ROWID = sa.text("SELECT last_insert_rowid()")


def insert_ids(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert ``rows``; their ids (the table's integer primary key) in the order of ``rows``."""
    if not rows:
        return []
    if conn.dialect.name == "sqlite":
        # SQLite gives a new row the largest rowid + 1 (sqlite.org/autoinc.html) and the transaction
        # holds the database's only write lock, so the rows got the ids up to the last one in order.
        # RETURNING (SQLAlchemy's insertmanyvalues) costs more than the rows themselves.
        conn.execute(_insert(table), rows)
        last: int = conn.execute(_LAST_ROWID).scalar_one()
        return list(range(last - len(rows) + 1, last + 1))
    result = conn.execute(sa.insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)
    return [r[0] for r in result]


VERDICT_COLUMNS = ("zone", "in_control", "ucl", "lcl", "cusum_upper", "cusum_lower", "ewma", "limit_set")


def update_judged_samples(conn: Connection, rows: Sequence[dict[str, Any]]) -> dict[tuple[int, int], int]:
    """Store the verdicts (VERDICT_COLUMNS) of baseline samples judged late, given by ``cid`` and
    ``i`` (idx); their ids by (characteristic, idx)."""
    if not rows:
        return {}
    conn.execute(
        sa.update(samples)
        .where(samples.c.characteristic_id == sa.bindparam("cid"), samples.c.idx == sa.bindparam("i"))
        .values({c: sa.bindparam(c) for c in VERDICT_COLUMNS}), rows)
    ids: dict[tuple[int, int], int] = {}
    by_characteristic: dict[int, list[int]] = {}
    for r in rows:
        by_characteristic.setdefault(r["cid"], []).append(r["i"])
    for cid, idxs in by_characteristic.items():
        query = sa.select(samples.c.id, samples.c.idx).where(
            samples.c.characteristic_id == cid, samples.c.idx.in_(idxs))
        ids.update({(cid, idx): sid for sid, idx in conn.execute(query)})
    return ids


def insert_violations(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert violations; their ids in the order of ``rows``."""
    return insert_ids(conn, violations, rows)


def insert_rows(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Plain batch insert (readings, rejects, outbox)."""
    if rows:
        conn.execute(_insert(table), rows)


@functools.cache
def _insert(table: sa.Table) -> sa.Insert:
    return sa.insert(table)  # built once per table: a statement costs more to build than to run


def next_outbox_seq(conn: Connection, bridge: str) -> int:
    """The next outbox sequence number of this bridge."""
    last = conn.execute(sa.select(sa.func.max(outbox.c.seq)).where(outbox.c.bridge == bridge)).scalar()
    return 1 if last is None else int(last) + 1


def pending_outbox(conn: Connection, bridge: str, after: int, limit: int) -> list[Any]:
    """Unconfirmed events of this bridge with seq > ``after``, oldest first."""
    query = (sa.select(outbox.c.seq, outbox.c.topic, outbox.c.payload, outbox.c.retain)
             .where(outbox.c.bridge == bridge, outbox.c.seq > after)
             .order_by(outbox.c.seq).limit(limit))
    return list(conn.execute(query))


def characteristic_topics(conn: Connection) -> set[str]:
    """The topics of every characteristic the database knows, configured now or before."""
    return set(conn.scalars(sa.select(characteristics.c.topic)))


def replace_subscriptions(conn: Connection, bridge: str, filters: Sequence[str]) -> set[str]:
    """Record ``filters`` as this bridge's subscriptions; the ones recorded before."""
    previous = set(conn.scalars(sa.select(subscriptions.c.topic_filter).where(subscriptions.c.bridge == bridge)))
    conn.execute(sa.delete(subscriptions).where(subscriptions.c.bridge == bridge))
    insert_rows(conn, subscriptions, [{"bridge": bridge, "topic_filter": f} for f in filters])
    return previous


def delete_confirmed(conn: Connection, bridge: str, up_to: int) -> None:
    """Forget the events the broker has acknowledged (every seq <= ``up_to``)."""
    conn.execute(sa.delete(outbox).where(outbox.c.bridge == bridge, outbox.c.seq <= up_to))



def last_delivery(conn: Connection, bridge: str) -> int:
    """The counter of this bridge's latest recorded delivery (0 if none)."""
    last = conn.execute(sa.select(sa.func.max(deliveries.c.counter))
                        .where(deliveries.c.bridge == bridge)).scalar()
    return int(last or 0)


def forget_deliveries(conn: Connection, bridge: str) -> None:
    """Delete the record of ``bridge``'s deliveries."""
    conn.execute(sa.delete(deliveries).where(deliveries.c.bridge == bridge))


def deliveries_of(conn: Connection, bridge: str, mids: Sequence[int]) -> dict[int, tuple[str, int]]:
    """(digest, counter) of the latest message processed under each of ``mids``."""
    if not mids:
        return {}
    query = sa.select(deliveries.c.mid, deliveries.c.digest, deliveries.c.counter).where(
        deliveries.c.bridge == bridge, deliveries.c.mid.in_(mids))
    return {mid: (digest, counter) for mid, digest, counter in conn.execute(query)}


def record_deliveries(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Upsert (bridge, mid, digest, counter) rows."""
    _upsert(conn, deliveries, ("bridge", "mid"), ("digest", "counter"), rows)


def violation_characteristics(conn: Connection, ids: Sequence[int]) -> dict[int, int]:
    """The characteristic of each of these violations that exists, by violation id."""
    query = sa.select(violations.c.id, violations.c.characteristic_id).where(violations.c.id.in_(ids))
    return {row.id: row.characteristic_id for row in conn.execute(query)}


def violations_by_id(conn: Connection, ids: Sequence[int]) -> dict[int, Any]:
    """The violations rows with these ids, by id (for update: acknowledgements)."""
    query = sa.select(violations).where(violations.c.id.in_(ids)).with_for_update()
    return {row.id: row for row in conn.execute(query)}


def acknowledge(conn: Connection, ids: Sequence[int], user: str, reason: str, time: str, reason_code: str,
                assignable_cause: bool) -> list[Any]:
    """Mark violations acknowledged by ``user``; their rows afterwards, in id order."""
    conn.execute(sa.update(violations).where(violations.c.id.in_(ids))
                 .values(acknowledged=True, ack_user=user, ack_reason=reason, ack_time=time,
                         reason_code=reason_code, assignable_cause=assignable_cause))
    return list(conn.execute(sa.select(violations).where(violations.c.id.in_(ids))
                             .order_by(violations.c.id)))


def samples_by_id(conn: Connection, ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """(characteristic_id, idx) of the samples with these ids, by id."""
    query = sa.select(samples.c.id, samples.c.characteristic_id, samples.c.idx).where(samples.c.id.in_(ids))
    return {row.id: (row.characteristic_id, row.idx) for row in conn.execute(query)}


def proposed_samples(conn: Connection, characteristic_id: int, first: int, stop: int) -> list[int]:
    """The ids of a characteristic's samples with idx in first..stop-1 that an acknowledgement marked as
    having an assignable cause."""
    query = (sa.select(samples.c.id).distinct()
             .join(violations, violations.c.sample_id == samples.c.id)
             .where(violations.c.characteristic_id == characteristic_id, violations.c.assignable_cause.is_(True),
                    samples.c.idx >= first, samples.c.idx < stop)
             .order_by(samples.c.id))
    return list(conn.scalars(query))


def recent_samples(conn: Connection, characteristic_id: int, limit: int) -> list[Any]:
    """The last ``limit`` samples of a characteristic, oldest first."""
    query = (sa.select(samples).where(samples.c.characteristic_id == characteristic_id)
             .order_by(samples.c.idx.desc()).limit(limit))
    return list(reversed(list(conn.execute(query))))


def recent_violations(conn: Connection, characteristic_id: int, limit: int,
                      open_only: bool = False) -> list[Any]:
    """The last ``limit`` violations (only unacknowledged ones if ``open_only``), oldest first."""
    query = sa.select(violations).where(violations.c.characteristic_id == characteristic_id)
    if open_only:
        query = query.where(violations.c.acknowledged.is_(False))
    query = query.order_by(violations.c.id.desc()).limit(limit)
    return list(reversed(list(conn.execute(query))))


def open_violations_by_characteristic(conn: Connection) -> dict[int, int]:
    """How many violations of each characteristic are not acknowledged."""
    query = (sa.select(violations.c.characteristic_id, sa.func.count()).where(violations.c.acknowledged.is_(False))
             .group_by(violations.c.characteristic_id))
    return {cid: int(count) for cid, count in conn.execute(query)}


def last_sample_id(conn: Connection, characteristic_id: int) -> int | None:
    """The id of a characteristic's latest sample."""
    query = (sa.select(samples.c.id).where(samples.c.characteristic_id == characteristic_id)
             .order_by(samples.c.idx.desc()).limit(1))
    return conn.execute(query).scalar()


def open_violations(conn: Connection) -> int:
    """How many violations are not acknowledged."""
    query = sa.select(sa.func.count()).select_from(violations).where(violations.c.acknowledged.is_(False))
    return int(conn.execute(query).scalar_one())
