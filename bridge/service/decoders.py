"""Decoders: one message in, zero or more readings out, each with its characteristic and key.

A decoder turns what a source sends into readings (bridge.ingest.Reading) for the characteristics
it serves, and says why it refuses what it cannot use; the pipeline stores both. Decoders with
state of their own (Sparkplug's births and sequence numbers) keep it revertible: a batch that
fails to commit is processed again, so ``begin`` marks the state, ``rollback`` restores it and
``commit`` drops the mark.
"""

from collections.abc import Sequence
from typing import NamedTuple

from bridge.fieldpaths import FieldPaths, JsonDocument, read_reading
from bridge.ingest import IngestError, Reading, parse_document, parse_reading
from bridge.service.idempotency import reading_digest, reading_key
from bridge.service.listener import ingest_class
from bridge.service.messages import Event, Inbound
from bridge.service.registry import Characteristic


class Decoded(NamedTuple):
    """A reading for a characteristic, with what identifies it (its key) and what it says (its digest)."""

    characteristic: Characteristic
    reading: Reading
    key: str | None
    digest: str


def decoded(characteristic: Characteristic, reading: Reading) -> Decoded:
    """``reading`` for ``characteristic`` with its key and digest (bridge.service.idempotency)."""
    return Decoded(characteristic, reading, reading_key(reading), reading_digest(reading))


class Refusal(NamedTuple):
    """Why (part of) a message cannot be used, and its class for the metrics (bridge.service.listener)."""

    reason: str
    kind: str


class Decoding(NamedTuple):
    """What a decoder made of a message: readings, refusals and events of its own (a status change)."""

    readings: list[Decoded]
    refusals: list[Refusal]
    events: list[Event]


def refused(error: IngestError) -> Decoding:
    """A message refused whole, for the reason ``error`` gives."""
    reason = str(error)
    return Decoding([], [Refusal(reason, ingest_class(reason))], [])


class Decoder:
    """Turns a message into readings; stateless unless a subclass keeps state (then it sets
    ``stateful`` and overrides begin, commit and rollback)."""

    stateful = False

    def decode(self, message: Inbound) -> Decoding:
        """What ``message`` holds for this decoder's characteristics."""
        raise NotImplementedError

    def readings_per_message(self, topic: str) -> int:
        """The most readings a message on ``topic`` makes (how much of a batch it takes)."""
        return 1

    def begin(self) -> None:
        """A batch starts: remember the state to return to."""

    def commit(self) -> None:
        """The batch is committed: its state changes stand."""

    def rollback(self) -> None:
        """The batch failed: return to the state of ``begin``."""


class JsonDecoder(Decoder):
    """A topic that is one characteristic's: the payloads of bridge.ingest (a number, value, values, count)."""

    def __init__(self, characteristic: Characteristic, max_payload: int) -> None:
        self.characteristic = characteristic
        self.max_payload = max_payload

    def decode(self, message: Inbound) -> Decoding:
        try:
            reading = parse_reading(message.payload, message.received_at, self.max_payload)
        except IngestError as error:
            return refused(error)
        return Decoding([decoded(self.characteristic, reading)], [], [])


class PathDecoder(Decoder):
    """A topic of vendor JSON: each characteristic selects its reading with JMESPath field paths,
    from one parse of the payload. A part one characteristic cannot use is refused for it alone."""

    def __init__(self, selections: Sequence[tuple[Characteristic, FieldPaths]], max_payload: int) -> None:
        self.selections = list(selections)
        self.max_payload = max_payload

    def readings_per_message(self, topic: str) -> int:
        """One for each characteristic on the topic."""
        return len(self.selections)

    def decode(self, message: Inbound) -> Decoding:
        try:
            document = JsonDocument(parse_document(message.payload, self.max_payload))  # indexed once, read by all
        except IngestError as error:
            return refused(error)
        out = Decoding([], [], [])
        for characteristic, paths in self.selections:
            try:
                reading = read_reading(document, paths, message.received_at)
            except IngestError as error:
                reason = f"characteristic {characteristic.id}: {error}"
                out.refusals.append(Refusal(reason, ingest_class(str(error))))
                continue
            out.readings.append(decoded(characteristic, reading))
        return out
