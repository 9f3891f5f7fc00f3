"""Which database failures at start-up waiting cannot fix, said in one line: the bridge stops on them.

A server that does not answer may come back, so the bridge waits for it; a SQLite file in a folder
that does not exist, a URL of an unknown kind or a login the server refuses stays wrong until
someone fixes the setting.
"""

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from bridge.store.queries import open_database

log = logging.getLogger(__name__)
RETRY_MAX_S = 10.0
EXAMPLES = "e.g. sqlite:///spc.db or postgresql://user:password@host:5432/spc"
# PostgreSQL refuses with FATAL for these passing states too: wait for them like for no answer
_PASSING = ("starting up", "shutting down", "in recovery", "accepting connections", "too many connections",
            "connection slots")
# SQLite: another process holds the file for a moment
_SQLITE_PASSING = ("locked", "busy", "disk I/O")


class DatabaseUnusable(Exception):
    """The database cannot be used as configured; the message says why and what to do."""


def shown(url: str) -> str:
    """The URL with its password masked."""
    return make_url(url).render_as_string(hide_password=True)


def open_engine(url: str) -> Engine:
    """:func:`open_database`, raising DatabaseUnusable for a URL no engine can be made of."""
    try:
        return open_database(url)
    except ArgumentError as error:  # NoSuchModuleError: an unknown kind of database
        raise DatabaseUnusable(f"db: {shown(url)}: unknown kind of database ({error}): {EXAMPLES}") from error
    except ImportError as error:
        raise DatabaseUnusable(f"db: {shown(url)}: its driver is not installed ({error}): use "
                               "postgresql:// (psycopg 3, installed with spc-bridge) or install that driver") from error


def permanent(engine: Engine, error: DBAPIError) -> str | None:
    """Why the database can never work as configured, or None when it may come back (retry)."""
    detail = " ".join(str(error.orig or error).split())
    where = f"database {engine.url.render_as_string(hide_password=True)}"
    if engine.dialect.name == "sqlite":
        if any(word in detail for word in _SQLITE_PASSING):
            return None
        path = Path(engine.url.database or "")
        if not path.parent.is_dir():
            return f"{where}: the folder {path.parent} does not exist: create it, or give --db another file"
        if "readonly" in detail or "unable to open" in detail:
            return (f"{where}: cannot write {path} ({detail}): the bridge's user must be able to write the file "
                    "and its folder (SQLite adds -wal and -shm files beside it)")
        return f"{where}: {detail}: give --db another file"
    if "FATAL" in detail and not any(word in detail for word in _PASSING):
        refusal = detail.split("FATAL:", 1)[1].strip()
        return f"{where}: the server refused: {refusal}; check the user, the password and the database name"
    if "no password supplied" in detail:
        return f"{where}: the server asks for a password: put it in the URL (postgresql://user:password@host/db)"
    if type(error.orig).__name__ in ("InsufficientPrivilege", "ReadOnlySqlTransaction"):
        return f"{where}: cannot write: {detail}; give the user the right to create and write tables"
    return None


def prepare_waiting(engine: Engine, prepare: Callable[[Engine], None], stop: threading.Event) -> bool:
    """Run ``prepare`` (create tables), waiting with backoff while the database is unreachable; False
    if stopped meanwhile, DatabaseUnusable if waiting cannot help."""
    backoff = 0.0
    while True:
        try:
            prepare(engine)
            return True
        except DBAPIError as error:
            problem = permanent(engine, error)
            if problem is not None:
                raise DatabaseUnusable(problem) from error
            backoff = min(RETRY_MAX_S, backoff * 2 or 1.0)
            log.warning("database %s unreachable (%s); next attempt in %g s",
                        engine.url.render_as_string(hide_password=True),
                        str(error.orig).strip().splitlines()[0] if error.orig else error, backoff)
        if stop.wait(backoff):
            return False
