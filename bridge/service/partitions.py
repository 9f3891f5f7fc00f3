"""Partitions of a logical bridge: which one serves a characteristic, and which one answers a request.

With ``--partitions N`` the characteristics are split into N partitions, each served by one bridge
with its own MQTT client id (``<client-id>:p<k>``), session and lease (bridge.store.lease). A
characteristic's ``partition`` key places it; without one it goes to partition ``id mod N``, a rule
that never changes while N does not. Every partition subscribes to the command requests; the one that
serves the characteristic a request names answers it, and partition 0 answers those that name none
it can find (a malformed request, a request without an id, an acknowledgement of unknown violations),
so every request has exactly one answer; a request naming an unknown id goes to that id's partition.
A ``characteristic`` command may not give a characteristic another partition than the one it
belongs to: the old partition would keep running it beside the new one.
"""

import json
import re
from collections.abc import Iterable
from typing import Any, NamedTuple

from sqlalchemy.engine import Connection

from bridge.config import CharacteristicConfig
from bridge.contract import ACK_COMMAND, CHARACTERISTIC_COMMAND, MAX_ACK_IDS
from bridge.service.command_errors import CommandError
from bridge.service.commands import screen
from bridge.store import queries


def partition_client_id(client_id: str, index: int, count: int) -> str:
    """The MQTT client id (and lease name) of partition ``index``: the bridge's own with one partition."""
    return client_id if count == 1 else f"{client_id}:p{index}"


def partition_lease(client_id: str, index: int, count: int) -> str:
    """The lease name of partition ``index`` of ``count``: the client id with one partition, else
    ``<client-id>:p<index>/<count>``, so that an instance started with another count sees the layout differ."""
    return client_id if count == 1 else f"{client_id}:p{index}/{count}"


def layout_of(client_id: str, lease: str) -> int | None:
    """The partition count of a lease name of bridge ``client_id`` (0: unknown, a partition lease named
    without its count, as by earlier builds); None for another bridge's lease."""
    if lease == client_id:
        return 1
    found = re.fullmatch(rf"{re.escape(client_id)}:p\d+(?:/(\d+))?", lease)
    return None if found is None else int(found.group(1) or 0)


def _ints(*values: Any) -> list[int]:
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool)]


class Owner(NamedTuple):
    """The partition that answers a request and, when it must refuse it for being split, why."""

    partition: int
    problem: str | None = None


class Partitioning:
    """Partition ``index`` of ``count``, knowing where every configured characteristic goes."""

    def __init__(self, index: int, count: int, configs: Iterable[CharacteristicConfig]) -> None:
        self.index = index
        self.count = count
        self._placed = {c.id: c.partition for c in configs if c.partition is not None}

    def of(self, characteristic_id: int, partition: int | None = None) -> int:
        """The partition of a characteristic: its ``partition`` key, else its id mod the count."""
        if partition is None:
            partition = self._placed.get(characteristic_id)
        return partition if partition is not None else characteristic_id % self.count

    def serves(self, config: CharacteristicConfig) -> bool:
        """Whether this partition runs the characteristic."""
        return self.of(config.id, config.partition) == self.index

    def owner(self, conn: Connection, command: str, payload: bytes) -> Owner:
        """Which partition answers this request (read from the database for acknowledgements); one
        the bridge refuses before parsing it (too big, too deep) or cannot parse goes to partition 0."""
        try:
            screen(payload)
            body = json.loads(payload)
        except (CommandError, ValueError):
            return Owner(0)
        if not isinstance(body, dict):
            return Owner(0)
        if command == CHARACTERISTIC_COMMAND:
            table = body.get("characteristic")
            table = table if isinstance(table, dict) else {}
            ids, given = _ints(table.get("id")), _ints(table.get("partition"))
            if not ids:
                return Owner(0)
            runs_in = self.of(ids[0])
            # a new configuration replaces the old one whole: without a key it would go to id mod N
            placed = given[0] if given else ids[0] % self.count
            if body.get("action") != "retire" and placed != runs_in:  # run by another one too, or by none
                left_out = "" if given else f" (give \"partition\": {runs_in}, which the request leaves out)"
                return Owner(runs_in, f"partition: characteristic {ids[0]} belongs to partition {runs_in} of "
                                      f"{self.count}{left_out}; a command cannot move it: change its partition "
                                      "key in the file, and restart every process of the bridge")
            return Owner(runs_in)
        if command != ACK_COMMAND:
            ids = _ints(body.get("characteristic_id"))
            return Owner(self.of(ids[0]) if ids else 0)
        listed = body.get("violation_ids")
        wanted = _ints(body.get("violation_id"), *(listed if isinstance(listed, list) else []))
        found = queries.violation_characteristics(conn, wanted[:MAX_ACK_IDS])
        if not found:
            return Owner(0)
        owners = {self.of(cid) for cid in found.values()}
        first = self.of(found[min(found)])
        if len(owners) > 1:
            return Owner(first, "these violations belong to characteristics served by different partitions of "
                                "the bridge: acknowledge them one characteristic at a time")
        return Owner(first)
