"""The `engineer` role, which alone (the admin aside) sends the SPC workflow's commands, and the operator's and
dashboard's narrower requests: observed on both brokers over every listener, and in broker.roles' table.

As in tests/test_access.py, whose fixture and helpers this module shares, every right and every denial is
observed, and the expected rights are written out here from bridge.contract's command lists, independently of
broker/roles.py. A denial is observed without sleeping: each publisher sends, after everything else, a marker
on a topic it may use, and once every marker has arrived so would have anything sent before it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import pytest

from bridge.contract import (
    COMMANDS, ENGINEER_COMMANDS, OPERATOR_COMMANDS, REQUEST_FILTER, request_topic, response_topic,
)
from broker.roles import permits, rights
from broker.users import User, UserDirectory
from tests.brokers import SCHEMES, BrokerHandle, Scheme
from tests.stream import wait_until
from tests.test_access import connect, connect_all, mismatches, received
from tests.test_access import secured  # noqa: F401  (its broker fixture, one of each kind for the module)
from tests.test_users import SECRET, spc_bridge

# Many clients of one module-wide broker, TLS included, observed within bounded waits: alone (.ci/run).
pytestmark = pytest.mark.serial

ENGINEER, OPERATOR, DASHBOARD = "engineer", "operator", "dashboard"  # the test users of tests.credentials
MARKER = "marker"
DELIVERY_S = 20.0  # what may pass arrives within this, even on a machine busy with other tests
# Every event an operator reads (tests/test_access.py), which an engineer reads too.
EVENTS = ("spc/1/sample", "spc/1/violation", "spc/1/ack", "spc/1/limits", "spc/1/status", "spc/bridge/state",
          "spc/bridge/errors")


class Undelivered(AssertionError):
    """A message that must pass did not arrive in time."""


def observe(broker: BrokerHandle, scheme: Scheme, reader: str, subscription: str,
            sent: Sequence[tuple[str, str, bool]]) -> list[str]:
    """:func:`observe_once`, once more if a message that must pass never came: the embedded broker can lose a
    QoS 1 delivery on a busy machine, which says nothing of the rights (a wrong denial fails both rounds)."""
    try:
        return observe_once(broker, scheme, reader, subscription, sent)
    except Undelivered:
        return observe_once(broker, scheme, reader, subscription, sent)


def observe_once(broker: BrokerHandle, scheme: Scheme, reader: str, subscription: str,
                 sent: Sequence[tuple[str, str, bool]]) -> list[str]:
    """Each (publisher, topic, delivered) of `sent` is published in order, publishers and `reader` (subscribed to
    `subscription`) all on the listener of `scheme`; the cases where `reader` received a message that must be
    dropped, or missed one that must pass. Each publisher's first topic that must pass carries its marker."""
    token = uuid.uuid4().hex
    markers = {user: next(topic for who, topic, delivered in sent if who == user and delivered)
               for user, _, _ in sent}
    expected = {f"{user} -> {topic}": delivered for user, topic, delivered in sent}
    # What must arrive before anything is judged: every marker (sent after all else of its sender), and everything
    # that must pass, so that a late delivery is never taken for a refusal.
    awaited = {case for case, delivered in expected.items() if delivered}
    awaited |= {f"{MARKER} {user} -> {topic}" for user, topic in markers.items()}
    with ExitStack() as stack:
        subscriber = stack.enter_context(connect(broker, scheme, reader))
        subscriber.subscribe(subscription)
        publishers = connect_all(stack, broker, scheme, tuple(markers))
        for user, topic, _ in sent:
            publishers[user].publish(topic, f"{token} {user}")
        for user, topic in markers.items():
            publishers[user].publish(topic, f"{token} {MARKER} {user}")

        def observed() -> set[str]:
            """Who sent what that `reader` received, markers included."""
            return {f"{rest} -> {topic}" for topic, rest in received(subscriber, token)}

        try:
            wait_until(lambda: awaited <= observed(), DELIVERY_S,
                       f"every marker and every message that must pass at {reader} over {scheme}")
        except AssertionError as timeout:
            raise Undelivered(f"{timeout}; missing: {sorted(awaited - observed())}") from None
        return mismatches(expected, observed())


@pytest.mark.parametrize("scheme", SCHEMES)
def test_an_engineer_sends_every_command_to_the_bridge(secured: BrokerHandle, scheme: Scheme) -> None:
    sent = [(ENGINEER, request_topic(ENGINEER, command), True)
            for command in (*ENGINEER_COMMANDS, *OPERATOR_COMMANDS)]
    assert observe(secured, scheme, "bridge", REQUEST_FILTER, sent) == []


@pytest.mark.parametrize("scheme", SCHEMES)
def test_operators_and_dashboards_cannot_send_an_engineers_commands(secured: BrokerHandle, scheme: Scheme) -> None:
    sent = [
        (OPERATOR, request_topic(OPERATOR, "ack"), True),
        (DASHBOARD, request_topic(DASHBOARD, "history"), True),
        *((user, request_topic(user, command), False)
          for command in ENGINEER_COMMANDS for user in (OPERATOR, DASHBOARD)),
        (OPERATOR, request_topic(OPERATOR, "unknown"), False),  # nor a command nobody was granted
    ]
    assert observe(secured, scheme, "bridge", REQUEST_FILTER, sent) == []


@pytest.mark.parametrize("scheme", SCHEMES)
def test_an_engineer_speaks_and_reads_as_itself_only(secured: BrokerHandle, scheme: Scheme) -> None:
    forged = [(ENGINEER, request_topic(OPERATOR, "recalculate"), False),
              (ENGINEER, request_topic(OPERATOR, "ack"), False),
              (ENGINEER, request_topic(ENGINEER, "recalculate"), True)]
    assert observe(secured, scheme, "bridge", REQUEST_FILTER, forged) == []
    # The admin publishes; the engineer, subscribed to everything, gets the events and its own answers only.
    others = (response_topic(OPERATOR, "recalculate"), request_topic(OPERATOR, "ack"), "spc/1/other", "line/7/bore")
    reads = [("admin", topic, False) for topic in others]
    reads += [("admin", response_topic(ENGINEER, command), True) for command in COMMANDS]
    reads += [("admin", topic, True) for topic in EVENTS]
    assert observe(secured, scheme, ENGINEER, "#", reads) == []


def test_the_role_table_grants_each_command_by_name() -> None:
    own = {role: rights(role, role) for role in (ENGINEER, OPERATOR, DASHBOARD)}  # users named after their role
    granted = {role: {command for command in (*COMMANDS, "unknown")
                      if permits(mine.publish, request_topic(role, command))} for role, mine in own.items()}
    assert granted == {ENGINEER: set(COMMANDS), OPERATOR: set(OPERATOR_COMMANDS), DASHBOARD: {"history"}}
    assert not any(permits(mine.publish, request_topic("someone-else", command))
                   for mine in own.values() for command in COMMANDS)
    assert not any("#" in topic or "+" in topic for topic in own[ENGINEER].publish)  # a new command is not granted
    assert rights("eng1", ENGINEER).read == rights("eng1", OPERATOR).read
    assert all(permits(own[ENGINEER].read, topic) for topic in (*EVENTS, response_topic(ENGINEER, "rules")))
    assert not any(permits(own[ENGINEER].read, topic)
                   for topic in (response_topic(OPERATOR, "rules"), request_topic(OPERATOR, "ack"), "line/7/bore"))


def test_an_engineer_is_added_from_the_command_line_with_its_acl(tmp_path: Path) -> None:
    added = spc_bridge("user", "add", "eng1", "--role", ENGINEER, "--password-stdin", "--dir", str(tmp_path),
                       stdin=SECRET + "\n")
    assert added.returncode == 0, added.stderr
    directory = UserDirectory(tmp_path)
    assert directory.load() == [User("eng1", ENGINEER)]
    assert directory.mosquitto_acl.read_text().split("\n\n")[1].splitlines() == [
        "# engineer",
        "user eng1",
        *(f"topic write spc/bridge/request/eng1/{command}" for command in COMMANDS),
        *(f"topic read {topic}" for topic in ("spc/+/sample", "spc/+/violation", "spc/+/ack", "spc/+/limits",
                                              "spc/+/status", "spc/bridge/state", "spc/bridge/state/#", "spc/bridge/errors",
                                              "spc/bridge/response/eng1/#")),
    ]
