"""The gateway's Prometheus metrics and its health, for ``spc-bridge gateway --metrics-port``.

Every figure is kept by the connection manager and the MQTT feed as plain counts and read when Prometheus
scrapes, from the metrics thread (a count read there may be one message behind; never wrong for longer).
"""

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bridge.gateway.connections import ConnectionManager
from bridge.gateway.feed import MqttFeed

PREFIX = "spc_gateway"


class GatewayMetrics(Collector):
    """The gateway's metrics, in a registry of its own, and its health check."""

    def __init__(self, manager: ConnectionManager, feed: MqttFeed) -> None:
        self.manager = manager
        self.feed = feed
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self)

    def collect(self) -> Iterator[Metric]:
        """The current figures."""
        manager = self.manager
        yield GaugeMetricFamily(f"{PREFIX}_connections", "dashboards connected", value=len(manager))
        yield GaugeMetricFamily(f"{PREFIX}_subscriptions", "subscriptions of all dashboards to characteristics",
                                value=manager.subscriptions)
        yield CounterMetricFamily(f"{PREFIX}_events_received", "events received from the broker",
                                  value=self.feed.received)
        yield CounterMetricFamily(f"{PREFIX}_messages_sent", "messages written to dashboards", value=manager.sent)
        yield CounterMetricFamily(f"{PREFIX}_messages_dropped",
                                  "messages never written: the dashboard was too slow or went away",
                                  value=manager.dropped)
        yield GaugeMetricFamily(f"{PREFIX}_broker_connected", "1 while subscribed to the MQTT broker, else 0",
                                value=int(self.feed.subscribed.is_set()))

    def problems(self) -> list[str]:
        """Why the gateway is unhealthy (empty: healthy)."""
        return [] if self.feed.subscribed.is_set() else ["broker: not connected"]
