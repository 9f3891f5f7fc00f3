"""Sparkplug B as an ingest source: the host application's metric values as readings, its births
and deaths as each characteristic's retained status, its rebirth requests for the host's link.

A value becomes a reading of the characteristic that declares its metric (``sparkplug = {...}`` in
the characteristics file): its sample time is the metric's acquisition time, which is also its key
("ts:" and the instant), so a value that a rebirth or a store-and-forward resend brings again is
stored once. Late (``is_historical``) values are evaluated like the others, in the order they
arrive: they enter the rule windows as the chart's next points, their samples keeping their own
acquisition time. An attribute chart's sample size comes from its ``n_metric``: the value in the
same message, else the last one seen.
"""

import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

from bridge.ingest import IngestError, Reading, epoch_timestamp, iso_utc, measurement, whole_number
from bridge.service.decoders import Decoder, Decoding, Refusal, decoded
from bridge.service.listener import BAD_VALUE, SPARKPLUG
from bridge.service.messages import Event, Inbound
from bridge.service.registry import Characteristic
from bridge.service.status import DEATH, StatusBoard
from bridge.sparkplug.host import HostOutput, MetricKey, MetricValue, NodeRef, SparkplugHost
from bridge.sparkplug.payload import DataType
from bridge.sparkplug.topics import parse_topic


class Binding:
    """A characteristic fed by a Sparkplug metric, and the metric of its sample size, if any."""

    __slots__ = ("characteristic", "key", "n_key", "attribute")

    def __init__(self, characteristic: Characteristic, key: MetricKey, n_key: MetricKey | None) -> None:
        self.characteristic = characteristic
        self.key = key
        self.n_key = n_key
        self.attribute = characteristic.spec.type.attribute


def _name(value: MetricValue) -> str:
    kind = DataType(value.datatype).name if value.datatype in DataType._value2member_map_ else "value"  # type: ignore[arg-type]
    return f"{kind} {value.value!r}"[:80]


class SparkplugDecoder(Decoder):
    """Feeds the characteristics bound to Sparkplug metrics from one host application's messages."""

    stateful = True

    def __init__(self, host: SparkplugHost, bindings: Sequence[Binding], board: StatusBoard) -> None:
        self.host = host
        self.board = board  # the characteristics' status, which a death makes stale
        self.by_key = {b.key: b for b in bindings}
        self.by_n_key: dict[MetricKey, list[Binding]] = {}
        self.per_source: Counter[tuple[str, str, str | None]] = Counter(
            (b.key.group_id, b.key.edge_node_id, b.key.device_id) for b in bindings)
        for binding in bindings:
            if binding.n_key is not None:
                self.by_n_key.setdefault(binding.n_key, []).append(binding)
        self.last_n: dict[MetricKey, int] = {}
        self.status: dict[int, str | None] = {}  # by characteristic: the stale reason, None when live
        self.rebirths: list[NodeRef] = []  # to request once the batch is committed
        self._saved: tuple[dict[MetricKey, int], dict[int, str | None], int] | None = None

    # -- transactions: the host's state, the last sample sizes, the statuses, the rebirth requests
    def begin(self) -> None:
        self.host.begin()
        self._saved = dict(self.last_n), dict(self.status), len(self.rebirths)

    def commit(self) -> None:
        self.host.commit()
        self._saved = None

    def rollback(self) -> None:
        self.host.rollback()
        if self._saved is not None:
            self.last_n, self.status, kept = self._saved
            del self.rebirths[kept:]
            self._saved = None

    def readings_per_message(self, topic: str) -> int:
        """As many as the characteristics bound to the node's or device's metrics (1 for other messages)."""
        parsed = parse_topic(topic)
        if parsed is None:
            return 1
        return max(1, self.per_source[(parsed.group_id, parsed.edge_node_id, parsed.device_id)])

    def take_rebirths(self) -> list[NodeRef]:
        """The nodes to send an NCMD Node Control/Rebirth to, each once."""
        nodes, self.rebirths = list(dict.fromkeys(self.rebirths)), []
        return nodes

    # -- messages
    def decode(self, message: Inbound) -> Decoding:
        out = self.host.on_message(message.topic, message.payload, time.monotonic())
        return self._apply(out, message.received_at)

    def due(self) -> list[NodeRef]:
        """Rebirths asked for by reorder timeouts that have expired."""
        return self.host.due(time.monotonic()).rebirths

    def connection_lost(self, reason: str) -> list[Event]:
        """The status events of every characteristic once the host's connection is lost."""
        return self._apply(self.host.connection_lost(reason), datetime.now(timezone.utc)).events

    def unborn(self) -> list[Event]:
        """The status events of every characteristic at start: stale until its node or device is born."""
        events_: list[Event] = []
        self._status(events_, lambda _: True, "no birth since the bridge started", iso_utc(datetime.now(timezone.utc)))
        return events_

    def _apply(self, out: HostOutput, now: datetime) -> Decoding:
        decoding = Decoding([], [Refusal(reason, SPARKPLUG) for reason in out.rejects], [])
        self.rebirths += out.rebirths
        for value in out.values:  # sample sizes first: a count uses the n of its own message
            for binding in self.by_n_key.get(value.key, ()):
                try:
                    self.last_n[binding.n_key] = whole_number(value.value, f"n_metric {value.key.metric}", 1)  # type: ignore[index]
                except IngestError as error:
                    decoding.refusals.append(Refusal(f"characteristic {binding.characteristic.id}: {error}", BAD_VALUE))
        for value in out.values:
            bound = self.by_key.get(value.key)
            if bound is not None:
                self._reading(bound, value, now, decoding)
        timestamp = iso_utc(now)
        for node, device, reason in out.stale:
            self._status(decoding.events, lambda k: _within(k, node, device), f"{reason} ({_where(node, device)})",
                         timestamp)
        for node, device in out.live:
            self._status(decoding.events, lambda k: _within(k, node, device, exact=True), None, timestamp)
        return decoding

    def _reading(self, binding: Binding, value: MetricValue, now: datetime, decoding: Decoding) -> None:
        metric = value.key.metric
        cid = binding.characteristic.id
        try:
            if isinstance(value.value, bool) or not isinstance(value.value, (int, float)):
                raise IngestError(f"metric {metric} is {_name(value)}, not a number")
            ts, moment = epoch_timestamp(value.timestamp, "ms", now, f"the timestamp of metric {metric}")
            if binding.attribute:
                n = self.last_n.get(binding.n_key) if binding.n_key is not None else None
                reading = Reading(None, False, whole_number(value.value, f"metric {metric}", 0), n, ts, moment,
                                  None, True)
            else:
                reading = Reading((measurement(value.value, f"metric {metric}"),), True, None, None, ts, moment,
                                  None, True)
        except IngestError as error:
            decoding.refusals.append(Refusal(f"characteristic {cid}: {error}", BAD_VALUE))
            return
        decoding.readings.append(decoded(binding.characteristic, reading))

    def _status(self, out: list[Event], selected: Callable[[MetricKey], bool], reason: str | None,
                timestamp: str) -> None:
        """Status events of the characteristics ``selected`` whose status changes to ``reason``."""
        for key, binding in self.by_key.items():
            cid = binding.characteristic.id
            if selected(key) and (cid not in self.status or self.status[cid] != reason):
                self.status[cid] = reason
                self.board.set_stale(binding.characteristic, DEATH, reason)
                out.append(self.board.event(binding.characteristic, timestamp))


def _within(key: MetricKey, node: NodeRef, device: str | None, exact: bool = False) -> bool:
    """Whether ``key`` is a metric of ``node`` and, given a device, of that device; with ``exact``,
    a node (device None) means its own metrics only."""
    if (key.group_id, key.edge_node_id) != (node.group_id, node.edge_node_id):
        return False
    return key.device_id == device if (exact or device is not None) else True


def _where(node: NodeRef, device: str | None) -> str:
    return f"{node}/{device}" if device is not None else str(node)
