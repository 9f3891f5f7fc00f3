"""What a command reaches besides its transaction: the characteristics and the subscriptions."""

from collections.abc import Mapping, Sequence

from bridge.service.registry import Characteristic
from bridge.spc import Evaluator


class CommandContext:
    """The run-time characteristics a batch's commands read and change, and the subscription
    changes they ask for (made once the batch is committed, dropped if it is not)."""

    def __init__(self, characteristics: Mapping[int, Characteristic]) -> None:
        self.characteristics = characteristics
        self.subscribe: list[str] = []
        self.unsubscribe: list[str] = []

    def evaluator(self, characteristic_id: int) -> Evaluator | None:
        """The chart of a configured characteristic; None for an unknown id."""
        characteristic = self.characteristics.get(characteristic_id)
        return characteristic.assembler.evaluator if characteristic is not None else None

    def mark(self) -> tuple[int, int]:
        """Where the subscription changes stand, before a command runs."""
        return len(self.subscribe), len(self.unsubscribe)

    def discard(self, mark: tuple[int, int]) -> None:
        """Forget the changes asked for since ``mark``: the command that asked for them failed."""
        del self.subscribe[mark[0]:]
        del self.unsubscribe[mark[1]:]

    def change_subscriptions(self, subscribe: Sequence[str] = (), unsubscribe: Sequence[str] = ()) -> None:
        """Ask for topic filters to be subscribed to or dropped after the commit."""
        self.subscribe += subscribe
        self.unsubscribe += unsubscribe
