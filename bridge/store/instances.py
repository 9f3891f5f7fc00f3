"""The live instances of a logical bridge, each with the room it has for more partitions, in the database.

Every instance renews its row as it polls the leases; a row unrenewed for the lease's time is not
counted. An instance serving more partitions than its --take (it took those of a dead instance)
hands one back while another live instance has room, so processes started one after another end up
sharing the partitions.
"""

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from bridge.store.lease import NOW
from bridge.store.schema import instances


class Instances:
    """Instance ``name`` among the instances of the logical bridge ``bridge``."""

    def __init__(self, engine: Engine, bridge: str, name: str, ttl_s: float) -> None:
        self.engine = engine
        self.bridge = bridge
        self.name = name
        self.ttl_s = ttl_s
        self._now: Any = sa.literal_column(NOW[engine.dialect.name])  # a column expression of seconds

    def beat(self, room: int) -> None:
        """Say this instance is alive and could serve ``room`` more partitions (DBAPIError if the database is away)."""
        expires = self._now + self.ttl_s
        mine = (instances.c.bridge == self.bridge) & (instances.c.instance == self.name)
        with self.engine.begin() as conn:
            if conn.execute(instances.update().where(mine).values(room=room, expires_at=expires)).rowcount:
                return
            try:
                with conn.begin_nested():
                    conn.execute(instances.insert().values(bridge=self.bridge, instance=self.name, room=room,
                                                           expires_at=expires))
            except IntegrityError:
                pass  # inserted meanwhile by another process given the same --instance: its beat counts

    def others_with_room(self) -> int:
        """How many other live instances could serve more partitions."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).where(
                instances.c.bridge == self.bridge, instances.c.instance != self.name, instances.c.room > 0,
                instances.c.expires_at > self._now)).scalar_one()

    def leave(self) -> None:
        """Remove this instance's row (a clean stop)."""
        with self.engine.begin() as conn:
            conn.execute(instances.delete().where(instances.c.bridge == self.bridge,
                                                  instances.c.instance == self.name))
