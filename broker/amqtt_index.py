"""Indexed subscriptions and retained messages for amqtt 0.12.1's Broker: a topic trie instead of a scan.

amqtt matches every published message against every subscription, one filter after another
(`Broker._run_broadcast`, amqtt/broker.py:1015-1017), and every new subscription against every retained message
(`_publish_retained_messages_for_subscription`, broker.py:1142-1144). Measured here: 3,100 messages/s through it
with 100 subscriptions, 250 with 10,000; the bench's relay, subscribing to 10,000 exact topics beside 20,000
retained messages, made 200 million comparisons before its first reading.

`IndexedBroker` keeps the same `_subscriptions` mapping (filter -> [(session, qos)]) that amqtt reads and writes
everywhere, but as a `SubscriptionIndex`, which files each filter in a topic trie as amqtt adds or removes it
(paho-mqtt's `MQTTMatcher`, the trie paho's own client dispatches with; it keeps MQTT-4.7.2-1: no `$` topic
under a filter that starts with a wildcard). A broadcast then visits only the filters that match its topic. An
exact filter finds its retained message by name (`retained_matching`, which the retained replay of
broker.amqtt_access uses); only a wildcard filter still looks at every retained topic.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from amqtt.broker import Broker, RetainedApplicationMessage
from amqtt.contexts import Action
from amqtt.mqtt.constants import QOS_1, QOS_2
from amqtt.session import Session
from paho.mqtt.matcher import MQTTMatcher

__all__ = ["IndexedBroker", "SubscriptionIndex", "is_wildcard"]

Subscribers = list[tuple[Session, int]]


def is_wildcard(topic_filter: str) -> bool:
    """Whether ``topic_filter`` can match more than the one topic it spells."""
    return "+" in topic_filter or "#" in topic_filter


class SubscriptionIndex(MutableMapping[str, Subscribers]):
    """amqtt's subscriptions (topic filter -> subscribers), with a topic trie over the filters."""

    def __init__(self) -> None:
        self._by_filter: dict[str, Subscribers] = {}
        self._trie = MQTTMatcher()

    def __getitem__(self, topic_filter: str) -> Subscribers:
        return self._by_filter[topic_filter]

    def __setitem__(self, topic_filter: str, subscribers: Subscribers) -> None:
        self._by_filter[topic_filter] = subscribers
        self._trie[topic_filter] = subscribers  # the same list: amqtt appends to it and pops from it in place

    def __delitem__(self, topic_filter: str) -> None:
        del self._by_filter[topic_filter]
        del self._trie[topic_filter]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_filter)

    def __len__(self) -> int:
        return len(self._by_filter)

    def __contains__(self, topic_filter: object) -> bool:
        return topic_filter in self._by_filter

    def clear(self) -> None:
        """Forget every subscription."""
        self._by_filter.clear()
        self._trie = MQTTMatcher()

    def matching(self, topic: str) -> Iterator[Subscribers]:
        """The subscribers of each filter that matches ``topic``, filter by filter."""
        return self._trie.iter_match(topic)  # type: ignore[no-any-return]


class IndexedBroker(Broker):
    """amqtt's Broker matching topics through a `SubscriptionIndex` (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._subscriptions: SubscriptionIndex = SubscriptionIndex()  # type: ignore[assignment]
        # Sessions (by client id) that are being sent what was queued for them while they were away, each with
        # what sends it (a subclass sends it a window at a time): a new message joins the end of their queue.
        self.draining: dict[str, object] = {}

    def retained_matching(self, topic_filter: str) -> list[RetainedApplicationMessage]:
        """The retained messages whose topics ``topic_filter`` matches."""
        if not is_wildcard(topic_filter):
            found = self._retained_messages.get(topic_filter)
            return [] if found is None else [found]
        return [retained for topic, retained in list(self._retained_messages.items())
                if self._matches(topic, topic_filter)]

    def _subscribers_of(self, topic: str) -> list[Subscribers]:
        """The subscribers of each filter that matches ``topic``."""
        try:
            return list(self._subscriptions.matching(topic))
        except RecursionError:
            # paho's trie recurses once per level that a topic shares with a filter: a topic deeper than Python's
            # recursion limit (thousands of levels fit in an MQTT topic) is matched by amqtt's own scan instead.
            return [subscribers for topic_filter, subscribers in self._subscriptions.items()
                    if self._matches(topic, topic_filter)]

    async def _run_broadcast(self, running_tasks: Any) -> None:
        # amqtt's _run_broadcast (broker.py:1009-1067) with the scan over every filter replaced by the index.
        broadcast = await self._broadcast_queue.get()
        topic = broadcast["topic"]
        for subscribers in self._subscribers_of(topic):
            for target_session, sub_qos in list(subscribers):
                qos = broadcast.get("qos", sub_qos)
                if not await self._topic_filtering(target_session, topic=topic, action=Action.RECEIVE):
                    continue
                if target_session.transitions.state != "connected":
                    # Kept for a persistent session that is away, at QoS 1 and 2 [MQTT-3.1.2-5], unless its
                    # client was anonymous, as amqtt does.
                    if not target_session.clean_session and qos in (QOS_1, QOS_2) \
                            and not target_session.is_anonymous:
                        await self._retain_broadcast_message(broadcast, qos, target_session)
                    continue
                if target_session.client_id in self.draining:  # behind what is still queued for it
                    await self._retain_broadcast_message(broadcast, qos, target_session)
                    continue
                handler = self._get_handler(target_session)
                if handler is not None:
                    running_tasks.append(self._loop.create_task(
                        handler.mqtt_publish(topic, broadcast["data"], qos, retain=False)))
