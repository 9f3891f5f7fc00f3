"""Active/standby and partition take-over: which partitions of the logical bridge this process serves.

Every process started with the same client id and database is an instance of one logical bridge.
Each partition (one, unless ``--partitions``) has a lease (bridge.store.lease); an instance serves
the partitions whose leases it holds, each with a bridge of its own (bridge.service.runner) in a
thread, and waits as a standby for the rest, never connecting under their client ids. Once a lease
is free (its holder stopped, died, or went unrenewed past ``--lease-ttl``) an instance with room
takes it; one at its ``--take`` takes it too once it has been left unserved for OVERFLOW_GRACE_S,
so the partitions of a dead process are served again, and hands one back while another instance has
room (bridge.store.instances). The bridge that takes over resumes the partition's MQTT session and
its engine state from the database.
"""

import logging
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from bridge.config import Characteristics, ConfigError, Settings, load_characteristics
from bridge.metrics_server import MetricsServer
from bridge.service.metrics import InstanceMetrics
from bridge.service.partitions import layout_of, partition_client_id, partition_lease
from bridge.service.runner import Bridge
from bridge.store.dberrors import brief
from bridge.store.failures import open_engine, prepare_waiting
from bridge.store.instances import Instances
from bridge.store.lease import (
    Holder, Lease, LeaseLost, bound_idle_transactions, create_table, default_instance, holders, renewal_period,
)
from bridge.store.schema import instances, leases

log = logging.getLogger(__name__)
OVERFLOW_GRACE_S = 2.0  # a partition left unserved this long is taken even by an instance at its --take
STOP_JOIN_S = 30.0


@dataclass
class _Served:
    """A partition this instance serves: its bridge, the thread running it and that thread's stop."""

    bridge: Bridge
    thread: threading.Thread = field(init=False)
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


def _create_tables(engine: Engine) -> None:
    """The tables of the leases and the instances (each bridge creates the rest)."""
    create_table(engine, leases)
    create_table(engine, instances)


class Instance:
    """This process among the instances of one logical bridge."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        count = settings.partitions
        self._load()  # a file that cannot run is refused at once, not at the first take-over
        self.name = settings.instance or default_instance()
        self.engine = open_engine(settings.db_url)  # the leases' own, apart from the bridges' writes
        bound_idle_transactions(self.engine, settings.lease_ttl)
        self.leases = [Lease(self.engine, partition_lease(settings.client_id, k, count), self.name,
                             settings.lease_ttl) for k in range(count)]
        self.take = settings.take or count
        self.instances = Instances(self.engine, settings.client_id, self.name, settings.lease_ttl)
        self.metrics = InstanceMetrics()  # the served bridge's, with --metrics-port (one partition only)
        self.served: dict[int, _Served] = {}
        self._unserved_since: dict[int, float] = {}
        self._shown: dict[int, tuple[str, int] | None] = {}  # the holder last logged per partition

    def run(self, stop: threading.Event) -> None:
        """Serve what this instance can take until ``stop`` is set; DatabaseUnusable when waiting cannot
        help, OSError when the metrics port cannot be listened on."""
        with self._serve_metrics():
            self._run(stop)

    def _serve_metrics(self) -> AbstractContextManager[object]:
        """Serve /metrics and /healthz on --metrics-port for the process's life (nothing without it)."""
        settings = self.settings
        if settings.metrics_port is None:
            return nullcontext()
        server = MetricsServer(self.metrics.registry, self.metrics.problems, settings.metrics_host, settings.metrics_port)
        log.info("metrics at %s, health at /healthz", server.url)
        return server

    def _run(self, stop: threading.Event) -> None:
        if not prepare_waiting(self.engine, _create_tables, stop):
            return
        renew_every = renewal_period(self.settings.lease_ttl)
        renewed = time.monotonic()
        try:
            while not stop.is_set():
                self._reap()
                if time.monotonic() - renewed >= renew_every:
                    for k in self.served:
                        self.leases[k].renew()
                    renewed = time.monotonic()
                self._take_free()
                self._balance()
                stop.wait(renew_every)
        finally:
            self._stop_all()

    def _load(self) -> Characteristics:
        """The characteristics file, read again for each take-over (a bridge keeps only what it runs)."""
        configs = load_characteristics(self.settings.config_path)
        count = self.settings.partitions
        beyond = [c.id for c in configs if count > 1 and c.partition is not None and c.partition >= count]
        if beyond:  # no partition would ever serve them
            raise ConfigError(f"partition: characteristic(s) {beyond[:20]} name a partition beyond the "
                              f"{count} of --partitions (0..{count - 1})")
        if count > 1 and any(c.sparkplug is not None for c in configs):
            raise ConfigError("partitions: not with Sparkplug characteristics yet (one Sparkplug host per bridge): "
                              "serve them from a bridge of their own, without --partitions")
        return configs

    def _reap(self) -> None:
        """Forget the partitions whose bridge has stopped (its lease lost); re-raise a bridge's failure."""
        for k, served in list(self.served.items()):
            if served.thread.is_alive():
                continue
            del self.served[k]
            if served.error is not None:
                raise served.error

    def _check_layout(self) -> None:
        """Refuse to serve beside an instance of the same bridge started with another --partitions: both
        would run some characteristics (ConfigError)."""
        client_id, count = self.settings.client_id, self.settings.partitions
        prefix = sa.or_(leases.c.name == client_id, leases.c.name.startswith(f"{client_id}:p", autoescape=True))
        for name, holder in holders(self.engine, prefix).items():
            other = layout_of(client_id, name)
            if other is not None and other != count and not self.leases[0].free(holder):
                layout = f"with --partitions {other}" if other else "as an earlier build (its lease names no count)"
                raise ConfigError(f"partitions: instance {holder.holder} serves {name} of this bridge {layout}, "
                                  f"and this one has --partitions {count}: stop every process of the bridge to "
                                  "change its partitions or to upgrade them")

    def _take_free(self) -> None:
        """Take the free leases this instance has room for, and those left unserved for long."""
        try:
            self._check_layout()
        except DBAPIError as error:
            self._unreadable(f"the leases of {self.settings.client_id}", error)
            return
        room = self.take - len(self._staying())
        now = time.monotonic()
        configs: Characteristics | None = None
        for k, lease in enumerate(self.leases):
            if k in self.served:
                continue
            try:
                current = lease.holder()
                if not lease.free(current):
                    self._unserved_since.pop(k, None)
                    self._standby(k, current)
                    continue
                unserved = now - self._unserved_since.setdefault(k, now)
                if room <= 0 and unserved < OVERFLOW_GRACE_S:
                    continue
                configs = configs or self._load()
                if lease.take(current):
                    try:
                        self._check_layout()  # an instance of another layout may have started meanwhile
                    except ConfigError:
                        lease.release()
                        raise
                    room -= 1
                    self._unserved_since.pop(k, None)
                    self._serve(k, lease, current, configs)
            except DBAPIError as error:
                self._unreadable(f"the lease of {lease.name}", error)
                return

    def _unreadable(self, what: str, error: DBAPIError) -> None:
        log.warning("could not look at %s (%s): tried again in %g s", what,
                    brief(error), renewal_period(self.settings.lease_ttl))

    def _staying(self) -> list[int]:
        """The partitions this instance serves and is not handing over."""
        return [k for k, served in self.served.items() if not served.stop.is_set()]

    def _balance(self) -> None:
        """Say how many more partitions this instance could serve; serving more than its --take (those
        of a dead instance), hand one over while another instance has room."""
        staying = self._staying()
        room = self.take - len(staying)
        try:
            self.instances.beat(max(0, room))
            if room < 0 and self.instances.others_with_room():
                k = max(staying)
                log.info("instance %s hands %s over to an instance with room (it serves %d partitions, --take %d)",
                         self.name, self.leases[k].name, len(staying), self.take)
                self.served[k].stop.set()
        except DBAPIError as error:
            log.warning("could not tell the other instances how many partitions this one serves (%s)",
                        brief(error))

    def _standby(self, k: int, current: Holder | None) -> None:
        """Log, once per holder, that another instance serves partition ``k``."""
        seen = None if current is None else (current.holder, current.epoch)
        if self._shown.get(k) != seen and current is not None:
            local = " (the lease is in SQLite: a standby on this machine only)" if self.engine.dialect.name == "sqlite" \
                else ""
            log.info("standby for %s: instance %s is active (lease epoch %d, %.1f s left)%s", self.leases[k].name,
                     current.holder, current.epoch, current.left_s, local)
        self._shown[k] = seen

    def _serve(self, k: int, lease: Lease, before: Holder | None, configs: Characteristics) -> None:
        """Start a bridge for partition ``k``, whose lease this instance has just taken."""
        count = len(self.leases)
        previous = "" if before is None else f" from instance {before.holder} (epoch {before.epoch})"
        log.info("instance %s takes over %s%s: active, lease epoch %d", self.name, lease.name, previous, lease.epoch)
        self._shown[k] = (self.name, lease.epoch)
        settings = replace(self.settings, client_id=partition_client_id(self.settings.client_id, k, len(self.leases)))
        served = _Served(Bridge(settings, configs, lease, (k, count)))
        served.thread = threading.Thread(target=self._run_bridge, args=(served,), name=f"partition-{k}", daemon=True)
        self.served[k] = served
        served.thread.start()

    def _run_bridge(self, served: _Served) -> None:
        """Run a partition's bridge; stopped (not for a lost lease), release its lease for another instance."""
        self.metrics.serving = served.bridge.metrics
        try:
            served.bridge.run(served.stop)
        except LeaseLost:  # while starting, before connecting: another instance serves it now
            return
        except BaseException as error:  # handed to the main thread by _reap
            served.error = error
            return
        finally:
            if self.metrics.serving is served.bridge.metrics:
                self.metrics.serving = None
        lease = served.bridge.lease
        if served.stop.is_set() and lease is not None and not lease.lost.is_set():
            lease.release()

    def _stop_all(self) -> None:
        """Stop every bridge this instance runs (each releases its lease for a standby), and leave."""
        for served in self.served.values():
            served.stop.set()
        deadline = time.monotonic() + STOP_JOIN_S
        for served in self.served.values():
            served.thread.join(max(0.0, deadline - time.monotonic()))
        errors: list[Any] = [s.error for s in self.served.values() if s.error is not None]
        self.served.clear()
        try:
            self.instances.leave()
        except DBAPIError:
            pass  # its row expires by itself
        if errors:
            raise errors[0]
