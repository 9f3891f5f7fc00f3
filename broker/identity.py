"""Which client ids a user may connect with, on both brokers: its own name, or its name, ':' and anything.

A client id names a session: a client that connects with it takes over its connection and resumes or wipes
what the broker keeps under it. So each user gets ids of its own (broker.users: no user name contains ':', so
no user's ids are another's), and an empty id, which the broker replaces with a random one for a clean
session, stays open to all. Mosquitto applies the same rule in broker/mosquitto_plugin/clientid_owner.c;
tests/test_identity.py checks that both brokers decide alike.
"""

from __future__ import annotations

__all__ = ["SEPARATOR", "allowed_client_ids", "may_use_client_id", "refusal"]

SEPARATOR = ":"


def may_use_client_id(user: str, client_id: str) -> bool:
    """Whether user `user` may connect with `client_id` ("" means: let the broker pick one)."""
    return client_id in ("", user) or client_id.startswith(f"{user}{SEPARATOR}")


def allowed_client_ids(user: str) -> str:
    """The client ids `user` may use, as a log message says it."""
    return f"'{user}' or '{user}{SEPARATOR}<anything>'"


def refusal(user: str, client_id: str) -> str:
    """The log line for a CONNECT of `user` with a client id it may not use."""
    return (f"user {user} may not use client id {client_id!r}: it may use {allowed_client_ids(user)}; "
            "refused (not authorized)")
