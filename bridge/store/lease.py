"""The lease that makes one instance the active one of a logical bridge, kept in the database.

A row per logical bridge (its MQTT client id): who holds it, until when by the database's clock,
and an ``epoch`` raised by every take-over. Once armed on the pipeline's engine, every commit first
checks, with the row locked, that the epoch is still this instance's (:meth:`Lease.arm`): an
instance paused (SIGSTOP) or cut off while another took over fails its next commit instead of
writing beside the new one. On PostgreSQL a transaction left open by a paused instance is ended by
the server after the lease's time, so it cannot block the take-over.

A lease row, rather than a PostgreSQL advisory lock: a paused process, or one behind a half-open
connection, keeps its session and so its advisory lock for as long as its socket lives (the kernel
still answers TCP keep-alives), and a lock gives no token a commit could check. The lease expires
by itself and its epoch fences. A holder on this host whose process is gone (kill -9) is taken over
at once, without waiting for the expiry. On SQLite the lease works between processes of one
machine only, since the file is there.
"""

import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from bridge.store.dberrors import brief
from bridge.store.schema import leases

log = logging.getLogger(__name__)

# Seconds since 1970 by the database's clock, so that instances on machines whose clocks differ agree.
NOW = {
    "postgresql": "extract(epoch from clock_timestamp())::float8",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}


class LeaseLost(Exception):
    """This instance no longer holds the lease: another took over, or it could not be renewed in time."""


class Holder(NamedTuple):
    """The row of a lease: who holds it, from which host and process, its epoch and time left."""

    holder: str
    host: str
    pid: int
    epoch: int
    left_s: float  # seconds until it expires; negative once expired
    expires_at: float  # as stored: a take-over happens only if the row still says this


def _alive(pid: int) -> bool:
    """Whether a process of this machine has this pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, as another user's
    return True


def this_host() -> str:
    """Where a pid means this process table: the host name, its boot and its pid namespace (containers
    sharing a host name see each other's pids as gone; cloned machines share a host name)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:  # not Linux
        return socket.gethostname()
    return f"{socket.gethostname()} boot {boot} pidns {namespace}"


def renewal_period(ttl_s: float) -> float:
    """How often a held lease is renewed: three times in its time, and at least every second."""
    return min(1.0, ttl_s / 3)


def _clock() -> float:
    """Seconds that go on while the machine is suspended or a virtual machine is frozen (the lease's
    time runs by the database's clock, which does not stop either)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic()


def default_instance() -> str:
    """The name of this process when none is given: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Lease:
    """The lease of the logical bridge ``name``, taken and renewed for ``ttl_s`` by ``instance``."""

    def __init__(self, engine: Engine, name: str, instance: str, ttl_s: float) -> None:
        self.engine = engine
        self.name = name
        self.instance = instance
        self.ttl_s = ttl_s
        self.host = this_host()
        self.pid = os.getpid()
        self.epoch = 0  # 0: not held
        self.lost = threading.Event()
        self._renewed_at = 0.0  # _clock() at which the last successful renewal was sent
        self._unrenewed = False  # its time ran out while the database was away (said once)
        self._now = NOW[engine.dialect.name]

    def _expiry(self) -> Any:
        return sa.literal_column(f"({self._now} + {float(self.ttl_s)!r})")

    def holder(self) -> Holder | None:
        """The lease's row now, or None if it was never taken."""
        return holders(self.engine, leases.c.name == self.name).get(self.name)

    def free(self, current: Holder | None) -> bool:
        """Whether a lease whose row is ``current`` may be taken: never taken, expired or released, or
        held by a process of this host that is gone."""
        if current is None or current.left_s <= 0:
            return True
        return current.host == self.host and current.pid != self.pid and not _alive(current.pid)

    def take(self, current: Holder | None) -> bool:
        """Take the lease, free as ``current`` shows it (read just before); True once held with a new
        epoch, False if another instance was first. DBAPIError if the database is away."""
        if not self.free(current):
            return False
        sent = _clock()
        values = {"holder": self.instance, "host": self.host, "pid": self.pid, "expires_at": self._expiry()}
        with self.engine.begin() as conn:
            self._bound_lock_waits(conn)
            if current is None:
                try:
                    with conn.begin_nested():
                        conn.execute(leases.insert().values(name=self.name, epoch=1, **values))
                except IntegrityError:
                    return False  # another instance took it first
                epoch = 1
            else:
                # the row as read: not renewed since (the holder was slow, not gone), nor taken by another
                query = (leases.update().where(leases.c.name == self.name, leases.c.epoch == current.epoch,
                                               leases.c.expires_at == current.expires_at)
                         .values(epoch=leases.c.epoch + 1, **values))
                if conn.execute(query).rowcount != 1:
                    return False
                epoch = current.epoch + 1
        self.epoch, self._renewed_at = epoch, sent
        self.lost.clear()
        return True

    def renew(self) -> None:
        """Extend the lease by its time; sets ``lost`` when another instance holds it now. With the
        database away it stays as it is: :meth:`expired_here` tells when another may have taken it."""
        sent = _clock()
        try:
            with self.engine.begin() as conn:
                self._bound_lock_waits(conn)
                kept = conn.execute(leases.update().where(leases.c.name == self.name, leases.c.epoch == self.epoch)
                                    .values(expires_at=self._expiry())).rowcount == 1
        except DBAPIError as error:
            if self.expired_here() and not self._unrenewed:
                self._unrenewed = True
                log.warning("the lease of %s could not be renewed for %g s (%s): until it is, this instance "
                            "commits nothing another instance may have taken over, and does not reconnect",
                            self.name, self.ttl_s, brief(error))
            return
        if not kept:
            self._lose("another instance has taken it over")
            return
        if self._unrenewed:
            log.info("the lease of %s is renewed again (epoch %d)", self.name, self.epoch)
        self._renewed_at, self._unrenewed = sent, False

    def _bound_lock_waits(self, conn: Connection) -> None:
        """On PostgreSQL, give up waiting for the lease row after a renewal period (DBAPIError): a commit
        of a paused holder may keep it locked for the lease's time, while this instance's other
        leases must be renewed meanwhile."""
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text(f"SET LOCAL lock_timeout = {int(renewal_period(self.ttl_s) * 1000)}"))

    def expired_here(self) -> bool:
        """Whether the lease's time has run out since the last renewal this instance sent."""
        return _clock() - self._renewed_at >= self.ttl_s

    def _lose(self, why: str) -> None:
        if not self.lost.is_set():
            log.error("instance %s lost the lease of %s (epoch %d): %s; it stops serving it",
                      self.instance, self.name, self.epoch, why)
        self.lost.set()

    def release(self) -> None:
        """Give the lease up at once (a clean stop): a standby need not wait for its expiry."""
        try:
            with self.engine.begin() as conn:
                conn.execute(leases.update().where(leases.c.name == self.name, leases.c.epoch == self.epoch)
                             .values(expires_at=0.0))
        except DBAPIError as error:
            log.warning("could not release the lease of %s (%s): a standby takes over when it expires",
                        self.name, brief(error))

    def arm(self, engine: Engine) -> None:
        """Fence every commit on ``engine``: it fails with LeaseLost unless this instance still holds
        the lease. On PostgreSQL, a transaction left idle for the lease's time is ended by the server."""
        bound_idle_transactions(engine, self.ttl_s)
        check = (sa.select(leases.c.epoch).where(leases.c.name == self.name).with_for_update())

        @sa.event.listens_for(engine, "commit")
        def _fence(conn: Connection) -> None:
            if self.lost.is_set():
                raise LeaseLost(f"{self.instance} no longer holds the lease of {self.name}")
            if conn.execute(check).scalar() != self.epoch:
                self._lose("another instance has taken it over (seen at a commit)")
                raise LeaseLost(f"{self.instance} no longer holds the lease of {self.name}")


def holders(engine: Engine, which: Any) -> dict[str, Holder]:
    """The rows of the leases ``which`` (a condition on the leases table), by name."""
    now: Any = sa.literal_column(NOW[engine.dialect.name])
    with engine.connect() as conn:
        rows = conn.execute(sa.select(leases.c.name, leases.c.holder, leases.c.host, leases.c.pid, leases.c.epoch,
                                      leases.c.expires_at - now, leases.c.expires_at).where(which))
        return {name: Holder(*rest) for name, *rest in rows}


def bound_idle_transactions(engine: Engine, seconds: float) -> None:
    """On PostgreSQL, have the server end a transaction of ``engine`` left idle for ``seconds``: one
    of a paused or cut-off instance (a renewal, a commit's fence) would otherwise keep the lease row
    locked, and the take-over waiting, until its socket dies."""
    if engine.dialect.name != "postgresql":
        return

    @sa.event.listens_for(engine, "connect")
    def _bounded(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET idle_in_transaction_session_timeout = {int(seconds * 1000)}")
        dbapi_connection.commit()

    engine.dispose()  # connections made before have no such bound


def create_table(engine: Engine, table: sa.Table = leases) -> None:
    """Create ``table`` if it is missing (another instance may be creating it at the same time)."""
    try:
        table.create(engine, checkfirst=True)
    except DBAPIError:
        if not sa.inspect(engine).has_table(table.name):
            raise

