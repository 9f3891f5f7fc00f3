"""What the benchmark feeds the bridge: N individuals charts with fixed limits, their readings from one
source (bridge.bench.sources), and which reading a sample event is of."""

import tomllib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bridge.bench.sources import SOURCES, Source, Stream
from bridge.bench.subscriber import Identify, by_seq

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


@dataclass(frozen=True)
class Workload:
    """``characteristics`` I-MR charts fed by the source ``kind``, ``per_message`` readings in a message
    of a batched source; its messages' timestamps count from ``epoch_ms`` (bridge.bench.sources)."""

    characteristics: int
    kind: str = "json"
    per_message: int = 1
    epoch_ms: int = 0

    @property
    def source(self) -> type[Source]:
        """The source's class: what it declares and sends."""
        return SOURCES[self.kind]

    def streams(self) -> list[Stream]:
        """The topics, gateways or edge nodes, in order; the last may be short."""
        size = self.per_message if self.source.batched else 1
        n = self.characteristics
        return [Stream(number, first, min(size, n - first + 1))
                for number, first in enumerate(range(1, n + 1, size), start=1)]

    def publishers(self, gauges: int) -> int:
        """How many of ``gauges`` publish: no more than the streams where a stream is one publisher's."""
        return min(gauges, len(self.streams())) if self.source.exclusive else gauges

    def messages(self, readings: int) -> int:
        """Messages that carry ``readings`` readings (the last stream's may carry fewer)."""
        size = self.per_message if self.source.batched else 1
        return max(1, -(-readings // size))

    def sender(self, session: int) -> Source:
        """A publisher's source, for its run ``session``."""
        return self.source(self.epoch_ms, session)

    def write_config(self, path: Path) -> Path:
        """The characteristics file.

        Fixed limits (centre 10, sigma 1) put every chart in monitoring from its first reading, with all
        eight Nelson rules, as on a line whose limits are established.
        """
        tables = (f'[[characteristic]]\nid = {stream.first + k}\nname = "bench {stream.first + k}"\n'
                  f'{self.source.keys(stream, k)}chart = "imr"\ncenter = 10.0\nsigma = 1.0\n'
                  for stream in self.streams() for k in range(stream.size))
        path.write_text("\n".join(tables))
        return path

    def identify(self) -> Identify:
        """How the subscriber tells a sample event's reading: by its seq (JSON), else by its characteristic
        and the seq its timestamp counts from the epoch."""
        if not self.source.batched:
            return by_seq

        def by_timestamp(body: dict[str, Any]) -> tuple[object, int, float]:
            moment = datetime.fromisoformat(body["timestamp"])
            seq = (moment - _EPOCH) // _MS - self.epoch_ms
            return (body["characteristic_id"], seq), seq, moment.timestamp()

        return by_timestamp


def read_topics(path: Path) -> list[str]:
    """The ingest topics of a characteristics file, in file order."""
    with path.open("rb") as f:
        return [str(table["topic"]) for table in tomllib.load(f)["characteristic"]]
