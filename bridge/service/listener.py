"""What the pipeline reports after each commit: the listener interface, its no-op default and the reject classes.

The pipeline calls a listener a few times per committed transaction, never per message, and only after the
commit, so what it reports is what the database holds; bridge.service.metrics turns the calls into Prometheus
metrics. A reject is reported by its class, one of REJECT_CLASSES, never by its reason's text or its topic:
labels a client could choose would let any gauge grow the metrics without bound.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

EMPTY = "empty"
TOO_LARGE = "too_large"
NOT_JSON = "not_json"
BAD_TS = "bad_ts"
BAD_SEQ = "bad_seq"
BAD_VALUE = "bad_value"
UNKNOWN_TOPIC = "unknown_topic"
CONFLICT = "conflict"
COMMAND_ERROR = "command_error"
RETAINED_COMMAND = "retained_command"
SUBSCRIPTION_REFUSED = "subscription_refused"
INTERNAL_ERROR = "internal_error"
SPARKPLUG = "sparkplug"  # a Sparkplug message the host cannot take: not protobuf, out of order, never born
REJECT_CLASSES = (EMPTY, TOO_LARGE, NOT_JSON, BAD_TS, BAD_SEQ, BAD_VALUE, UNKNOWN_TOPIC, CONFLICT,
                  COMMAND_ERROR, RETAINED_COMMAND, SUBSCRIPTION_REFUSED, INTERNAL_ERROR, SPARKPLUG)

# The openings of bridge.ingest's reasons; any other reason (a value the chart cannot take) is BAD_VALUE.
_INGEST_OPENINGS = (
    ("empty payload", EMPTY),
    ("payload of ", TOO_LARGE),
    ("payload is not JSON", NOT_JSON),
    ("payload nests", NOT_JSON),
    ("ts ", BAD_TS),
    ("timestamp_path ", BAD_TS),
    ("seq/id ", BAD_SEQ),
    ("seq_path ", BAD_SEQ),
)


def ingest_class(reason: str) -> str:
    """The reject class of a reading's IngestError reason."""
    return next((kind for opening, kind in _INGEST_OPENINGS if reason.startswith(opening)), BAD_VALUE)


class Received(Protocol):
    """A message as the listener sees it: when it was received (the pipeline's Inbound)."""

    @property
    def received_at(self) -> datetime:
        """The receipt time, UTC."""


class PipelineListener(Protocol):
    """Told by the pipeline what each committed transaction did."""

    def on_batch(self, messages: Sequence[Received], seconds: float) -> None:
        """A transaction of these messages committed in ``seconds``."""

    def on_readings(self, received: int, stored: int, duplicates: int, commands: int) -> None:
        """Readings received, stored and dropped as duplicates, and command requests received."""

    def on_rejects(self, classes: Mapping[str, int]) -> None:
        """Rejects stored or counted, by class (REJECT_CLASSES)."""

    def on_violations(self, opened: int, acknowledged: int) -> None:
        """Violations stored and acknowledged (at start: those open in the database)."""

    def on_unavailable(self, waiting: int) -> None:
        """The database could not take a batch: ``waiting`` messages are to be retried."""


class NoListener:
    """The listener of a bridge without metrics: every call does nothing."""

    def on_batch(self, messages: Sequence[Received], seconds: float) -> None:
        """Nothing."""

    def on_readings(self, received: int, stored: int, duplicates: int, commands: int) -> None:
        """Nothing."""

    def on_rejects(self, classes: Mapping[str, int]) -> None:
        """Nothing."""

    def on_violations(self, opened: int, acknowledged: int) -> None:
        """Nothing."""

    def on_unavailable(self, waiting: int) -> None:
        """Nothing."""
