"""What a command reaches besides its transaction: the characteristics, their limits' publication,
the reason codes, the users' roles and the subscriptions."""

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import NamedTuple, Protocol

from bridge.assemble import Assembler
from bridge.config import CharacteristicConfig
from bridge.service.registry import Characteristic
from bridge.spc import ChartSpec, Evaluator
from bridge.store.limit_sets import LimitSetRef
from broker.roles import ROLES


class Cause(NamedTuple):
    """Who made a limit set and why: the command (or ``baseline``, ``import``), the user, the reason,
    and the samples it excludes."""

    what: str
    user: str
    reason: str
    excluded: tuple[int, ...] = ()


class _Saved(NamedTuple):
    """A characteristic as it was before a command changed it."""

    ch: Characteristic
    spec: ChartSpec
    assembler: Assembler
    published_limits: int
    limit_set: LimitSetRef | None


class Catalog(Protocol):
    """What runs the characteristics: where their readings are routed, and what it subscribes to."""

    bridge: str

    def route_problem(self, config: CharacteristicConfig, replacing: int | None) -> str | None:
        """Why ``config`` cannot take its topic beside the running characteristics, or None."""

    def filters_after(self, added: str | None, leaving: Characteristic | None) -> list[str]:
        """The filters to subscribe to once topic ``added`` routes and ``leaving`` is no longer fed."""

    def source_topic(self, config: CharacteristicConfig) -> str:
        """The topic ``config``'s readings come on."""

    def install(self, ch: Characteristic, config: CharacteristicConfig) -> None:
        """Run ``ch`` from now on, in place of the one of its id."""

    def retire(self, characteristic_id: int) -> None:
        """Stop running a characteristic."""

    @property
    def topics(self) -> list[str]:
        """The filters subscribed to now."""


class CommandContext:
    """The run-time characteristics a batch's commands read and change, and the subscription
    changes they ask for (made once the batch is committed, dropped if it is not).

    A command that changes a characteristic calls :meth:`change` first: if the command then fails,
    :meth:`discard` puts the characteristic back as it was, as its savepoint undoes its writes.
    """

    def __init__(self, characteristics: Mapping[int, Characteristic],
                 touched: MutableMapping[int, Characteristic] | None = None,
                 reason_codes: Sequence[str] = (), role_of: Callable[[str], str | None] | None = None,
                 publish_limits: Callable[[Characteristic, Cause], str] | None = None,
                 catalog: Catalog | None = None) -> None:
        self.characteristics = characteristics
        self.touched: MutableMapping[int, Characteristic] = touched if touched is not None else {}
        self.reason_codes = tuple(reason_codes)
        self._role_of = role_of
        self._publish_limits = publish_limits
        self.catalog = catalog
        self.undo: list[Callable[[], None]] = []  # puts back what the commands changed, last first
        self.subscribe: list[str] = []
        self.unsubscribe: list[str] = []
        self._saved: list[_Saved] = []

    def characteristic(self, characteristic_id: int) -> Characteristic | None:
        """A running characteristic; None for an unknown id."""
        return self.characteristics.get(characteristic_id)

    def evaluator(self, characteristic_id: int) -> Evaluator | None:
        """The chart of a configured characteristic; None for an unknown id."""
        characteristic = self.characteristics.get(characteristic_id)
        return characteristic.assembler.evaluator if characteristic is not None else None

    def role(self, user: str) -> str | None:
        """``user``'s role; None if the bridge was given no users, or the user is not one of them."""
        return self._role_of(user) if self._role_of is not None else None

    def commands(self, user: str) -> tuple[str, ...] | None:
        """The commands the bridge carries out for ``user``; None if it was given no users (it then leaves
        roles to the broker's ACL)."""
        if self._role_of is None:
            return None
        role = self._role_of(user)
        return ROLES[role].commands if role is not None else ()

    def permits(self, user: str, command: str) -> bool:
        """Whether ``user``'s role lets it send ``command``; True if the bridge was given no users."""
        commands = self.commands(user)
        return commands is None or command in commands

    def change(self, ch: Characteristic) -> None:
        """Note ``ch`` as it is, before a command replaces its spec or assembler (never changed in
        place); its state is saved with the batch."""
        self._saved.append(_Saved(ch, ch.spec, ch.assembler, ch.published_limits, ch.limit_set))
        self.touched[ch.id] = ch

    def publish_limits(self, ch: Characteristic, cause: Cause) -> str:
        """Record ``ch``'s new limits as a limit set made by ``cause``; the limits event's text."""
        assert self._publish_limits is not None, "a command context without a pipeline publishes no limits"
        return self._publish_limits(ch, cause)

    def mark(self) -> tuple[int, int, int, int]:
        """Where the changes stand, before a command runs."""
        return len(self.subscribe), len(self.unsubscribe), len(self._saved), len(self.undo)

    def discard(self, mark: tuple[int, int, int, int] = (0, 0, 0, 0)) -> None:
        """Undo the changes made since ``mark`` (by default all): the command, or the batch, failed."""
        del self.subscribe[mark[0]:]
        del self.unsubscribe[mark[1]:]
        for action in reversed(self.undo[mark[3]:]):
            action()
        del self.undo[mark[3]:]
        for saved in reversed(self._saved[mark[2]:]):
            ch = saved.ch
            ch.spec, ch.assembler = saved.spec, saved.assembler
            ch.published_limits, ch.limit_set = saved.published_limits, saved.limit_set
        del self._saved[mark[2]:]

    def change_subscriptions(self, subscribe: Sequence[str] = (), unsubscribe: Sequence[str] = ()) -> None:
        """Ask for topic filters to be subscribed to or dropped after the commit."""
        self.subscribe += subscribe
        self.unsubscribe += unsubscribe
