"""Who may do what, on both brokers: the one role table from which Mosquitto's acl_file and the embedded
broker's ACL are both generated (README, "Users, roles and TLS")."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from paho.mqtt.client import topic_matches_sub

from bridge.contract import (
    ANY_CHARACTERISTIC, ERRORS_TOPIC, HISTORY_COMMAND, REQUEST_ROOT, RESPONSE_ROOT, ROOT, STATE_TOPIC, ack_topic,
    limits_topic, request_topic, sample_topic, violation_topic,
)

__all__ = ["ROLES", "USER", "Rights", "Role", "permits", "rights"]

USER = "%u"  # stands for the user's own name, as in Mosquitto's ACL patterns

# What dashboards and operators read: every characteristic's events and the bridge's own state and errors.
_EVENTS = (
    *(topic(ANY_CHARACTERISTIC) for topic in (sample_topic, violation_topic, ack_topic, limits_topic)),
    STATE_TOPIC, ERRORS_TOPIC,
)
_OWN_RESPONSES = f"{RESPONSE_ROOT}/{USER}/#"


@dataclass(frozen=True)
class Role:
    """The topic filters a role's users may publish on and read from (USER stands for the user's name)."""

    publish: tuple[str, ...]
    read: tuple[str, ...]
    own_topics: bool = False  # also publishes on the topics given to each user (a gauge's ingest topics)


ROLES: dict[str, Role] = {
    "gauge": Role(publish=(), read=(), own_topics=True),
    # `#`: the bridge subscribes to whatever topics the characteristics file names, which the broker cannot
    # know; it may already publish every event, so reading every topic gives it nothing more to abuse.
    "bridge": Role(publish=(f"{ROOT}/#",), read=("#",)),
    # Read-only queries, answered on the dashboard's own response topic: the one thing it may publish.
    "dashboard": Role(publish=(request_topic(USER, HISTORY_COMMAND),), read=(*_EVENTS, _OWN_RESPONSES)),
    "operator": Role(publish=(f"{REQUEST_ROOT}/{USER}/#",), read=(*_EVENTS, _OWN_RESPONSES)),
    "admin": Role(publish=("#",), read=("#",)),
}


@dataclass(frozen=True)
class Rights:
    """One user's rights: the topic filters it may publish on and read from, its name filled in."""

    publish: tuple[str, ...]
    read: tuple[str, ...]


def rights(name: str, role: str, topics: Sequence[str] = ()) -> Rights:
    """The rights of user `name` in `role`; `topics` are its own ingest topics (gauges only)."""
    table = ROLES[role]
    own = tuple(topics) if table.own_topics else ()
    return Rights(
        publish=tuple(pattern.replace(USER, name) for pattern in table.publish) + own,
        read=tuple(pattern.replace(USER, name) for pattern in table.read),
    )


def permits(filters: Iterable[str], topic: str) -> bool:
    """Whether any of `filters` matches `topic` (MQTT matching: `a/#` also matches `a`, as in Mosquitto)."""
    return any(topic_matches_sub(pattern, topic) for pattern in filters)
