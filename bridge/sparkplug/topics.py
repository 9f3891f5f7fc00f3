"""Sparkplug B 3.0 topic names: built and parsed only here (`namespace/group_id/message_type/edge_node_id/[device_id]`
and `spBv1.0/STATE/<host_id>`, specification chapter 4)."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["DEVICE_TYPES", "MESSAGE_TYPES", "NAMESPACE", "NODE_TYPES", "SparkplugTopic", "device_topic", "id_problem",
           "node_topic", "parse_state_topic", "parse_topic", "state_topic"]

NAMESPACE = "spBv1.0"
STATE = "STATE"
# A device id comes with DBIRTH, DDEATH, DDATA and DCMD, and never with the node's own types.
NODE_TYPES = ("NBIRTH", "NDEATH", "NDATA", "NCMD")
DEVICE_TYPES = ("DBIRTH", "DDEATH", "DDATA", "DCMD")
MESSAGE_TYPES = NODE_TYPES + DEVICE_TYPES
_RESERVED = ("+", "/", "#")


class SparkplugTopic(NamedTuple):
    """A node or device topic, taken apart; `device_id` is None for a node's own message types."""

    group_id: str
    message_type: str
    edge_node_id: str
    device_id: str | None = None


def id_problem(identifier: str) -> str | None:
    """Why `identifier` cannot be a group, edge node, device or host id, or None (a non-empty UTF-8 string without
    the reserved '+', '/' and '#', and without U+0000, which no MQTT topic may hold)."""
    if not identifier:
        return "must not be empty"
    if any(char in identifier for char in (*_RESERVED, "\0")):
        return "must not contain '+', '/', '#' or U+0000"
    return None


def state_topic(host_id: str) -> str:
    """Where the host application `host_id` publishes its STATE (`+` in place of an id: every host's)."""
    return f"{NAMESPACE}/{STATE}/{host_id}"


def node_topic(group: str, kind: str, node: str) -> str:
    """The topic of an edge node's message of type `kind` (NBIRTH, NDATA, NCMD, ...; `+`: any type)."""
    return f"{NAMESPACE}/{group}/{kind}/{node}"


def device_topic(group: str, kind: str, node: str, device: str) -> str:
    """The topic of a device's message of type `kind` (DBIRTH, DDATA, DCMD, ...), the device behind `node`."""
    return f"{node_topic(group, kind, node)}/{device}"


def parse_topic(topic: str) -> SparkplugTopic | None:
    """`topic` taken apart if it is a Sparkplug B node or device topic; None otherwise (STATE included)."""
    levels = topic.split("/")
    if len(levels) not in (4, 5) or levels[0] != NAMESPACE or any(id_problem(level) for level in levels[1:]):
        return None
    _, group, kind, node, *device = levels
    if kind not in (DEVICE_TYPES if device else NODE_TYPES):
        return None
    return SparkplugTopic(group, kind, node, device[0] if device else None)


def parse_state_topic(topic: str) -> str | None:
    """The host id of a STATE topic `spBv1.0/STATE/<host_id>`, or None if `topic` is not one."""
    levels = topic.split("/")
    if len(levels) != 3 or levels[:2] != [NAMESPACE, STATE] or id_problem(levels[2]):
        return None
    return levels[2]
