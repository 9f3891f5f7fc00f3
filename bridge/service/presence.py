"""A connection's presence: the retained state it publishes once ready and its last will.

The bridge's own link announces ``online``/``offline`` on spc/bridge/state. A Sparkplug host
application announces itself on ``spBv1.0/STATE/<host_id>`` with JSON ``{"online": ..., "timestamp":
...}``, whose birth and will carry the same timestamp, taken anew for each connection (Sparkplug
3.0, host application STATE), and republishes its birth when it sees itself declared offline.
"""

import json
import time
from typing import Protocol

from bridge.contract import OFFLINE, ONLINE, STATE_TOPIC
from bridge.sparkplug.topics import state_topic


class Presence(Protocol):
    """The retained state of one connection."""

    topic: str
    watch: bool  # subscribe to ``topic`` and republish ``online`` when another says offline

    def connecting(self) -> None:
        """A new connection is about to be made."""

    def online(self) -> str:
        """The payload that says the connection is up and ready."""

    def offline(self) -> str:
        """The payload of the last will, and of a clean stop."""

    def says_offline(self, payload: bytes) -> bool:
        """Whether ``payload``, seen on ``topic``, declares this connection offline."""


class BridgeState:
    """spc/bridge/state: ``online`` or ``offline``."""

    topic = STATE_TOPIC
    watch = False

    def connecting(self) -> None:
        """Nothing changes between connections."""

    def online(self) -> str:
        """``online``."""
        return ONLINE

    def offline(self) -> str:
        """``offline``."""
        return OFFLINE

    def says_offline(self, payload: bytes) -> bool:
        """``offline`` as published by the will."""
        return payload == OFFLINE.encode()


class HostState:
    """spBv1.0/STATE/<host_id> of a Sparkplug B 3.0 host application."""

    watch = True

    def __init__(self, host_id: str) -> None:
        self.topic = state_topic(host_id)
        self.timestamp = int(time.time() * 1000)

    def connecting(self) -> None:
        """A new timestamp, shared by this connection's will and birth."""
        self.timestamp = int(time.time() * 1000)

    def _state(self, online: bool) -> str:
        return json.dumps({"online": online, "timestamp": self.timestamp})

    def online(self) -> str:
        """``{"online": true, "timestamp": ...}``."""
        return self._state(True)

    def offline(self) -> str:
        """``{"online": false, "timestamp": ...}``."""
        return self._state(False)

    def says_offline(self, payload: bytes) -> bool:
        """A STATE with ``"online": false`` (an old will, another instance's, or a stale retained one)."""
        try:
            body = json.loads(payload)
        except ValueError:
            return False
        return isinstance(body, dict) and body.get("online") is False
