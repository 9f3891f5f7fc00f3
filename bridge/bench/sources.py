"""The sources a benchmark can feed the bridge from: how a characteristic declares its reading in the
characteristics file, and what a publisher of the source sends.

- ``json``: the bridge's own JSON, one topic and one reading ``{"value", "ts", "seq"}`` per message;
- ``kepware``: Kepware IoT Gateway JSON, one message per gateway with a tag per characteristic, each
  characteristic selecting its tag with JMESPath (``values[?id=='...'].v | [0]``);
- ``sparkplug``: Sparkplug B, an NBIRTH per edge node when its publisher starts, then NDATA carrying a
  metric per characteristic by alias, and an NDEATH when the publisher leaves.

A stream is what one publisher sends as: a JSON topic, a gateway or an edge node, with its characteristics.
The timestamp of a Kepware or Sparkplug message (every tag's, every metric's) is the run's epoch plus the
message's seq in milliseconds: the bridge keys the readings by it, and the bench tells from a sample
event's timestamp which message its reading came in.
"""

import random
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import NamedTuple

from bridge.sparkplug.payload import BDSEQ, DataType, Metric, encode_payload
from bridge.sparkplug.topics import NAMESPACE, node_topic

JSON_ROOT = "bench/gauge"
KEPWARE_ROOT = "kepware"
GROUP = "Bench"        # the Sparkplug group of every edge node
SEQ_RING = 256         # Sparkplug seq: 0 (the birth), 1 ... 255, 0 ...


class Stream(NamedTuple):
    """One publisher's topic, gateway or edge node (``number`` from 1): characteristics ``first`` to
    ``first + size - 1``, one reading of each per message."""

    number: int
    first: int
    size: int


class Message(NamedTuple):
    """What a publisher sends: where, what, and how many readings it carries."""

    topic: str
    payload: str | bytes
    readings: int


def json_topic(characteristic_id: int) -> str:
    """The ingest topic of a characteristic of the JSON source."""
    return f"{JSON_ROOT}/{characteristic_id}"


def now_iso() -> str:
    """The wall-clock time as a gauge's ``ts``."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def reading_payload(seq: int, rng: random.Random, ts: str) -> str:
    """A reading of the bridge's own JSON, near the bench charts' centre."""
    return f'{{"value": {rng.gauss(10.0, 1.0):.4f}, "ts": "{ts}", "seq": {seq}}}'


class Source:
    """The bridge's own JSON (every source's defaults): a stream is one characteristic's topic. One
    instance per publisher: ``session`` tells a publisher's run from the others (Sparkplug's bdSeq)."""

    kind = "json"
    queued = True    # a backlog waits on the bridge's persistent session while the bridge is stopped
    births = False   # a publisher announces its metrics first, and the bridge marks them live
    exclusive = False  # a stream belongs to one publisher (its seq, its birth)
    batched = False  # a message carries a reading of each characteristic of its stream (else a stream is one)

    def __init__(self, epoch_ms: int = 0, session: int = 0) -> None:
        self.epoch_ms = epoch_ms
        self.session = session

    @classmethod
    def online_filter(cls) -> str | None:
        """The first filter of the bridge's connection for this source, whose "subscribed ... online" log
        line says every subscription is granted; None: the bench probes the subscriptions instead."""
        return None

    @classmethod
    def topic(cls, stream: Stream) -> str:
        """Where ``stream`` publishes its readings."""
        return json_topic(stream.first)

    @classmethod
    def keys(cls, stream: Stream, k: int) -> str:
        """The TOML lines that point the ``k``-th characteristic of ``stream`` at its reading."""
        return f'topic = "{cls.topic(stream)}"\n'

    def opening(self, streams: Sequence[Stream]) -> list[Message]:
        """What a publisher of ``streams`` sends once connected, before its readings."""
        return []

    def message(self, stream: Stream, seq: int, rng: random.Random) -> Message:
        """The next message of ``stream``, number ``seq`` of the run."""
        return Message(self.topic(stream), reading_payload(seq, rng, now_iso()), 1)

    def closing(self, streams: Sequence[Stream]) -> list[Message]:
        """What a publisher of ``streams`` sends before it disconnects."""
        return []


def _tag(stream: Stream, k: int) -> str:
    return f"Channel1.Device{stream.number}.T{k:03d}"


class KepwareSource(Source):
    """Kepware IoT Gateway's standard JSON template: a stream is a gateway's topic, one tag per characteristic."""

    kind = "kepware"
    exclusive = batched = True

    @classmethod
    def online_filter(cls) -> str:
        return f"{KEPWARE_ROOT}/#"

    @classmethod
    def topic(cls, stream: Stream) -> str:
        return f"{KEPWARE_ROOT}/gw{stream.number}"

    @classmethod
    def keys(cls, stream: Stream, k: int) -> str:
        selected = f"values[?id=='{_tag(stream, k)}']"
        return (f'{super().keys(stream, k)}value_path = "{selected}.v | [0]"\n'
                f'timestamp_path = "{selected}.t | [0]"\ntimestamp_unit = "ms"\n')

    def message(self, stream: Stream, seq: int, rng: random.Random) -> Message:
        ts = self.epoch_ms + seq
        values = ", ".join(f'{{"id": "{_tag(stream, k)}", "v": {rng.gauss(10.0, 1.0):.4f}, "q": true, "t": {ts}}}'
                           for k in range(stream.size))
        return Message(self.topic(stream), f'{{"timestamp": {ts}, "values": [{values}]}}', stream.size)


def _node(stream: Stream) -> str:
    return f"N{stream.number:03d}"


def _metric(k: int) -> str:
    return f"M{k:03d}"


class SparkplugSource(Source):
    """A Sparkplug B edge node per stream, a node metric per characteristic: NBIRTH (seq 0, names, aliases,
    datatypes and ``bdSeq``), NDATA by alias (seq 1, 2 ... 255, 0 ...), NDEATH with the birth's ``bdSeq``."""

    kind = "sparkplug"
    queued = False   # the bridge's Sparkplug host connects with a clean session: no backlog waits for it
    births = True
    exclusive = batched = True

    def __init__(self, epoch_ms: int = 0, session: int = 0) -> None:
        super().__init__(epoch_ms, session)
        self.seqs: dict[int, int] = {}  # the last seq each node sent, by stream number

    @classmethod
    def online_filter(cls) -> str:
        return f"{NAMESPACE}/{GROUP}/#"

    @classmethod
    def topic(cls, stream: Stream) -> str:
        return node_topic(GROUP, "NDATA", _node(stream))

    @classmethod
    def keys(cls, stream: Stream, k: int) -> str:
        return f'sparkplug = {{ group_id = "{GROUP}", edge_node_id = "{_node(stream)}", metric = "{_metric(k)}" }}\n'

    def _bdseq(self, now_ms: int) -> Metric:
        return Metric(BDSEQ, None, now_ms, DataType.UInt64, self.session % SEQ_RING)

    def opening(self, streams: Sequence[Stream]) -> list[Message]:
        now_ms = int(time.time() * 1000)
        births = []
        for stream in streams:
            self.seqs[stream.number] = 0
            metrics = [Metric(_metric(k), k + 1, now_ms, DataType.Double, 10.0) for k in range(stream.size)]
            births.append(Message(node_topic(GROUP, "NBIRTH", _node(stream)),
                                  encode_payload(now_ms, 0, [self._bdseq(now_ms), *metrics]), 0))
        return births

    def message(self, stream: Stream, seq: int, rng: random.Random) -> Message:
        ts = self.epoch_ms + seq
        node_seq = self.seqs[stream.number] = (self.seqs[stream.number] + 1) % SEQ_RING
        metrics = [Metric(None, k + 1, ts, DataType.Double, round(rng.gauss(10.0, 1.0), 4)) for k in range(stream.size)]
        return Message(self.topic(stream), encode_payload(ts, node_seq, metrics), stream.size)

    def closing(self, streams: Sequence[Stream]) -> list[Message]:
        now_ms = int(time.time() * 1000)
        death = encode_payload(now_ms, None, [self._bdseq(now_ms)])
        return [Message(node_topic(GROUP, "NDEATH", _node(stream)), death, 0) for stream in streams]


SOURCES: dict[str, type[Source]] = {source.kind: source for source in (Source, KepwareSource, SparkplugSource)}
KINDS = tuple(SOURCES)
