"""The lease of bridge.store.lease on real databases: one holder at a time, take-over once it expires or
its holder is gone, and the fence that makes a commit of the instance that lost it fail."""

import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa

from bridge.store.lease import Lease, LeaseLost, bound_idle_transactions, create_table
from bridge.store.queries import open_database

TTL_S = 1.0


@pytest.fixture
def engines(database: str) -> "list[sa.engine.Engine]":
    """Engines on the database: instance a's for its lease, b's, and a's for its writes (as a bridge has one
    apart from its lease's); the leases table and a table to write exist."""
    made = [open_database(database) for _ in range(3)]
    create_table(made[0])
    with made[0].begin() as conn:
        conn.execute(sa.text("CREATE TABLE written (x INTEGER)"))
    yield made
    for engine in made:
        engine.dispose()


def _written(engine: sa.engine.Engine) -> list[int]:
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(sa.text("SELECT x FROM written ORDER BY x"))]


def test_one_holder_then_take_over_after_expiry_and_the_fence(engines: "list[sa.engine.Engine]") -> None:
    a = Lease(engines[0], "bridge:test", "a", TTL_S)
    b = Lease(engines[1], "bridge:test", "b", TTL_S)
    assert a.take(a.holder()) and a.epoch == 1
    assert not b.take(b.holder()), "taken while held"
    a.arm(engines[2])
    with engines[2].begin() as conn:
        conn.execute(sa.text("INSERT INTO written VALUES (1)"))
    a.renew()
    assert not a.lost.is_set()
    time.sleep(TTL_S + 0.2)  # a paused: no renewal
    holder = b.holder()
    assert holder is not None and holder.holder == "a" and holder.left_s < 0
    assert b.take(holder) and b.epoch == 2
    with pytest.raises(LeaseLost), engines[2].begin() as conn:
        conn.execute(sa.text("INSERT INTO written VALUES (2)"))
    assert a.lost.is_set()
    assert _written(engines[1]) == [1], "the instance that lost the lease committed"
    a.renew()  # no effect on b's lease
    assert b.holder() is not None and b.holder().holder == "b"
    b.release()
    assert b.free(b.holder())


def test_a_holder_that_renews_after_the_read_keeps_its_lease(engines: "list[sa.engine.Engine]") -> None:
    """The standby read the lease expired, then the slow holder renewed it: the take-over of what was
    read fails, and the holder keeps its lease and its epoch."""
    a = Lease(engines[0], "bridge:test", "a", TTL_S)
    b = Lease(engines[1], "bridge:test", "b", TTL_S)
    assert a.take(a.holder())
    time.sleep(TTL_S + 0.2)
    read = b.holder()
    assert read is not None and read.left_s < 0
    a.renew()
    assert not b.take(read), "a lease renewed since it was read was taken over"
    assert not a.lost.is_set() and b.holder().holder == "a" and b.holder().epoch == 1


def test_a_holder_of_this_host_that_is_gone_is_taken_over_at_once(engines: "list[sa.engine.Engine]",
                                                                   database: str) -> None:
    child = subprocess.run([sys.executable, "-c", (
        "import sys; from bridge.store.queries import open_database; from bridge.store.lease import Lease; "
        "lease = Lease(open_database(sys.argv[1]), 'bridge:test', 'child', 3600); "
        "assert lease.take(lease.holder())"), database], timeout=60, check=False)
    assert child.returncode == 0
    b = Lease(engines[1], "bridge:test", "b", TTL_S)
    holder = b.holder()
    assert holder is not None and holder.holder == "child" and holder.left_s > 3000
    assert b.take(holder), "the lease of a process that is gone was not taken at once"


def test_a_transaction_left_open_cannot_hold_up_the_take_over(engines: "list[sa.engine.Engine]",
                                                               database: str) -> None:
    """A paused instance's open transaction that locked the lease row: PostgreSQL ends it after the lease's
    time, so the take-over goes on and the commit fails; SQLite has one writer at a time, so the take-over
    waits until that commit, which is still the holder's."""
    a = Lease(engines[0], "bridge:test", "a", TTL_S)
    b = Lease(engines[1], "bridge:test", "b", TTL_S)
    assert a.take(a.holder())
    a.arm(engines[2])
    conn = engines[2].connect()
    conn.begin()
    conn.execute(sa.text("INSERT INTO written VALUES (3)"))
    conn.execute(sa.text("SELECT epoch FROM leases WHERE name = 'bridge:test'" +
                         (" FOR UPDATE" if database.startswith("postgresql") else "")))
    taken = threading.Event()

    def take() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if b.take(b.holder()):
                    taken.set()
                    return
            except sa.exc.DBAPIError:
                pass  # SQLite: locked by the open transaction
            time.sleep(0.2)

    thread = threading.Thread(target=take)
    thread.start()
    if database.startswith("postgresql"):
        assert taken.wait(TTL_S * 10), "the take-over waited for the open transaction"
        with pytest.raises((LeaseLost, sa.exc.DBAPIError)):
            conn.commit()
        expected = []
    else:  # one writer at a time: the take-over waits, and the commit before it is still a's
        time.sleep(TTL_S + 0.2)
        assert not taken.is_set()
        conn.commit()
        assert taken.wait(10)
        expected = [3]
    conn.close()
    thread.join(30)
    assert _written(engines[1]) == expected


def test_a_renewal_left_open_cannot_hold_up_the_take_over(postgresql_database: str) -> None:
    """An instance paused in the middle of renewing its lease, the row updated and not yet committed: the
    server ends that transaction after the lease's time, and another instance takes the lease over
    (without the bound it waited until the paused one woke, found once under CI's load)."""
    engines = [open_database(postgresql_database) for _ in range(2)]
    try:
        create_table(engines[0])
        bound_idle_transactions(engines[0], TTL_S)
        a = Lease(engines[0], "bridge:test", "a", TTL_S)
        b = Lease(engines[1], "bridge:test", "b", TTL_S)
        assert a.take(a.holder())
        paused = engines[0].connect()
        paused.begin()
        paused.execute(sa.text("UPDATE leases SET expires_at = expires_at WHERE name = 'bridge:test'"))
        deadline = time.monotonic() + TTL_S * 10
        while time.monotonic() < deadline:
            try:
                if b.take(b.holder()):
                    break
            except sa.exc.DBAPIError:
                pass  # the row still locked: b gave up waiting after a renewal period, and tries again
            time.sleep(0.1)
        assert b.epoch == 2, "the take-over waited for the paused renewal"
        with pytest.raises(sa.exc.DBAPIError):
            paused.commit()
        paused.close()
        assert b.holder().holder == "b"
    finally:
        for engine in engines:
            engine.dispose()
