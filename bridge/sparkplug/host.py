"""Sparkplug B 3.0 host application: births, aliases, seq order and liveness of edge nodes, without MQTT or SQL.

The caller hands in every message of the host's connection (topic, payload bytes, ``time.monotonic()``) and acts
on the :class:`HostOutput`: it stores the values, sends an NCMD ``Node Control/Rebirth`` to each node in
``rebirths``, marks characteristics stale or live, and records the rejects. It calls :meth:`SparkplugHost.due`
now and then for the reorder timeouts, and :meth:`SparkplugHost.connection_lost` when the connection drops.

What this follows (specification 3.0, chapters 4 to 6):

- **Births describe, data measures.** NBIRTH and DBIRTH declare each metric's name, alias and datatype; their
  values are not emitted: measurements come in NDATA and DDATA. An NBIRTH needs seq 0 and a ``bdSeq`` metric,
  and forgets the node's devices (its DBIRTHs follow). Every metric in a birth needs a name. An alias is unique
  across the node's whole set of metrics, its devices' included: a birth that gives one alias to two metrics is
  rejected. A birth with more than ``max_birth_metrics`` metrics is rejected too. A rejected birth leaves the
  node (or device) unborn, so its characteristics are stale until a birth is accepted.
- **Data.** A metric comes by alias (looked up in the births) or by name (declared in the birth of its node or
  device). Its value is typed by the datatype it carries, else by its birth's (a signed Int32 -5 arrives as
  4294967291 and comes out as -5). ``is_null`` metrics are skipped. The sample time is the metric's timestamp,
  else the payload's (a metric with neither is a reject). ``is_historical`` is passed through. A value that is
  not a number (String, Bytes, an array; None for a DataSet or Template), or one that does not fit its datatype,
  is emitted as sent, with the datatype, for the caller to reject where it wants a number: a node's other
  metrics are none of its business. A metric never born is a reject of its own; the message's other metrics
  still count.
- **Order.** NBIRTH, DBIRTH, NDATA, DDATA and DDEATH carry a seq, one more than the node's previous message,
  255 wrapping to 0. Messages are processed as they arrive, nothing is held back. A seq ahead of the expected
  one (by less than half the ring) marks the seqs skipped as missing; one behind that is not a missing one (a
  repeat, or a node that restarted unseen) cannot be explained by a late arrival. Either starts the node's
  reorder timer; once every missing seq has arrived the timer stops, else :meth:`SparkplugHost.due` asks for a
  rebirth when it expires.
- **Rebirth requests** also answer data, a DBIRTH or a DDEATH before its birth, an alias or name never born, a
  birth rejected for its content, and a message without a valid seq. At most one is sent per node per reorder
  timeout, so that a broken node is not flooded.
- **Liveness.** An NDEATH counts only when its ``bdSeq`` is the current birth's (else it is a stale will, which is
  ignored): the node and its devices become stale and the node is forgotten until its next NBIRTH. A DDEATH
  makes its device stale. A lost connection makes every node stale and forgets every birth. Births make their
  node or device live.

:meth:`SparkplugHost.begin`, :meth:`~SparkplugHost.commit` and :meth:`~SparkplugHost.rollback` bracket a batch:
rollback restores the state (births, aliases, seq, timers, rebirth throttle) of before begin, so that a failed
batch can be run again as if it had never been seen.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

from bridge.sparkplug import payload as sparkplug_payload
from bridge.sparkplug import topics
from bridge.sparkplug.payload import Metric, Payload, PayloadError, Value

__all__ = ["HostOutput", "MetricKey", "MetricValue", "NodeRef", "SparkplugHost"]

log = logging.getLogger(__name__)

SEQ_RING = 256
# A seq further ahead than this is taken for one from behind (a repeat), not for a gap of lost messages.
_AHEAD = SEQ_RING // 2
_IGNORED = frozenset({"NCMD", "DCMD"})


@dataclass(frozen=True, slots=True)
class MetricKey:
    """Which metric a characteristic declares: its edge node, its device (None for the node's own) and name."""

    group_id: str
    edge_node_id: str
    device_id: str | None
    metric: str


@dataclass(frozen=True, slots=True)
class MetricValue:
    """One value of one metric for the pipeline: typed with its sign, stamped with its sample time (ms, UTC)."""

    key: MetricKey
    value: Value              # as sent when it is no number of its datatype, None for a DataSet or Template
    timestamp: int
    historical: bool
    datatype: int | None = None  # the DataType it was typed by, to name what a non-number is in a reject


@dataclass(frozen=True, slots=True)
class NodeRef:
    """An edge node: its group and its id."""

    group_id: str
    edge_node_id: str

    def __str__(self) -> str:
        return f"{self.group_id}/{self.edge_node_id}"


@dataclass(slots=True)
class HostOutput:
    """What one message (or a timeout, or a lost connection) asks of the caller."""

    values: list[MetricValue] = field(default_factory=list)
    rebirths: list[NodeRef] = field(default_factory=list)  # an NCMD Node Control/Rebirth to send to each
    # (node, device or None for the node and all its devices, reason)
    stale: list[tuple[NodeRef, str | None, str]] = field(default_factory=list)
    live: list[tuple[NodeRef, str | None]] = field(default_factory=list)  # (node, device or None): born
    rejects: list[str] = field(default_factory=list)  # why (part of) this message was not taken, in clear text


Scope = str | None  # a device id, or None for the node's own metrics


@dataclass(frozen=True, slots=True)
class _Birth:
    """What one NBIRTH or DBIRTH declared: each metric's DataType by name, and names by alias."""

    datatypes: Mapping[str, int | None]
    aliases: Mapping[int, str]


@dataclass(frozen=True, slots=True)
class _Node:
    """One edge node's births and where its seq stands. Replaced, never changed in place (nor are its maps), so
    that the undo log only has to keep the prior object."""

    bdseq: int
    births: Mapping[Scope, _Birth]  # the node's own (None) and those of its devices born since
    owners: Mapping[int, Scope]     # alias -> whose birth gave it: aliases are unique across node and devices
    next_seq: int
    missing: frozenset[int] = frozenset()              # seqs skipped that have not arrived yet
    lost: bool = False                                  # a seq from behind: no late arrival can mend it
    deadline: float | None = None                       # when the reorder timer expires (monotonic s)


K = TypeVar("K")
V = TypeVar("V")


class _Journaled(Generic[K, V]):
    """A dict whose changes since begin() can be undone: it keeps each changed key's value from before."""

    def __init__(self) -> None:
        self.items: dict[K, V] = {}
        self._prior: dict[K, V | None] | None = None

    def get(self, key: K) -> V | None:
        """The value of ``key``, or None."""
        return self.items.get(key)

    def set(self, key: K, value: V | None) -> None:
        """Give ``key`` a value; None removes it."""
        if self._prior is not None and key not in self._prior:
            self._prior[key] = self.items.get(key)
        if value is None:
            self.items.pop(key, None)
        else:
            self.items[key] = value

    def entries(self) -> list[tuple[K, V]]:
        """The entries as they are now (a copy: the dict may change while they are gone through)."""
        return list(self.items.items())

    def begin(self) -> None:
        """Start recording changes."""
        self._prior = {}

    def end(self, undo: bool) -> None:
        """Stop recording; with ``undo``, restore every value changed since begin()."""
        if undo and self._prior is not None:
            for key, value in self._prior.items():
                if value is None:
                    self.items.pop(key, None)
                else:
                    self.items[key] = value
        self._prior = None


class SparkplugHost:
    """The host application's view of every edge node on one connection (see the module for the rules)."""

    def __init__(self, reorder_timeout_s: float = 2.0, max_birth_metrics: int = 10_000) -> None:
        self._timeout = reorder_timeout_s
        self._max_birth_metrics = max_birth_metrics
        self._nodes: _Journaled[NodeRef, _Node] = _Journaled()
        self._rebirth_at: _Journaled[NodeRef, float] = _Journaled()  # when a rebirth was last asked of a node
        self._handlers = {"NBIRTH": self._nbirth, "DBIRTH": self._dbirth, "NDATA": self._data,
                          "DDATA": self._data, "NDEATH": self._ndeath, "DDEATH": self._ddeath}

    def on_message(self, topic: str, payload: bytes, now: float) -> HostOutput:
        """Take one message of the connection; ``now`` is ``time.monotonic()``."""
        out = HostOutput()
        parsed = topics.parse_topic(topic)
        if parsed is None:
            if topics.parse_state_topic(topic) is None:
                out.rejects.append(f"not a Sparkplug topic: {topic!r}")
            return out
        if parsed.message_type in _IGNORED:
            return out
        ref = NodeRef(parsed.group_id, parsed.edge_node_id)
        try:
            decoded = sparkplug_payload.decode_payload(payload)
        except PayloadError as error:
            out.rejects.append(str(error))
            if parsed.message_type in ("NBIRTH", "DBIRTH"):
                self._end_birth(ref, parsed.device_id, str(error), out)
            return out
        try:
            self._handlers[parsed.message_type](parsed.message_type, ref, parsed.device_id, decoded, now, out)
        except _Refused as refused:
            out.rejects.append(refused.reason)
            if refused.rebirth:
                self._rebirth(ref, now, out)
        return out

    def due(self, now: float) -> HostOutput:
        """Rebirth requests for the nodes whose reorder timeout has expired by ``now``."""
        out = HostOutput()
        for ref, node in self._nodes.entries():
            if node.deadline is not None and node.deadline <= now:
                log.info("Sparkplug node %s: seq %s never arrived within %s s (out of order: %s); asking for a "
                         "rebirth", ref, sorted(node.missing), self._timeout, node.lost)
                self._nodes.set(ref, replace(node, missing=frozenset(), lost=False, deadline=None))
                self._rebirth(ref, now, out)
        for ref, asked in self._rebirth_at.entries():
            if now - asked >= self._timeout:
                self._rebirth_at.set(ref, None)
        return out

    def connection_lost(self, reason: str) -> HostOutput:
        """Every known node and its devices stale for ``reason``; every birth forgotten (the next connection waits
        for new births)."""
        out = HostOutput()
        for ref, _ in self._nodes.entries():
            out.stale.append((ref, None, reason))
            self._nodes.set(ref, None)
        for ref, _ in self._rebirth_at.entries():
            self._rebirth_at.set(ref, None)
        return out

    def begin(self) -> None:
        """Start a batch: the state changes from here on can be rolled back."""
        self._nodes.begin()
        self._rebirth_at.begin()

    def commit(self) -> None:
        """Keep the batch's state changes."""
        self._nodes.end(undo=False)
        self._rebirth_at.end(undo=False)

    def rollback(self) -> None:
        """Restore the state of before begin(), for the batch to be run again."""
        self._nodes.end(undo=True)
        self._rebirth_at.end(undo=True)

    def _nbirth(self, kind: str, ref: NodeRef, device: Scope, birth: Payload, now: float, out: HostOutput) -> None:
        previous = self._nodes.get(ref)
        self._nodes.set(ref, None)  # a new session: whatever this birth brings, the previous one is over
        label = f"NBIRTH of {ref}"
        try:
            self._check_size(label, birth)
            bdseq = _bdseq(birth)
            if birth.seq != 0:
                raise _Refused(f"{label} has seq {birth.seq}, not 0")
            if bdseq is None:
                raise _Refused(f"{label} has no integer {sparkplug_payload.BDSEQ} metric")
            declared = _declare(label, None, birth.metrics, None)
        except _Refused as refused:
            if previous is not None:
                out.stale.append((ref, None, refused.reason))
            raise
        self._nodes.set(ref, _Node(bdseq, {None: declared}, dict.fromkeys(declared.aliases), next_seq=1))
        out.live.append((ref, None))

    def _dbirth(self, kind: str, ref: NodeRef, device: Scope, birth: Payload, now: float, out: HostOutput) -> None:
        assert device is not None  # parse_topic gives every device type its device
        node = self._node_in_order(kind, ref, device, birth, now)
        label = f"DBIRTH of {ref}/{device}"
        try:
            self._check_size(label, birth)
            declared = _declare(label, device, birth.metrics, node)
        except _Refused as refused:
            self._nodes.set(ref, _without(node, device))
            if device in node.births:
                out.stale.append((ref, device, refused.reason))
            raise
        node = _without(node, device)
        self._nodes.set(ref, replace(node, births={**node.births, device: declared},
                                     owners={**node.owners, **dict.fromkeys(declared.aliases, device)}))
        out.live.append((ref, device))

    def _data(self, kind: str, ref: NodeRef, device: Scope, data: Payload, now: float, out: HostOutput) -> None:
        node = self._node_in_order(kind, ref, device, data, now)
        where = _where(ref, device)
        birth = node.births.get(device)
        if birth is None:
            raise _Refused(f"{kind} from {where} before its birth")
        unborn = False
        for metric in data.metrics:
            try:
                name = _name_of(birth, metric)
            except _Refused as refused:
                out.rejects.append(f"{kind} from {where}: {refused.reason}")
                unborn = True
                continue
            if metric.is_null:
                continue
            timestamp = metric.timestamp if metric.timestamp is not None else data.timestamp
            if timestamp is None:
                out.rejects.append(f"{kind} from {where}: metric {name!r} has no timestamp, nor has its payload")
                continue
            datatype = metric.datatype if metric.datatype is not None else birth.datatypes[name]
            out.values.append(MetricValue(MetricKey(ref.group_id, ref.edge_node_id, device, name),
                                          _typed(metric, datatype), timestamp, metric.is_historical, datatype))
        if unborn:
            self._rebirth(ref, now, out)

    def _ndeath(self, kind: str, ref: NodeRef, device: Scope, death: Payload, now: float, out: HostOutput) -> None:
        node = self._nodes.get(ref)
        bdseq = _bdseq(death)
        if node is None or bdseq != node.bdseq:
            log.debug("Sparkplug node %s: ignoring NDEATH with bdSeq %s (current birth: %s), a stale will",
                      ref, bdseq, None if node is None else node.bdseq)
            return
        self._nodes.set(ref, None)
        out.stale.append((ref, None, "NDEATH"))

    def _ddeath(self, kind: str, ref: NodeRef, device: Scope, death: Payload, now: float, out: HostOutput) -> None:
        assert device is not None  # parse_topic gives every device type its device
        self._nodes.set(ref, _without(self._node_in_order(kind, ref, device, death, now), device))
        out.stale.append((ref, device, "DDEATH"))

    def _node_in_order(self, kind: str, ref: NodeRef, device: Scope, message: Payload, now: float) -> _Node:
        """The born node after taking ``message``'s seq; refused if it is not born or the seq is not valid."""
        node = self._nodes.get(ref)
        if node is None:
            raise _Refused(f"{kind} from {_where(ref, device)} before its birth")
        if message.seq is None:  # decode_payload refuses one outside 0..255
            raise _Refused(f"{kind} from {_where(ref, device)} has no seq")
        node = self._sequenced(ref, node, message.seq, now)
        self._nodes.set(ref, node)
        return node

    def _sequenced(self, ref: NodeRef, node: _Node, seq: int, now: float) -> _Node:
        """``node`` after a message with ``seq``: the next seq expected, the ones missing, its reorder timer."""
        if seq in node.missing:
            missing = node.missing - {seq}
            mended = not missing and not node.lost
            return replace(node, missing=missing, deadline=None if mended else node.deadline)
        ahead = (seq - node.next_seq) % SEQ_RING
        if ahead == 0:
            return replace(node, next_seq=(seq + 1) % SEQ_RING)
        log.debug("Sparkplug node %s: seq %s where %s was expected", ref, seq, node.next_seq)
        deadline = node.deadline if node.deadline is not None else now + self._timeout
        if ahead < _AHEAD:
            skipped = frozenset((node.next_seq + step) % SEQ_RING for step in range(ahead))
            return replace(node, next_seq=(seq + 1) % SEQ_RING, missing=node.missing | skipped, deadline=deadline)
        return replace(node, lost=True, deadline=deadline)

    def _end_birth(self, ref: NodeRef, device: Scope, reason: str, out: HostOutput) -> None:
        """A birth that cannot even be decoded still ends the session it replaces: the node (with its devices)
        or the device is unborn, and stale if it was live. No rebirth is asked for: it could come back the same
        (too large); the next data asks for one."""
        node = self._nodes.get(ref)
        if node is None:
            return
        if device is None:
            self._nodes.set(ref, None)
            out.stale.append((ref, None, reason))
        elif device in node.births:
            self._nodes.set(ref, _without(node, device))
            out.stale.append((ref, device, reason))

    def _check_size(self, label: str, birth: Payload) -> None:
        """Refuse a birth with more metrics than allowed (without a rebirth request: it would come back as big)."""
        if len(birth.metrics) > self._max_birth_metrics:
            raise _Refused(f"{label} has {len(birth.metrics)} metrics, more than the limit of "
                           f"{self._max_birth_metrics}", rebirth=False)

    def _rebirth(self, ref: NodeRef, now: float, out: HostOutput) -> None:
        """Ask ``ref`` for a rebirth, unless it was asked less than a reorder timeout ago."""
        asked = self._rebirth_at.get(ref)
        if asked is not None and now - asked < self._timeout:
            return
        self._rebirth_at.set(ref, now)
        out.rebirths.append(ref)


class _Refused(Exception):
    """A message (or one of its metrics) that cannot be taken: the reject's reason, and whether a rebirth helps."""

    def __init__(self, reason: str, rebirth: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rebirth = rebirth


def _where(ref: NodeRef, device: Scope) -> str:
    return str(ref) if device is None else f"{ref}/{device}"


def _metric_label(scope: Scope, name: str) -> str:
    return repr(name) if scope is None else f"{name!r} of device {scope}"


def _bdseq(message: Payload) -> int | None:
    """The integer value of the message's bdSeq metric, or None."""
    for metric in message.metrics:
        if metric.name == sparkplug_payload.BDSEQ and isinstance(metric.value, int) \
                and not isinstance(metric.value, bool):
            return metric.value
    return None


def _declare(label: str, scope: Scope, metrics: tuple[Metric, ...], node: _Node | None) -> _Birth:
    """What a birth declares for ``scope``; refused for a metric without a name or an alias given twice, within
    this birth or by another birth of ``node``."""
    datatypes: dict[str, int | None] = {}
    aliases: dict[int, str] = {}
    for metric in metrics:
        if metric.name is None:
            raise _Refused(f"{label} has a metric without a name (alias {metric.alias})")
        datatypes[metric.name] = metric.datatype
        if metric.alias is None:
            continue
        holder = (scope, aliases[metric.alias]) if metric.alias in aliases else _holder(node, scope, metric.alias)
        if holder is not None and holder != (scope, metric.name):
            raise _Refused(f"{label} gives alias {metric.alias} to both {_metric_label(*holder)} and "
                           f"{_metric_label(scope, metric.name)}")
        aliases[metric.alias] = metric.name
    return _Birth(datatypes, aliases)


def _holder(node: _Node | None, scope: Scope, alias: int) -> tuple[Scope, str] | None:
    """Which metric of another birth of ``node`` than ``scope``'s own has ``alias``, or None."""
    if node is None or alias not in node.owners or node.owners[alias] == scope:
        return None
    owner = node.owners[alias]
    return owner, node.births[owner].aliases[alias]


def _without(node: _Node, device: str) -> _Node:
    """``node`` with ``device`` unborn: without its birth and its aliases."""
    birth = node.births.get(device)
    if birth is None:
        return node
    owners = dict(node.owners)
    for alias in birth.aliases:
        del owners[alias]
    return replace(node, births={scope: kept for scope, kept in node.births.items() if scope != device},
                   owners=owners)


def _typed(metric: Metric, datatype: int | None) -> Value:
    """The metric's value read as ``datatype``; as sent when it is not a scalar of that type (the caller judges)."""
    if datatype is None:
        return metric.value
    try:
        return sparkplug_payload.typed_value(metric.value, datatype)
    except PayloadError:
        return metric.value


def _name_of(birth: _Birth, metric: Metric) -> str:
    """The born name of a data metric, looked up by its alias, else by its name; refused if never born."""
    if metric.alias is not None:
        name = birth.aliases.get(metric.alias)
        if name is None:
            raise _Refused(f"alias {metric.alias} was never born")
        return name
    if metric.name is None:  # decode_payload refuses a metric without either
        raise _Refused("a metric has neither a name nor an alias")
    if metric.name not in birth.datatypes:
        raise _Refused(f"metric {metric.name!r} was never born")
    return metric.name
