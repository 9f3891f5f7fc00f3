"""Who may do what, on both brokers: the one role table from which Mosquitto's acl_file and the embedded
broker's ACL are both generated (README, "Security")."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from paho.mqtt.client import topic_matches_sub

from bridge.contract import (
    ANY_CHARACTERISTIC, COMMANDS, ERRORS_TOPIC, HISTORY_COMMAND, INSTANCE_FILTER, OPERATOR_COMMANDS, RESPONSE_ROOT, ROOT, STATE_TOPIC,
    ack_topic, limits_topic, request_topic, sample_topic, status_topic, violation_topic,
)
from bridge.sparkplug.topics import NAMESPACE, device_topic, id_problem, node_topic, state_topic

__all__ = ["EDGE_NODES", "GRANTS", "ROLES", "TOPICS", "USER", "Grant", "Rights", "Role", "permits", "rights"]

USER = "%u"  # stands for the user's own name, as in Mosquitto's ACL patterns
_MAX_TOPIC_BYTES = 65535

# What dashboards, operators and engineers read: every characteristic's events, the bridge's own state and errors,
# and the answers to their own requests.
_EVENTS = (
    *(topic(ANY_CHARACTERISTIC) for topic in (sample_topic, violation_topic, ack_topic, limits_topic, status_topic)),
    STATE_TOPIC, INSTANCE_FILTER, ERRORS_TOPIC,
)
_OWN_RESPONSES = f"{RESPONSE_ROOT}/{USER}/#"
_READER = (*_EVENTS, _OWN_RESPONSES)


def _requests(commands: Iterable[str]) -> tuple[str, ...]:
    """The user's own request topic of each of `commands`, by name: a command added later is not granted."""
    return tuple(request_topic(USER, command) for command in commands)


def _acl_problem(text: str) -> str | None:
    """Why `text` cannot stand in a line of Mosquitto's acl_file, or None."""
    if any(char.isspace() or char == "\0" for char in text):
        return "must not contain spaces or U+0000 (Mosquitto's acl_file is split on spaces)"
    return None


def _topic_problem(topic: str) -> str | None:
    """Why a gauge may not be given `topic` (an MQTT topic filter), or None."""
    levels = topic.split("/")
    if not topic or len(topic.encode("utf-8")) > _MAX_TOPIC_BYTES:
        return "must be 1 to 65535 bytes"
    if (problem := _acl_problem(topic)) is not None:
        return problem
    if topic.startswith("$"):
        return "starts with '$', which brokers reserve for themselves"
    if any(("#" in level and (level != "#" or i != len(levels) - 1)) or ("+" in level and level != "+")
           for i, level in enumerate(levels)):
        return "is not a valid topic filter ('+' takes a whole level, '#' only the whole last level)"
    if levels[0] in (ROOT, "+", "#"):
        return f"reaches {ROOT}/..., where only the bridge publishes"
    if levels[0] == NAMESPACE:
        return f"reaches {NAMESPACE}/..., Sparkplug's: give an edge node the edge role and --edge-node instead"
    return None


def _own_topic(topic: str) -> tuple[str, ...]:
    """A gauge publishes on the topic it is given."""
    return (topic,)


def _nothing(_: str) -> tuple[str, ...]:
    """No rights (a gauge reads nothing)."""
    return ()


def _edge_node_ids(edge_node: str) -> tuple[str, str]:
    """(group id, edge node id) of `GROUP/NODE`."""
    group, _, node = edge_node.partition("/")
    return group, node


def _edge_publish(edge_node: str) -> tuple[str, ...]:
    """Every message of the node and of its devices: births, deaths, data (a `#` also matches its parent level)."""
    group, node = _edge_node_ids(edge_node)
    return (f"{node_topic(group, '+', node)}/#",)


def _edge_read(edge_node: str) -> tuple[str, ...]:
    """The commands to the node and to its devices."""
    group, node = _edge_node_ids(edge_node)
    return node_topic(group, "NCMD", node), device_topic(group, "DCMD", node, "+")


def _edge_node_problem(edge_node: str) -> str | None:
    """Why an edge may not be given `edge_node` (`GROUP/NODE`), or None."""
    if "/" not in edge_node:
        return "must be GROUP/NODE: the Sparkplug group id and edge node id"
    for what, identifier in zip(("group id", "edge node id"), _edge_node_ids(edge_node)):
        if (problem := id_problem(identifier) or _acl_problem(identifier)) is not None:
            return f"has {what} {identifier!r}, which {problem}"
    topics = (*_edge_publish(edge_node), *_edge_read(edge_node))
    if any(len(topic.encode("utf-8")) > _MAX_TOPIC_BYTES for topic in topics):
        return "is too long: its topics must be at most 65535 bytes"
    return None


@dataclass(frozen=True)
class Grant:
    """What each user of a role is given by name (a gauge's topics, an edge's nodes), and the topic filters each
    one adds to the user's rights."""

    field: str                                 # the broker.users.User field and users.toml key holding them
    option: str                                # the `spc-bridge user add` option that gives one
    what: str                                  # what one is, for messages
    publish: Callable[[str], tuple[str, ...]]
    read: Callable[[str], tuple[str, ...]]
    problem: Callable[[str], str | None]       # why one may not be given, or None


TOPICS = Grant("topics", "--topic", "a topic filter it publishes on", _own_topic, _nothing, _topic_problem)
EDGE_NODES = Grant("edge_nodes", "--edge-node", "a GROUP/NODE it speaks for", _edge_publish, _edge_read,
                   _edge_node_problem)


@dataclass(frozen=True)
class Role:
    """The topic filters a role's users may publish on and read from (USER stands for the user's name), what
    each of its users is given by name, which adds to them, and the commands the bridge carries out for them."""

    publish: tuple[str, ...]
    read: tuple[str, ...]
    grant: Grant | None = None
    commands: tuple[str, ...] = ()


def _commanding(commands: tuple[str, ...]) -> Role:
    """A role whose users send these commands, as themselves, and read what dashboards read."""
    return Role(publish=_requests(commands), read=_READER, commands=commands)


ROLES: dict[str, Role] = {
    "gauge": Role(publish=(), read=(), grant=TOPICS),
    # A Sparkplug B edge node: its own nodes' messages, their commands, and every host's STATE, which tells it
    # whether the host it reports to is online.
    "edge": Role(publish=(), read=(state_topic("+"),), grant=EDGE_NODES),
    # `#`: the bridge subscribes to whatever topics the characteristics file names, which the broker cannot
    # know; it may already publish every event, so reading every topic gives it nothing more to abuse. As the
    # Sparkplug host application its host id is its user name: it commands any edge node and publishes its STATE.
    "bridge": Role(publish=(f"{ROOT}/#", node_topic("+", "NCMD", "+"), device_topic("+", "DCMD", "+", "+"),
                            state_topic(USER)), read=("#",)),
    # Read-only queries, answered on the dashboard's own response topic: the one thing it may publish.
    "dashboard": _commanding((HISTORY_COMMAND,)),
    # Acknowledgements and queries; the SPC workflow's commands (a characteristic, its limits and rules) are an
    # engineer's, who may also do all an operator does.
    "operator": _commanding(OPERATOR_COMMANDS),
    "engineer": _commanding(COMMANDS),
    "admin": Role(publish=("#",), read=("#",), commands=COMMANDS),
}

# Every kind of thing users are given by name, in the order of the role table.
GRANTS: tuple[Grant, ...] = tuple(dict.fromkeys(role.grant for role in ROLES.values() if role.grant is not None))


@dataclass(frozen=True)
class Rights:
    """One user's rights: the topic filters it may publish on and read from, its name filled in."""

    publish: tuple[str, ...]
    read: tuple[str, ...]


def rights(name: str, role: str, given: Sequence[str] = ()) -> Rights:
    """The rights of user `name` in `role`; `given`: what the user is given by name (its role's Grant)."""
    table = ROLES[role]
    publish = [pattern.replace(USER, name) for pattern in table.publish]
    read = [pattern.replace(USER, name) for pattern in table.read]
    if table.grant is not None:
        for item in given:
            publish += table.grant.publish(item)
            read += table.grant.read(item)
    return Rights(publish=tuple(publish), read=tuple(read))


def permits(filters: Iterable[str], topic: str) -> bool:
    """Whether any of `filters` matches `topic` (MQTT matching: `a/#` also matches `a`, as in Mosquitto)."""
    return any(topic_matches_sub(pattern, topic) for pattern in filters)
