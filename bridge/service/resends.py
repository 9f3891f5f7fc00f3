"""Telling resends from new messages: a delivery the broker sends again, a reading sent twice.

Two layers, both persistent so that they hold across restarts. A QoS 1 message that the broker
sends again (DUP) after the bridge stored it matches a recorded delivery: the same packet id and
content within the last REDELIVERY_WINDOW deliveries. That layer is off for a broker that gives
redeliveries new packet ids (``--redelivered-ids renumbered``): there a never-processed redelivery
can have the id and content of an earlier delivery, and would be dropped, lost. A reading sent
again by its source (a gauge that resends after a timeout, a broker that renumbers redeliveries, a
Sparkplug rebirth) matches a stored reading's key with the same digest (bridge.service.idempotency);
the same key with another digest is a conflict.
"""

import hashlib
from collections.abc import Sequence
from typing import Any

from bridge.service.batch import Batch
from bridge.service.decoders import Decoded
from bridge.service.messages import Inbound
from bridge.store import queries

# A broker hands out a packet id again only after tens of thousands of others (Mosquitto and
# amqtt count up to 65535), while a redelivery concerns one of the last in-flight window of
# messages; so a DUP whose id and content match one of the last REDELIVERY_WINDOW deliveries is
# that delivery again.
REDELIVERY_WINDOW = 30_000
RETAINED_WINDOW = 1_000  # a retained message replays one of the topic's recent readings


def _digest(message: Inbound) -> str:
    return hashlib.blake2b(message.topic.encode() + b"\0" + message.payload, digest_size=8).hexdigest()


class Resends:
    """One bridge's record of deliveries, and the count of resends it dropped."""

    def __init__(self, bridge: str, ids_kept: bool = True) -> None:
        self.bridge = bridge
        self.ids_kept = ids_kept  # the broker redelivers under the first delivery's packet id
        self.delivered = 0  # counter of the latest delivery recorded
        self.duplicates = 0

    def load(self, conn: Any) -> None:
        """Continue the delivery counter of the database; without packet ids to trust, forget the
        deliveries recorded (a run with ids kept after this one must not match them)."""
        if not self.ids_kept:
            queries.forget_deliveries(conn, self.bridge)
        self.delivered = queries.last_delivery(conn, self.bridge)

    def new_deliveries(self, conn: Any, batch: Batch, messages: Sequence[Inbound]) -> list[Inbound]:
        """The messages that are not redeliveries of messages processed before: a DUP whose packet
        id and content match one of the last REDELIVERY_WINDOW deliveries; the others' deliveries
        are recorded in ``batch``.

        Content alone cannot tell: after a crash the broker also redelivers, with DUP, messages the
        bridge never processed, whose content may equal a recent reading's. A broker that renumbers
        redeliveries (RabbitMQ) is covered by the readings' keys (seq or ts) only: every message is new.
        """
        if not self.ids_kept:
            return list(messages)
        redelivered = [m.delivery_id for m in messages if m.redelivered and m.delivery_id is not None]
        seen = queries.deliveries_of(conn, self.bridge, redelivered)
        fresh = []
        for message in messages:
            mid = message.delivery_id
            if mid is not None:
                digest = _digest(message)
                prior = seen.get(mid)
                if (message.redelivered and prior is not None and prior[0] == digest
                        and self.delivered - prior[1] < REDELIVERY_WINDOW):
                    self.duplicates += 1
                    continue
                self.delivered += 1
                seen[mid] = (digest, self.delivered)
                batch.deliveries[mid] = {"bridge": self.bridge, "mid": mid, "digest": digest,
                                         "counter": self.delivered}
            fresh.append(message)
        return fresh

    def unseen(self, conn: Any, readings: Sequence[tuple[Inbound, Decoded]]
               ) -> tuple[list[tuple[Inbound, Decoded]], list[tuple[Inbound, Decoded]]]:
        """The readings not stored before, and the conflicts: a stored key with the same digest is
        a resend (dropped and counted), with another digest a conflict; a retained replay without
        a key is a resend when one of its characteristic's last RETAINED_WINDOW readings says the same."""
        known = queries.known_keys(conn, [(d.characteristic.id, d.key) for _, d in readings if d.key is not None])
        replayed = {d.characteristic.id for m, d in readings if m.retained and d.key is None}
        recent = {cid: queries.recent_digests(conn, cid, RETAINED_WINDOW) for cid in replayed}
        unseen, conflicts = [], []
        for message, d in readings:
            cid = d.characteristic.id
            if d.key is not None:
                if (cid, d.key) in known:
                    if known[(cid, d.key)] in (d.digest, None):  # None: stored by 0.1, which kept no digest
                        self.duplicates += 1
                    else:
                        conflicts.append((message, d))
                    continue
                known[(cid, d.key)] = d.digest
            elif message.retained:
                if d.digest in recent[cid]:
                    self.duplicates += 1
                    continue
                recent[cid].add(d.digest)
            unseen.append((message, d))
        return unseen, conflicts
