"""The router: which decoder a message's topic goes to."""

from collections.abc import Iterator

from bridge.service.decoders import Decoder


class Router:
    """Exact topics to their decoders, and topic roots (Sparkplug's ``spBv1.0/``) to theirs."""

    def __init__(self) -> None:
        self._topics: dict[str, Decoder] = {}
        self._roots: dict[str, Decoder] = {}
        self._stateful: list[Decoder] = []

    def _add(self, decoder: Decoder) -> None:
        if decoder.stateful and decoder not in self._stateful:
            self._stateful.append(decoder)

    def add_topic(self, topic: str, decoder: Decoder) -> None:
        """Send messages on ``topic`` to ``decoder``."""
        self._topics[topic] = decoder
        self._add(decoder)

    def remove_topic(self, topic: str) -> None:
        """Route nothing more on ``topic``."""
        self._topics.pop(topic, None)

    def add_root(self, root: str, decoder: Decoder) -> None:
        """Send messages on every topic under ``root`` (its first level) to ``decoder``."""
        self._roots[root] = decoder
        self._add(decoder)

    def route(self, topic: str) -> Decoder | None:
        """The decoder of ``topic``; None when no characteristic is fed by it."""
        decoder = self._topics.get(topic)
        if decoder is None and self._roots:
            decoder = self._roots.get(topic.partition("/")[0])
        return decoder

    @property
    def topics(self) -> list[str]:
        """The exact topics routed (to derive the subscriptions from)."""
        return list(self._topics)

    def stateful(self) -> Iterator[Decoder]:
        """The decoders that keep state across messages (begun, committed or rolled back with a batch)."""
        return iter(self._stateful)
