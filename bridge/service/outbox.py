"""The outbox: committed events, numbered, kept until the broker has acknowledged them.

Events are written in the transaction of the data they describe, so that after a crash every
stored sample still has its events to publish; they are deleted once confirmed.
"""

from collections.abc import Sequence

from sqlalchemy.engine import Connection, Engine

from bridge.service.messages import Event, Outgoing
from bridge.store import queries
from bridge.store.schema import outbox


class Outbox:
    """One bridge's outbox rows: ``next_seq`` numbers the next event written."""

    def __init__(self, engine: Engine, bridge: str) -> None:
        self.engine = engine
        self.bridge = bridge
        self.next_seq = 1

    def load(self, conn: Connection) -> list[Outgoing]:
        """Continue the numbering after the stored events; every unconfirmed one."""
        self.next_seq = queries.next_outbox_seq(conn, self.bridge)
        return [Outgoing(*r) for r in queries.pending_outbox(conn, self.bridge, 0, 10**9)]

    def write(self, conn: Connection, events: Sequence[Event]) -> list[Outgoing]:
        """Add ``events`` in the transaction of ``conn``; they are numbered in order. A caller whose
        transaction fails puts ``next_seq`` back."""
        out = [Outgoing(self.next_seq + i, *event) for i, event in enumerate(events)]
        queries.insert_rows(conn, outbox, [
            {"bridge": self.bridge, "seq": o.seq, "topic": o.topic, "payload": o.payload,
             "retain": o.retain} for o in out])
        self.next_seq += len(out)
        return out

    def pending_after(self, seq: int, limit: int) -> list[Outgoing]:
        """Committed events after ``seq`` (to catch up when they were not kept in memory)."""
        with self.engine.connect() as conn:
            return [Outgoing(*r) for r in queries.pending_outbox(conn, self.bridge, seq, limit)]

    def forget_confirmed(self, up_to: int) -> None:
        """Delete the events the broker has acknowledged."""
        with self.engine.begin() as conn:
            queries.delete_confirmed(conn, self.bridge, up_to)
