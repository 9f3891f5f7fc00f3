"""The `edge` role of Sparkplug B edge nodes and the bridge's Sparkplug rights, observed on both brokers over every
listener; the users.toml and `spc-bridge user add --edge-node` side of it; and the Sparkplug topic names
(bridge.sparkplug.topics).

As in tests/test_access.py, whose fixture and helpers this module shares, every right and every denial is
observed, and the expected rights are written out here from the issue's role description, independently of
broker/roles.py. One broker of each kind serves the whole module.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.sparkplug.topics import (
    DEVICE_TYPES, MESSAGE_TYPES, NAMESPACE, NODE_TYPES, SparkplugTopic, device_topic, node_topic, parse_state_topic,
    parse_topic, state_topic,
)
from broker.users import User, UserDirectory, UsersError
from tests.brokers import SCHEMES, BrokerHandle, Scheme
from tests.credentials import create_role_users, password
from tests.test_access import check_live_reads, check_publishes, check_retained_reads, check_wills
from tests.test_access import secured  # noqa: F401  (its broker fixture, here with the users of role_users below)
from tests.test_users import spc_bridge

# Many clients of one module-wide broker, TLS included, observed within bounded waits: alone (.ci/run).
pytestmark = pytest.mark.serial

# Two edges: line3 speaks for two nodes in two groups, line4 for a neighbour of line3's first.
EDGE_USERS = (
    User("line3", "edge", edge_nodes=("Plant1/Line3", "Plant2/Press1")),
    User("line4", "edge", edge_nodes=("Plant1/Line4",)),
)

# (user, topic, may publish); each user's first allowed topic is also its control message.
PUBLISH = [
    ("line3", "spBv1.0/Plant1/NBIRTH/Line3", True),
    ("line3", "spBv1.0/Plant1/NDATA/Line3", True),
    ("line3", "spBv1.0/Plant1/NDEATH/Line3", True),
    ("line3", "spBv1.0/Plant1/DBIRTH/Line3/Gauge7", True),
    ("line3", "spBv1.0/Plant1/DDATA/Line3/Gauge7", True),
    ("line3", "spBv1.0/Plant2/NDATA/Press1", True),            # its second node
    ("line3", "spBv1.0/Plant1/NDATA/Line4", False),            # another edge's node
    ("line3", "spBv1.0/Plant1/DDATA/Line4/Gauge1", False),
    ("line3", "spBv1.0/Plant1/NCMD/Line4", False),             # a command to another node
    ("line3", "spBv1.0/Plant2/NDATA/Line3", False),            # its node id in another group
    ("line3", "spBv1.0/Plant1/NDATA/Press1", False),           # its other node id in the wrong group
    ("line3", "spBv1.0/STATE/bridge", False),                  # a forged host state
    ("line3", "spc/1/violation", False),
    ("line3", "spc/bridge/state", False),
    ("line3", "line/7/bore", False),
    ("line4", "spBv1.0/Plant1/NBIRTH/Line4", True),
    ("line4", "spBv1.0/Plant1/NDATA/Line3", False),
    ("bridge", "spBv1.0/Plant1/NCMD/Line3", True),
    ("bridge", "spBv1.0/Plant1/DCMD/Line3/Gauge7", True),
    ("bridge", "spBv1.0/Plant2/NCMD/Press1", True),
    ("bridge", "spBv1.0/STATE/bridge", True),                  # its own STATE: its host id is its user name
    ("bridge", "spc/1/violation", True),
    ("bridge", "spBv1.0/STATE/other-host", False),             # another host's STATE
    ("bridge", "spBv1.0/Plant1/NDATA/Line3", False),           # forged edge data
    ("bridge", "spBv1.0/Plant1/NBIRTH/Line3", False),
    ("gauge", "line/7/bore", True),
    ("gauge", "spBv1.0/Plant1/NCMD/Line3", False),
    ("gauge", "spBv1.0/Plant1/NDATA/Line3", False),
    ("dashboard", "spc/bridge/request/dashboard/history", True),
    ("dashboard", "spBv1.0/STATE/bridge", False),
]
PUBLISHERS = tuple(dict.fromkeys(user for user, _, _ in PUBLISH))

# Topics the admin publishes, and which of them each user may read.
READ_TOPICS = [
    "spBv1.0/Plant1/NCMD/Line3", "spBv1.0/Plant1/DCMD/Line3/Gauge7", "spBv1.0/Plant2/NCMD/Press1",
    "spBv1.0/Plant2/DCMD/Press1/Valve2", "spBv1.0/Plant1/NCMD/Line4", "spBv1.0/Plant1/DCMD/Line4/Gauge1",
    "spBv1.0/Plant2/NCMD/Line3", "spBv1.0/STATE/bridge", "spBv1.0/STATE/other-host",
    "spBv1.0/Plant1/NDATA/Line3", "spBv1.0/Plant1/NBIRTH/Line4",
    "spc/1/sample", "spc/bridge/state", "line/7/bore",
]
_HOSTS = {"spBv1.0/STATE/bridge", "spBv1.0/STATE/other-host"}
READABLE = {
    "line3": _HOSTS | {"spBv1.0/Plant1/NCMD/Line3", "spBv1.0/Plant1/DCMD/Line3/Gauge7", "spBv1.0/Plant2/NCMD/Press1",
                       "spBv1.0/Plant2/DCMD/Press1/Valve2"},
    "line4": _HOSTS | {"spBv1.0/Plant1/NCMD/Line4", "spBv1.0/Plant1/DCMD/Line4/Gauge1"},
    "bridge": set(READ_TOPICS),
    "dashboard": {"spc/1/sample", "spc/bridge/state"},
}

# (user, will topic, may publish it): an edge's NDEATH and a host's offline STATE are last wills.
WILLS = [
    ("line3", "spBv1.0/Plant1/NDEATH/Line3", True),
    ("line3", "spBv1.0/Plant1/NDEATH/Line4", False),
    ("line3", "spBv1.0/STATE/bridge", False),
    ("bridge", "spBv1.0/STATE/bridge", True),
    ("bridge", "spBv1.0/STATE/other-host", False),
]


@pytest.fixture(scope="module")
def role_users(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test users of every role (tests.credentials) and the two edges, for tests.test_access's `secured`."""
    path = create_role_users(tmp_path_factory.mktemp("users"))
    directory = UserDirectory(path)
    for user in EDGE_USERS:
        directory.add(user, password(user.name))
    return path


@pytest.mark.parametrize("scheme", SCHEMES)
def test_edges_and_the_bridge_publish_only_where_they_may(secured: BrokerHandle, scheme: Scheme) -> None:
    check_publishes(secured, scheme, PUBLISHERS, PUBLISH)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_edges_read_their_commands_and_the_host_states_only(secured: BrokerHandle, scheme: Scheme) -> None:
    check_live_reads(secured, scheme, tuple(READABLE), f"{NAMESPACE}/#", READ_TOPICS, READABLE)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_an_edge_connecting_later_gets_the_retained_host_state_and_nothing_else(secured: BrokerHandle,
                                                                               scheme: Scheme) -> None:
    check_retained_reads(secured, scheme, ("line3", "line4"), READ_TOPICS, READABLE)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_ndeath_and_offline_state_wills_obey_the_publish_rights(secured: BrokerHandle, scheme: Scheme) -> None:
    check_wills(secured, scheme, WILLS)


def test_an_edges_nodes_survive_the_users_file_and_become_its_acl(tmp_path: Path) -> None:
    directory = UserDirectory(tmp_path)
    edge = User("line3", "edge", edge_nodes=("Plant1/Line3", "Plant2/Press1"))
    directory.add(edge, password("line3"))
    directory.add(User("gauge7", "gauge", ("plant1/line1/gauge7/#",)), password("gauge7"))
    assert directory.load() == [edge, User("gauge7", "gauge", ("plant1/line1/gauge7/#",))]
    text = directory.users_file.read_text()
    assert '[[user]]\nname = "line3"\nrole = "edge"\nedge_nodes = ["Plant1/Line3", "Plant2/Press1"]\n' in text
    acl = directory.mosquitto_acl.read_text()
    assert "\n".join([
        "user line3",
        "topic write spBv1.0/Plant1/+/Line3/#",
        "topic write spBv1.0/Plant2/+/Press1/#",
        "topic read spBv1.0/STATE/+",
        "topic read spBv1.0/Plant1/NCMD/Line3",
        "topic read spBv1.0/Plant1/DCMD/Line3/+",
        "topic read spBv1.0/Plant2/NCMD/Press1",
        "topic read spBv1.0/Plant2/DCMD/Press1/+",
    ]) + "\n" in acl


@pytest.mark.parametrize(("table", "words"), [
    ('name = "line3"\nrole = "edge"\nedge_nodes = "Plant1/Line3"', "lists of strings"),
    ('name = "line3"\nrole = "edge"\nedge_nodes = [3]', "lists of strings"),
    ('name = "line3"\nrole = "edge"', "at least one --edge-node"),
    ('name = "line3"\nrole = "edge"\nedge_nodes = ["Plant1/Line 3"]', "spaces"),
    ('name = "dash"\nrole = "dashboard"\nedge_nodes = ["Plant1/Line3"]', "takes no --edge-node"),
])
def test_a_users_file_with_a_wrong_edge_is_refused(tmp_path: Path, table: str, words: str) -> None:
    (tmp_path / "users.toml").write_text(f"[[user]]\n{table}\n")
    with pytest.raises(UsersError, match=words):
        UserDirectory(tmp_path).load()


@pytest.mark.parametrize(("role", "topics", "edge_nodes", "words"), [
    ("edge", (), (), "at least one --edge-node"),
    ("edge", ("line/#",), ("Plant1/Line3",), "takes no --topic"),
    ("gauge", ("line/#",), ("Plant1/Line3",), "takes no --edge-node"),
    ("bridge", (), ("Plant1/Line3",), "takes no --edge-node"),
    ("edge", (), ("Plant1",), "GROUP/NODE"),
    ("edge", (), ("Plant1/Line3/Gauge7",), "'/'"),
    ("edge", (), ("Plant1/",), "edge node id '', which must not be empty"),
    ("edge", (), ("/Line3",), "group id '', which must not be empty"),
    ("edge", (), ("Plant1/+",), "'\\+'"),
    ("edge", (), ("#/Line3",), "'#'"),
    ("edge", (), ("Plant 1/Line3",), "spaces"),
    ("edge", (), ("Plant1/Line\t3",), "spaces"),
    ("edge", (), ("Plant1/Line\x003",), "U\\+0000"),
    ("edge", (), ("Plant1/" + "x" * 65535,), "65535 bytes"),
    ("gauge", (f"{NAMESPACE}/Plant1/NCMD/Line3",), (), "Sparkplug"),  # a gauge may not reach Sparkplug's topics
])
def test_an_edge_node_that_cannot_be_expressed_safely_is_refused(role: str, topics: tuple[str, ...],
                                                                 edge_nodes: tuple[str, ...], words: str) -> None:
    with pytest.raises(UsersError, match=words):
        User("someone", role, topics, edge_nodes)


def test_the_command_line_adds_lists_and_refuses_edges(tmp_path: Path) -> None:
    directory = tmp_path / "users"
    refused = spc_bridge("user", "add", "line3", "--role", "edge", "--edge-node", "Plant1/Line 3", "--password-stdin",
                         "--dir", str(directory), stdin="line3-password\n")
    assert refused.returncode == 2 and "--edge-node 'Plant1/Line 3'" in refused.stderr and "spaces" in refused.stderr
    assert not directory.exists()  # refused before the password was read or anything was written
    added = spc_bridge("user", "add", "line3", "--role", "edge", "--edge-node", "Plant1/Line3", "--edge-node",
                       "Plant2/Press1", "--password-stdin", "--dir", str(directory), stdin="line3-password\n")
    assert added.returncode == 0, added.stderr
    assert UserDirectory(directory).load() == [User("line3", "edge", edge_nodes=("Plant1/Line3", "Plant2/Press1"))]
    listed = spc_bridge("user", "list", "--dir", str(directory))
    assert listed.stdout.splitlines()[1] == "line3  edge  set       Plant1/Line3 Plant2/Press1"
    no_node = spc_bridge("user", "add", "line4", "--role", "edge", "--password-stdin", "--dir", str(directory),
                         stdin="line4-password\n")
    assert no_node.returncode == 2 and "at least one --edge-node" in no_node.stderr


def test_the_topic_builders_spell_the_specifications_names() -> None:
    assert NAMESPACE == "spBv1.0"
    assert state_topic("bridge") == "spBv1.0/STATE/bridge"
    assert node_topic("Plant1", "NBIRTH", "Line3") == "spBv1.0/Plant1/NBIRTH/Line3"
    assert device_topic("Plant1", "DDATA", "Line3", "Gauge7") == "spBv1.0/Plant1/DDATA/Line3/Gauge7"
    assert set(MESSAGE_TYPES) == {"NBIRTH", "NDEATH", "DBIRTH", "DDEATH", "NDATA", "DDATA", "NCMD", "DCMD"}


@pytest.mark.parametrize(("topic", "parsed"), [
    ("spBv1.0/Plant1/NBIRTH/Line3", SparkplugTopic("Plant1", "NBIRTH", "Line3", None)),
    ("spBv1.0/Plant1/NCMD/Line3", SparkplugTopic("Plant1", "NCMD", "Line3")),
    ("spBv1.0/Plant1/DDATA/Line3/Gauge7", SparkplugTopic("Plant1", "DDATA", "Line3", "Gauge7")),
    ("spBv1.0/My Plant/NDATA/Line ß", SparkplugTopic("My Plant", "NDATA", "Line ß")),  # any UTF-8 but + / #
    ("spBv1.0/STATE/NDATA/Line3", SparkplugTopic("STATE", "NDATA", "Line3")),            # a group named STATE
    ("spBv1.0/STATE/bridge", None),                    # a host's STATE: parse_state_topic
    ("spBv1.0/Plant1/NBIRTH/Line3/Gauge7", None),      # a node's type with a device id
    ("spBv1.0/Plant1/DBIRTH/Line3", None),             # a device's type without one
    ("spBv1.0/Plant1/NFOO/Line3", None),
    ("spBv1.0/Plant1/ndata/Line3", None),
    ("spAv1.0/Plant1/NDATA/Line3", None),
    ("spBv1.0/Plant1/NDATA", None),
    ("spBv1.0/Plant1/DDATA/Line3/Gauge7/extra", None),
    ("spBv1.0//NDATA/Line3", None),
    ("spBv1.0/Plant1/NDATA/", None),
    ("spBv1.0/+/NDATA/Line3", None),                   # a filter, not a topic
    ("spBv1.0/Plant1/DDATA/Line3/#", None),
    ("line/7/bore", None),
    ("", None),
])
def test_a_topic_is_parsed_as_sparkplug_only_when_it_is_one(topic: str, parsed: SparkplugTopic | None) -> None:
    assert parse_topic(topic) == parsed


@pytest.mark.parametrize(("topic", "host"), [
    ("spBv1.0/STATE/bridge", "bridge"),
    ("spBv1.0/STATE/scada primary", "scada primary"),
    ("spBv1.0/STATE/+", None),
    ("spBv1.0/STATE/", None),
    ("spBv1.0/STATE", None),
    ("spBv1.0/STATE/bridge/extra", None),
    ("spBv1.0/Plant1/NDATA/Line3", None),
    ("spBv1.0/Plant1/STATE", None),
    ("spAv1.0/STATE/bridge", None),
])
def test_a_state_topic_gives_its_host_id(topic: str, host: str | None) -> None:
    assert parse_state_topic(topic) == host


_IDS = st.text(st.characters(blacklist_characters="+/#\0", blacklist_categories=("Cs",)), min_size=1, max_size=20)


@given(group=_IDS, node=_IDS, device=_IDS, host=_IDS, node_type=st.sampled_from(NODE_TYPES),
       device_type=st.sampled_from(DEVICE_TYPES))
def test_every_built_topic_parses_back(group: str, node: str, device: str, host: str, node_type: str,
                                       device_type: str) -> None:
    assert parse_topic(node_topic(group, node_type, node)) == SparkplugTopic(group, node_type, node, None)
    assert parse_topic(device_topic(group, device_type, node, device)) == SparkplugTopic(group, device_type, node,
                                                                                         device)
    assert parse_state_topic(state_topic(host)) == host
    assert parse_topic(state_topic(host)) is None
    assert parse_state_topic(node_topic(group, node_type, node)) is None
