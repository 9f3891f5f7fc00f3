"""The embedded broker's topic index (broker/amqtt_index.py) matches exactly as amqtt's own scan did, and a
broker holding thousands of subscriptions delivers each live and retained message to the filters it matches
only, once."""

import logging
import time

from amqtt.broker import Broker

from broker.amqtt_index import SubscriptionIndex
from tests.brokers import EmbeddedBrokerThread, MqttProbe
from tests.stream import wait_until

FILTERS = ["#", "+", "+/#", "a", "a/#", "a/+", "a/b", "a/b/c", "a/+/c", "+/b/#", "$SYS/#", "$SYS/+", "+/+",
           "a//c", "a/+/+", "/#", "+/b"]
TOPICS = ["a", "a/b", "a/b/c", "a/x/c", "b", "b/b", "$SYS/x", "$SYS/x/y", "a//c", "/a", "", "a/b/c/d", "x/b/z"]


def test_the_index_matches_as_amqtt_does() -> None:
    """Every topic gets the filters amqtt's Broker._matches accepts, no more: `$` topics under no filter that
    starts with a wildcard (MQTT-4.7.2-1), `a/#` also for `a`; also after filters are deleted again."""
    index = SubscriptionIndex()
    for topic_filter in FILTERS:
        index[topic_filter] = [(topic_filter, 0)]  # type: ignore[list-item]
    scan = Broker.__new__(Broker)  # amqtt's own matching, without starting a broker: it only logs through self
    scan.logger = logging.getLogger(__name__)
    matches = scan._matches

    def found(topic: str) -> set[str]:
        return {subscribers[0][0] for subscribers in index.matching(topic)}  # type: ignore[misc]

    for topic in TOPICS:
        assert found(topic) == {f for f in index if matches(topic, f)}, topic
    for topic_filter in FILTERS[::2]:
        del index[topic_filter]
    assert set(index) == set(FILTERS[1::2])
    for topic in TOPICS:
        assert found(topic) == {f for f in FILTERS[1::2] if matches(topic, f)}, topic
    index.clear()
    assert not index and not any(found(topic) for topic in TOPICS)


def test_a_topic_thousands_of_levels_deep_is_delivered(embedded_broker: EmbeddedBrokerThread) -> None:
    """A filter and topic of 5,000 levels (a hostile client's; deeper than Python's recursion limit, which paho's
    trie walks by recursion) reach their subscriber, and the broker goes on routing."""
    deep = "/".join(["line"] * 5000)
    with MqttProbe(embedded_broker, user="admin") as client:
        client.subscribe([deep, "line/after"])
        client.publish(deep, b"deep")
        client.publish("line/after", b"after")
        wait_until(lambda: len(client.messages) >= 2, 10, "both messages")
        assert sorted(m.payload for m in client.messages) == [b"after", b"deep"]


def test_thousands_of_subscriptions_each_get_their_own_messages(embedded_broker: EmbeddedBrokerThread) -> None:
    """One client subscribes to 2,000 of 3,000 exact topics and another to a wildcard; 20 retained messages were
    there before. Each subscriber gets the retained messages of its own filters once, and every live message once;
    an unsubscribed topic gets nothing."""
    topics = [f"line/{n}/value" for n in range(3000)]
    with MqttProbe(embedded_broker, user="admin") as publisher:
        for n in range(20):
            publisher.publish(topics[n], f"r{n}".encode(), retain=True)
        with MqttProbe(embedded_broker, user="admin") as exact, MqttProbe(embedded_broker, user="admin") as wild:
            for start in range(0, 2000, 500):
                exact.subscribe(topics[start:start + 500])
            wild.subscribe("line/+/value")
            wait_until(lambda: len(exact.messages) >= 20 and len(wild.messages) >= 20, 30, "the retained messages")
            for n in (0, 1999, 2000, 2999):
                publisher.publish(topics[n], f"live{n}".encode())
            wait_until(lambda: len(wild.messages) >= 24 and len(exact.messages) >= 22, 30, "the live messages")
            time.sleep(0.3)  # anything more would have come by now
            assert sorted((m.topic, m.payload) for m in exact.messages if m.retain) == sorted(
                (topics[n], f"r{n}".encode()) for n in range(20))
            assert sorted((m.topic, m.payload) for m in wild.messages if m.retain) == sorted(
                (topics[n], f"r{n}".encode()) for n in range(20))
            assert sorted(m.payload for m in exact.messages if not m.retain) == [b"live0", b"live1999"]
            assert sorted(m.payload for m in wild.messages if not m.retain) == sorted(
                f"live{n}".encode() for n in (0, 1999, 2000, 2999))
