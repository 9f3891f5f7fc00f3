"""Who may do what, observed on both brokers over every listener (MQTT, WebSockets, each plain and over TLS):
logins, publishing, reading live and retained messages, last wills, and persistent sessions.

Every right and every denial is checked by observation: a message that must not pass is looked for at a
subscriber that may read everything until a later message of the same run has arrived and QUIET more has
passed. The expected rights are written out here from the README's role table, independently of
broker/roles.py, which both brokers' ACLs are generated from. One broker of each kind serves the whole module.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.brokers import (
    SCHEMES,
    BrokerHandle,
    ConnectionRefused,
    MqttProbe,
    Scheme,
    Transport,
    start_embedded_broker,
    start_mosquitto,
)
from tests.credentials import Certificates

# Many clients of one module-wide broker, TLS included, observed within bounded waits: alone (.ci/run).
pytestmark = pytest.mark.serial

QUIET = 0.5  # how long a message that must not arrive is given to show up after one that must
ROLES = ("gauge", "bridge", "dashboard", "operator", "admin")  # the test user of each role is named after it

# (user, topic, may publish): the test gauge's own topics are line/#, t/# and gauges/g1/#.
PUBLISH = [
    ("gauge", "line/7/bore", True),
    ("gauge", "gauges/g1/diameter", True),
    ("gauge", "gauges/g2/diameter", False),             # another gauge's topic
    ("gauge", "spc/1/violation", False),                # a forged violation
    ("gauge", "spc/bridge/state", False),
    ("gauge", "spc/bridge/request/gauge/ack", False),
    ("bridge", "spc/1/violation", True),
    ("bridge", "spc/bridge/state", True),
    ("bridge", "spc/bridge/response/operator/ack", True),
    ("bridge", "line/7/bore", False),                   # a forged reading
    ("dashboard", "spc/bridge/request/dashboard/history", True),  # its one read-only query
    ("dashboard", "spc/bridge/request/dashboard/ack", False),
    ("dashboard", "spc/bridge/request/operator/history", False),  # as another user
    ("dashboard", "spc/1/violation", False),
    ("dashboard", "spc/1/limits", False),
    ("dashboard", "line/7/bore", False),
    ("operator", "spc/bridge/request/operator/ack", True),
    ("operator", "spc/bridge/request/operator/history", True),
    ("operator", "spc/bridge/request/dashboard/ack", False),      # an acknowledgement in another's name
    ("operator", "spc/1/ack", False),
    ("operator", "spc/1/violation", False),
    ("operator", "line/7/bore", False),
    ("admin", "spc/1/violation", True),
    ("admin", "anything/at/all", True),
]

# Topics the admin publishes, and which of them each user may read.
READ_TOPICS = [
    "line/7/bore", "spc/1/sample", "spc/1/violation", "spc/1/ack", "spc/1/limits", "spc/bridge/state",
    "spc/bridge/errors", "spc/bridge/request/operator/ack", "spc/bridge/response/dashboard/history",
    "spc/bridge/response/operator/ack", "spc/1/other", "other/topic",
]
_EVENTS = {"spc/1/sample", "spc/1/violation", "spc/1/ack", "spc/1/limits", "spc/bridge/state", "spc/bridge/errors"}
READABLE = {
    "gauge": set(),
    "bridge": set(READ_TOPICS),
    "dashboard": _EVENTS | {"spc/bridge/response/dashboard/history"},
    "operator": _EVENTS | {"spc/bridge/response/operator/ack"},
    "admin": set(READ_TOPICS),
}

# (user, will topic, may publish it): a client's last will is a publication like any other.
WILLS = [
    ("gauge", "spc/1/violation", False),
    ("dashboard", "spc/bridge/state", False),           # a forged "bridge offline"
    ("gauge", "line/7/will", True),
    ("operator", "spc/bridge/request/operator/ack", True),
]

# Logins that must be refused: (what, user, password); None: the user's own password.
REFUSED = [
    ("wrong password", "operator", "not-the-password"),
    ("empty password", "admin", ""),
    ("unknown user", "intruder", "intruder-password"),
    ("anonymous", None, None),
]


@pytest.fixture(scope="module", params=["embedded", "mosquitto"])
def secured(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, role_users: Path,
            certificates: Certificates) -> Iterator[BrokerHandle]:
    """One broker of each kind with the test users and TLS, for the whole module."""
    broker: BrokerHandle
    if request.param == "embedded":
        broker = start_embedded_broker(role_users, certificates)
    else:
        broker = start_mosquitto(tmp_path_factory.mktemp("mosquitto"), role_users, certificates)
    try:
        yield broker
    finally:
        broker.stop()


def connect(broker: BrokerHandle, scheme: Scheme, user: str | None, **options: Any) -> MqttProbe:
    """A probe on the listener of `scheme`, logged in as `user`."""
    transport: Transport = "websockets" if scheme in ("ws", "wss") else "tcp"
    return MqttProbe(broker, transport, tls=scheme in ("mqtts", "wss"), user=user, **options)


def connect_all(stack: ExitStack, broker: BrokerHandle, scheme: Scheme,
                users: Sequence[str]) -> dict[str, MqttProbe]:
    """A probe logged in as each of `users`, connected in parallel, each closed with `stack`."""
    with ThreadPoolExecutor(len(users)) as pool:
        connecting = {user: pool.submit(connect, broker, scheme, user) for user in users}
    probes = {user: stack.enter_context(attempt.result()) for user, attempt in connecting.items()
              if attempt.exception() is None}
    for attempt in connecting.values():
        attempt.result()  # the first failure, if any, once every probe that did connect will be closed
    return probes


def received(probe: MqttProbe, token: str) -> list[tuple[str, str]]:
    """(topic, rest of the payload) of the messages of this run (payload `<token> ...`) that `probe` received."""
    found = []
    for message in list(probe.messages):
        first, _, rest = message.payload.decode(errors="replace").partition(" ")
        if first == token:
            found.append((message.topic, rest))
    return found


def arrived(probe: MqttProbe, token: str) -> set[str]:
    """Topics of the messages of this run that `probe` received."""
    return {topic for topic, _ in received(probe, token)}


def wait_for_topics(probe: MqttProbe, token: str, topics: set[str]) -> None:
    """Wait (bounded) until `probe` has received this run's messages on every one of `topics`."""
    deadline = time.monotonic() + probe.timeout
    while not topics <= arrived(probe, token) and time.monotonic() < deadline:
        time.sleep(0.02)


def mismatches(expected: dict[str, bool], observed: set[str]) -> list[str]:
    """The cases where what was observed is not what was expected, one line each."""
    return [f"{case}: expected {'to pass' if allowed else 'to be refused'}, observed the opposite"
            for case, allowed in expected.items() if (case in observed) != allowed]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_role_logs_in_and_nobody_else(secured: BrokerHandle, scheme: Scheme) -> None:
    with ThreadPoolExecutor(len(ROLES) + len(REFUSED)) as pool:
        logins = [pool.submit(connect, secured, scheme, user) for user in ROLES]
        # Each from its own address: the embedded broker refuses an address after 5 failed logins a minute.
        refusals = {what: pool.submit(connect, secured, scheme, user, password=password,
                                      source=f"127.0.{SCHEMES.index(scheme) + 1}.{index + 1}")
                    for index, (what, user, password) in enumerate(REFUSED)}
    for login in logins:
        login.result().close()
    admitted = [what for what, attempt in refusals.items() if attempt.exception() is None]
    for what in admitted:
        refusals[what].result().close()
    assert admitted == [], f"admitted on {scheme}: {admitted}"
    assert all(isinstance(attempt.exception(), ConnectionRefused) for attempt in refusals.values())


def check_publishes(secured: BrokerHandle, scheme: Scheme, users: Sequence[str],
                    publish: Sequence[tuple[str, str, bool]]) -> None:
    """Each (user, topic, allowed) publication of ``users`` reaches an admin subscriber exactly when allowed."""
    token = uuid.uuid4().hex
    controls = {user: next(topic for who, topic, allowed in publish if who == user and allowed) for user in users}
    with ExitStack() as stack:
        watcher = stack.enter_context(connect(secured, "mqtt", "admin"))
        watcher.subscribe("#")
        publishers = connect_all(stack, secured, scheme, users)
        for user, topic, _ in publish:
            publishers[user].publish(topic, f"{token} {user}")
        # Last, each publisher once more where it may: once that has arrived, so has anything it sent before.
        for user, topic in controls.items():
            publishers[user].publish(topic, f"{token} control")
        deadline = time.monotonic() + watcher.timeout
        while sum(rest == "control" for _, rest in received(watcher, token)) < len(controls) and \
                time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(QUIET)
        observed = {f"{rest} -> {topic}" for topic, rest in received(watcher, token) if rest != "control"}
    expected = {f"{user} -> {topic}": allowed for user, topic, allowed in publish}
    assert mismatches(expected, observed) == []


@pytest.mark.parametrize("scheme", SCHEMES)
def test_each_role_publishes_only_where_it_may(secured: BrokerHandle, scheme: Scheme) -> None:
    check_publishes(secured, scheme, ROLES, PUBLISH)


def check_live_reads(secured: BrokerHandle, scheme: Scheme, users: Sequence[str], root: str,
                     topics: Sequence[str], readable: Mapping[str, set[str]]) -> None:
    """Messages on ``topics`` reach each of ``users``, subscribed to ``#`` and to ``root``, on exactly
    ``readable[user]``."""
    token = uuid.uuid4().hex
    with ExitStack() as stack:
        readers = connect_all(stack, secured, scheme, users)
        for reader in readers.values():
            reader.subscribe("#")      # granted on both brokers (Mosquitto 2.0 grants every SUBSCRIBE) ...
            reader.subscribe(root)     # ... and what may not be read is filtered on delivery
        publisher = stack.enter_context(connect(secured, "mqtt", "admin"))
        for topic in topics:
            publisher.publish(topic, token)
        for user, reader in readers.items():
            wait_for_topics(reader, token, readable[user])
        time.sleep(QUIET)
        observed = {f"{user} <- {topic}" for user, reader in readers.items() for topic in arrived(reader, token)}
    expected = {f"{user} <- {topic}": topic in readable[user] for user in users for topic in topics}
    assert mismatches(expected, observed) == []


@pytest.mark.parametrize("scheme", SCHEMES)
def test_each_role_reads_only_what_it_may(secured: BrokerHandle, scheme: Scheme) -> None:
    check_live_reads(secured, scheme, ROLES, "spc/#", READ_TOPICS, READABLE)


def check_retained_reads(secured: BrokerHandle, scheme: Scheme, users: Sequence[str], topics: Sequence[str],
                         readable: Mapping[str, set[str]]) -> None:
    """Retained messages on ``topics`` reach each of ``users``, connecting later, on exactly ``readable[user]``."""
    token = uuid.uuid4().hex
    with ExitStack() as stack:
        publisher = stack.enter_context(connect(secured, "mqtt", "admin"))
        publisher.subscribe("#")
        for topic in topics:
            publisher.publish(topic, token, retain=True)
        wait_for_topics(publisher, token, set(topics))
        late = connect_all(stack, secured, scheme, users)
        for reader in late.values():
            reader.subscribe("#")
        for user, reader in late.items():
            wait_for_topics(reader, token, readable[user])
        time.sleep(QUIET)
        observed = {f"{user} <- {topic}" for user, reader in late.items() for topic in arrived(reader, token)}
        for topic in topics:
            publisher.publish(topic, b"", retain=True)  # cleared, for the other tests of the module
    expected = {f"{user} <- {topic}": topic in readable[user] for user in users for topic in topics}
    assert mismatches(expected, observed) == []


@pytest.mark.parametrize("scheme", SCHEMES)
def test_retained_messages_reach_only_who_may_read_them(secured: BrokerHandle, scheme: Scheme) -> None:
    # The admin stays subscribed to everything meanwhile: amqtt used to hand every connecting client the
    # retained messages of every other client's subscriptions.
    check_retained_reads(secured, scheme, ROLES, READ_TOPICS, READABLE)


def check_wills(secured: BrokerHandle, scheme: Scheme, wills: Sequence[tuple[str, str, bool]]) -> None:
    """Each (user, topic, allowed) will is published by the broker exactly when allowed."""
    token = uuid.uuid4().hex
    with connect(secured, "mqtt", "admin") as watcher:
        watcher.subscribe("#")
        for user, topic, _ in sorted(wills, key=lambda will: will[2]):  # the forbidden ones go first
            connect(secured, scheme, user, will=(topic, f"{token} {user}".encode())).drop()
        wait_for_topics(watcher, token, {topic for _, topic, allowed in wills if allowed})
        time.sleep(QUIET)
        observed = {f"{user} -> {topic}" for topic, user in received(watcher, token)}
        for topic in {topic for _, topic, _ in wills}:
            watcher.publish(topic, b"", retain=True)  # cleared, for the other tests of the module
    expected = {f"{user} -> {topic}": allowed for user, topic, allowed in wills}
    assert mismatches(expected, observed) == []


@pytest.mark.parametrize("scheme", SCHEMES)
def test_last_wills_obey_the_publish_rights(secured: BrokerHandle, scheme: Scheme) -> None:
    check_wills(secured, scheme, WILLS)


def test_a_session_resumed_by_its_user_gets_what_was_queued_for_it(secured: BrokerHandle) -> None:
    # The admin's persistent session subscribed to everything; a dashboard may not resume it
    # (broker.identity, tests/test_identity.py), the admin may.
    token = uuid.uuid4().hex
    client_id = f"admin:shared-{token[:8]}"
    with connect(secured, "mqtt", "admin", client_id=client_id, clean_session=False) as owner:
        owner.subscribe("#")
    with connect(secured, "mqtt", "admin") as publisher:
        for topic in ("other/secret", "spc/1/sample"):
            publisher.publish(topic, f"{token} queued")
        with pytest.raises(ConnectionRefused):
            connect(secured, "mqtt", "dashboard", client_id=client_id, clean_session=False)
        with connect(secured, "mqtt", "admin", client_id=client_id, clean_session=False) as owner:
            wait_for_topics(owner, token, {"other/secret", "spc/1/sample"})
            time.sleep(QUIET)
            observed = set(received(owner, token))
    assert observed == {("other/secret", "queued"), ("spc/1/sample", "queued")}


def test_a_wrong_password_cannot_disturb_another_clients_session(secured: BrokerHandle) -> None:
    # On amqtt a refused CONNECT used to take the session over, or wipe it (clean session), before the
    # password was checked.
    token = uuid.uuid4().hex
    client_id = f"bridge:victim-{token[:8]}"
    with connect(secured, "mqtt", "admin") as publisher:
        with connect(secured, "mqtt", "bridge", client_id=client_id, clean_session=False) as victim:
            victim.subscribe("line/#")
            with pytest.raises(ConnectionRefused):
                connect(secured, "mqtt", "bridge", password="guessed", client_id=client_id)
            publisher.publish("line/1", f"{token} online")
            wait_for_topics(victim, token, {"line/1"})
            assert not victim.disconnected.is_set(), "the refused client took the connection over"
        with pytest.raises(ConnectionRefused):
            connect(secured, "mqtt", "bridge", password="guessed", client_id=client_id)  # clean session
        publisher.publish("line/2", f"{token} queued")
        with connect(secured, "mqtt", "bridge", client_id=client_id, clean_session=False) as victim:
            wait_for_topics(victim, token, {"line/2"})
            assert arrived(victim, token) == {"line/2"}, "the session was wiped"
