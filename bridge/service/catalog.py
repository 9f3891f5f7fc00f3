"""The characteristics in the database, the one source of truth: a file is applied to them as a
declarative change (created, changed, retired, unchanged), and engineers' commands change them.

A characteristic remembers the file's text it was last imported from (``imported``): a file that
still says the same leaves it alone, so changes made by command survive a restart; a file that says
something new replaces it, as a new version. A characteristic the file no longer names is retired if
it came from a file; one an engineer created stays. Every change goes to the audit trail.
"""

import json
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bridge.config import CharacteristicConfig, Characteristics
from bridge.contract import DEFAULT_REASON_CODES
from bridge.store import audit, queries
from bridge.store.schema import settings

# the settings rows of what a file gives besides its characteristics
REASON_CODES = "reason_codes"
INGEST_ROOTS = "ingest_roots"
CATALOG_LOCK = 0x5350_4301  # PostgreSQL advisory lock key ("SPC" 1) held while a file is applied
# What an engine's saved state depends on: a change of any of these starts the characteristic afresh.
_SHAPE = ("chart", "subgroup_size", "baseline")


class Imported(NamedTuple):
    """What applying a file did, and the characteristics that run afterwards."""

    created: list[int]
    changed: list[int]
    retired: list[int]
    unchanged: int
    active: list[CharacteristicConfig]
    reshaped: set[int]  # changed so that the saved engine state no longer applies


def plain(text: str) -> dict[str, Any]:
    """A configuration's JSON as a dict of the keys it gives (for the audit trail)."""
    return {key: value for key, value in json.loads(text).items() if value is not None}


def row(config: CharacteristicConfig, version: int, imported: str | None, topic: str) -> dict[str, Any]:
    """The characteristics row of ``config``."""
    return {"id": config.id, "name": config.name, "topic": topic, "chart": config.chart,
            "config": config.model_dump_json(), "version": version, "imported": imported, "retired": False}


def reshaped(old: dict[str, Any], new: CharacteristicConfig) -> bool:
    """Whether the change from ``old`` (:func:`plain`) to ``new`` makes a saved engine state meaningless."""
    return any(old.get(key) != getattr(new, key) for key in _SHAPE)


def apply_file(conn: Connection, configs: Characteristics, source: str, at: str,
               topic_of: Callable[[CharacteristicConfig], str]) -> Imported:
    """Apply a file's characteristics to the database as a declarative change; audit every change.

    ``source`` names the file (it is the audit trail's user, as ``file:<path>``); ``topic_of`` gives a
    config's source topic for the characteristics row."""
    user = f"file:{source}"
    if conn.dialect.name == "postgresql":  # the partitions of a bridge start together: one applies it at a time
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": CATALOG_LOCK})
    stored = queries.stored_characteristics(conn)
    created: list[int] = []
    changed: list[int] = []
    reshaped_ids: set[int] = set()
    active: list[CharacteristicConfig] = []
    rows: list[dict[str, Any]] = []
    trail: list[dict[str, Any]] = []
    named = set()
    for config in configs:
        named.add(config.id)
        text = config.model_dump_json()
        old = stored.pop(config.id, None)
        if old is None:
            created.append(config.id)
            rows.append(row(config, 1, text, topic_of(config)))
            trail.append(audit.entry(at, user, "characteristic.create", config.id, None, plain(text),
                                     f"imported from {source}"))
            active.append(config)
        elif old.imported == text and not old.retired:
            active.append(config if old.config == text else CharacteristicConfig.model_validate_json(old.config))
        elif old.config == text and not old.retired:
            # what runs already (a file exported from the database, or one written before the catalog)
            rows.append(row(config, old.version or 1, text, topic_of(config)))
            active.append(config)
        else:
            changed.append(config.id)
            previous = plain(old.config)
            if reshaped(previous, config):
                reshaped_ids.add(config.id)
            rows.append(row(config, (old.version or 1) + 1, text, topic_of(config)))
            trail.append(audit.entry(at, user, "characteristic.update", config.id, previous, plain(text),
                                     f"imported from {source}"))
            active.append(config)
    retired = sorted(cid for cid, old in stored.items() if old.imported is not None and not old.retired)
    for cid in retired:
        old = stored[cid]
        rows.append({**old._mapping, "retired": True, "version": (old.version or 1) + 1})
        trail.append(audit.entry(at, user, "characteristic.retire", cid, plain(old.config), None,
                                 f"not in {source}"))
    active += [CharacteristicConfig.model_validate_json(old.config) for cid, old in sorted(stored.items())
               if cid not in retired and not old.retired and cid not in named]
    queries.save_characteristics(conn, rows)
    # Recorded rather than only returned: the bridge that runs a characteristic may be another
    # partition's, starting after this one.
    queries.mark_changed_by_file(conn, changed, reshaped_ids, retired)
    codes = list(configs.reason_codes) if configs.reason_codes is not None else None
    trail += _apply_setting(conn, REASON_CODES, codes, list(DEFAULT_REASON_CODES), user, at, source)
    trail += _apply_setting(conn, INGEST_ROOTS, list(configs.ingest_roots), [], user, at, source)
    audit.append(conn, trail)
    return Imported(created, changed, retired, len(configs) - len(created) - len(changed), active, reshaped_ids)


def stored_configs(conn: Connection) -> list[CharacteristicConfig]:
    """The characteristics that run when no file is given: every one not retired."""
    return [CharacteristicConfig.model_validate_json(old.config)
            for _, old in sorted(queries.stored_characteristics(conn).items()) if not old.retired]


def _setting(conn: Connection, name: str) -> Any:
    """A stored setting (JSON), None if never stored."""
    value = conn.execute(sa.select(settings.c.value).where(settings.c.name == name)).scalar()
    return json.loads(value) if value is not None else None


def reason_codes(conn: Connection) -> tuple[str, ...]:
    """The reason codes an acknowledgement may give."""
    codes = _setting(conn, REASON_CODES)
    return tuple(codes) if codes is not None else DEFAULT_REASON_CODES


def ingest_roots(conn: Connection) -> tuple[str, ...]:
    """The ingest roots of the file last imported (empty: derived from the topics)."""
    return tuple(_setting(conn, INGEST_ROOTS) or ())


def _apply_setting(conn: Connection, name: str, given: list[str] | None, default: list[str], user: str,
                   at: str, source: str) -> list[dict[str, Any]]:
    """Store a file's setting (``default`` when it names none) if it differs from the database's; its
    audit row (none when a database first takes the default)."""
    wanted = given if given is not None else default
    stored = _setting(conn, name)
    if stored == wanted:
        return []
    value = json.dumps(wanted)
    if stored is None:
        conn.execute(sa.insert(settings).values(name=name, value=value))
    else:
        conn.execute(sa.update(settings).where(settings.c.name == name).values(value=value))
    if stored is None and wanted == default:
        return []
    return [audit.entry(at, user, name, None, stored if stored is not None else default, wanted,
                        f"imported from {source}")]


def summary(result: Imported, source: str) -> str:
    """One log line: what applying the file did."""
    def ids(values: Sequence[int]) -> str:
        shown = ", ".join(map(str, values[:20]))
        return f" ({shown}{', ...' if len(values) > 20 else ''})" if values else ""
    return (f"{source}: {len(result.created)} characteristics created{ids(result.created)}, "
            f"{len(result.changed)} changed{ids(result.changed)}, {len(result.retired)} retired"
            f"{ids(result.retired)}, {result.unchanged} unchanged")
