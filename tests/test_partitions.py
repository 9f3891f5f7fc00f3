"""Where bridge.service.partitions places characteristics, lease names and requests: a characteristic
by its partition key or id mod N; a ``characteristic`` command that would move one to another
partition refused; the partition count read back from a lease name."""

import json
from typing import Any, cast

from sqlalchemy.engine import Connection

from bridge.config import CharacteristicConfig
from bridge.contract import CHARACTERISTIC_COMMAND
from bridge.service.partitions import Partitioning, layout_of, partition_lease

NO_DATABASE = cast(Connection, None)  # only acknowledgements are routed by a database lookup


def _config(cid: int, partition: int | None = None) -> CharacteristicConfig:
    return CharacteristicConfig(id=cid, name=f"c{cid}", topic=f"t/{cid}", chart="imr", partition=partition)


def _characteristic(table: dict[str, Any], action: str = "update") -> bytes:
    return json.dumps({"action": action, "characteristic": table, "reason": "test"}).encode()


def test_a_characteristic_goes_to_its_key_else_to_its_id_mod_n() -> None:
    placed = Partitioning(0, 3, [_config(7, partition=0), _config(8)])
    assert (placed.of(7), placed.of(8), placed.of(9)) == (0, 2, 0)
    assert placed.serves(_config(7, partition=0)) and not placed.serves(_config(8))


def test_a_command_cannot_move_a_characteristic_to_another_partition() -> None:
    placed = Partitioning(1, 3, [_config(7, partition=0)])
    owner = placed.owner(NO_DATABASE, CHARACTERISTIC_COMMAND, _characteristic({"id": 7, "partition": 2}))
    assert owner.partition == 0 and owner.problem is not None
    assert "characteristic 7 belongs to partition 0 of 3; a command cannot move it" in owner.problem
    new = placed.owner(NO_DATABASE, CHARACTERISTIC_COMMAND, _characteristic({"id": 10, "partition": 2}))
    assert new.partition == 1 and new.problem is not None, "a new characteristic placed off its id mod N"
    left_out = placed.owner(NO_DATABASE, CHARACTERISTIC_COMMAND, _characteristic({"id": 7}))
    assert left_out.partition == 0 and 'give "partition": 0, which the request leaves out' in (left_out.problem or "")
    assert placed.owner(NO_DATABASE, CHARACTERISTIC_COMMAND, _characteristic({"id": 7, "partition": 0})) == (0, None)
    assert placed.owner(NO_DATABASE, CHARACTERISTIC_COMMAND, _characteristic({"id": 10})) == (1, None)
    assert placed.owner(NO_DATABASE, CHARACTERISTIC_COMMAND, _characteristic({"id": 7}, "retire")) == (0, None)
    assert placed.owner(NO_DATABASE, CHARACTERISTIC_COMMAND, _characteristic({"name": "no id"})) == (0, None)


def test_lease_names_carry_the_partition_count() -> None:
    assert partition_lease("bridge", 0, 1) == "bridge"
    assert partition_lease("bridge", 2, 6) == "bridge:p2/6"
    assert [layout_of("bridge", name) for name in ("bridge", "bridge:p2/6", "bridge:p2", "bridge:line2",
                                                   "bridge:p2/6x", "other:p1/2")] == [1, 6, 0, None, None, None]
