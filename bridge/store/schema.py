"""The tables: characteristics, limit sets, readings, samples, violations, engine state, outbox,
deliveries, rejects, settings, leases, instances and the audit trail."""

import sqlalchemy as sa

from bridge.ingest import MAX_SEQ_CHARS, MAX_TS_CHARS

metadata = sa.MetaData()
TOPIC_CHARS = 1024  # of a stored topic (characteristics, outbox, rejects)
USER_CHARS = 200  # of a stored user name
READING_KEY_CHARS = len("seq:") + MAX_SEQ_CHARS  # or "ts:" and an ISO 8601 instant, shorter

characteristics = sa.Table(
    "characteristics", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("topic", sa.String(TOPIC_CHARS), nullable=False),
    sa.Column("chart", sa.String(16), nullable=False),
    sa.Column("config", sa.Text, nullable=False),  # the characteristic's configuration, JSON
    # bridge.service.catalog: the configuration's version, the file's last imported text (null for
    # a characteristic an engineer created), and whether it is retired
    sa.Column("version", sa.Integer),
    sa.Column("imported", sa.Text),
    sa.Column("retired", sa.Boolean),
)

# Every set of limits a characteristic has had, in order (version 1, 2, ...), with who made it, why,
# and from which sample it judged (null until a sample has been judged by it).
limit_sets = sa.Table(
    "limit_sets", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("characteristic_id", sa.Integer, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("phase", sa.String(16), nullable=False),
    sa.Column("center", sa.Float),
    sa.Column("ucl", sa.Float),
    sa.Column("lcl", sa.Float),
    sa.Column("sigma", sa.Float),
    sa.Column("cause", sa.String(32), nullable=False),  # what made it: a command, the baseline, an import
    sa.Column("user", sa.String(USER_CHARS), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("excluded_sample_ids", sa.Text, nullable=False),  # JSON list
    sa.Column("effective_from", sa.BigInteger),
    sa.Column("created_at", sa.String(64), nullable=False),
    sa.UniqueConstraint("characteristic_id", "version", name="ux_limit_sets_version"),
)

# Append-only (bridge.store.audit adds triggers that refuse UPDATE and DELETE): every change of a
# characteristic, limit set, rules, reason codes and every acknowledgement, with old and new values.
audit = sa.Table(
    "audit", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("at", sa.String(64), nullable=False),
    sa.Column("user", sa.String(USER_CHARS), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("characteristic_id", sa.Integer),
    sa.Column("old", sa.Text),  # JSON
    sa.Column("new", sa.Text),  # JSON
    sa.Column("reason", sa.Text, nullable=False),
    sa.Index("ix_audit_characteristic", "characteristic_id", "id"),
)

# Bridge-wide settings kept in the database, by name, as JSON (the reason codes).
settings = sa.Table(
    "settings", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# One row per accepted reading, exactly as the gauge sent it; its values are the measurements of
# the sample (characteristic_id, sample_idx), which for collected single values may not exist yet.
readings = sa.Table(
    "readings", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("characteristic_id", sa.Integer, nullable=False),
    sa.Column("sample_idx", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.String(MAX_SEQ_CHARS)),
    sa.Column("ts", sa.String(MAX_TS_CHARS), nullable=False),  # the gauge's timestamp, kept exactly
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("measurements", sa.Text),  # JSON list of values (measurement charts)
    sa.Column("count", sa.BigInteger),
    sa.Column("n", sa.Integer),
    # what identifies the reading (bridge.service.idempotency): its seq, else the gauge's timestamp
    sa.Column("reading_key", sa.String(READING_KEY_CHARS)),
    sa.Column("digest", sa.String(16)),  # of what it says: a resend has the same, a conflict another
    sa.Index("ix_readings_sample", "characteristic_id", "sample_idx"),
    sa.Index("ux_readings_key", "characteristic_id", "reading_key", unique=True),
)

samples = sa.Table(
    "samples", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("characteristic_id", sa.Integer, nullable=False),
    sa.Column("idx", sa.BigInteger, nullable=False),  # the engine's index of the sample
    sa.Column("ts", sa.String(MAX_TS_CHARS), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("spread", sa.Float),
    sa.Column("zone", sa.String(16)),
    sa.Column("in_control", sa.Boolean),
    sa.Column("ucl", sa.Float),
    sa.Column("lcl", sa.Float),
    # the carried statistics of CUSUM (C+, C-) and EWMA (z) charts; null on other charts
    sa.Column("cusum_upper", sa.Float),
    sa.Column("cusum_lower", sa.Float),
    sa.Column("ewma", sa.Float),
    sa.Column("limit_set", sa.Integer),  # the version of the limit set that judged it
    sa.UniqueConstraint("characteristic_id", "idx", name="ux_samples_idx"),
)

violations = sa.Table(
    "violations", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("characteristic_id", sa.Integer, nullable=False),
    sa.Column("sample_id", sa.BigInteger, nullable=False),
    sa.Column("rule_id", sa.Integer, nullable=False),
    sa.Column("rule_name", sa.String(200), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("chart", sa.String(8), nullable=False),
    sa.Column("acknowledged", sa.Boolean, nullable=False, default=False),
    sa.Column("ack_user", sa.String(USER_CHARS)),
    sa.Column("ack_reason", sa.Text),
    sa.Column("ack_time", sa.String(64)),
    sa.Column("reason_code", sa.String(64)),
    sa.Column("assignable_cause", sa.Boolean),  # proposes its sample for exclusion at the next recalculate
    sa.Index("ix_violations_characteristic", "characteristic_id", "acknowledged"),
)

# What a restarted bridge needs to resume each characteristic: the engine's state and the single
# values collected towards the next subgroup.
engine_state = sa.Table(
    "engine_state", metadata,
    sa.Column("characteristic_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("pending", sa.Text, nullable=False),
)

# Characteristics a file changed, until the bridge that runs each has restated them under the change
# (with partitions another partition's bridge may be the one that applied the file, and the one running
# the characteristic may go on saving its state until it restarts): bridge.service.catalog.
changed_by_file = sa.Table(
    "changed_by_file", metadata,
    sa.Column("characteristic_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("reshaped", sa.Boolean, nullable=False),  # its saved engine state no longer applies
)

# Events committed with the data they describe and deleted once the broker has acknowledged them;
# seq is the publishing bridge's own counter, so several bridges can share one database.
outbox = sa.Table(
    "outbox", metadata,
    sa.Column("bridge", sa.String(200), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("topic", sa.String(TOPIC_CHARS), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("retain", sa.Boolean, nullable=False),
)

# The latest message this bridge processed under each MQTT packet id, to recognise a redelivery
# (DUP) of a message committed before a crash whose PUBACK the broker never received; ``counter``
# numbers the bridge's deliveries, as a broker reuses an id only after many others.
deliveries = sa.Table(
    "deliveries", metadata,
    sa.Column("bridge", sa.String(200), primary_key=True),
    sa.Column("mid", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("digest", sa.String(32), nullable=False),
    sa.Column("counter", sa.BigInteger, nullable=False),
)

# The filters each bridge last subscribed to: a persistent session keeps a subscription the bridge no
# longer wants (an earlier version's, or a changed ingest root), which would deliver readings twice.
subscriptions = sa.Table(
    "subscriptions", metadata,
    sa.Column("bridge", sa.String(200), primary_key=True),
    sa.Column("topic_filter", sa.String(1024), primary_key=True),
)

rejects = sa.Table(
    "rejects", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("topic", sa.String(TOPIC_CHARS), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)

# Which instance serves each logical bridge (its MQTT client id) now (bridge.store.lease): taken over by
# raising ``epoch``, so a commit can check that its instance still holds it.
leases = sa.Table(
    "leases", metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),  # the instance: --instance, or host:pid
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("epoch", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),  # seconds since 1970 by the database's clock
)

# The live instances of each logical bridge and how many more partitions each would serve
# (bridge.store.instances): one serving more than its --take hands one over to an instance with room.
instances = sa.Table(
    "instances", metadata,
    sa.Column("bridge", sa.String(200), primary_key=True),  # the logical bridge's client id
    sa.Column("instance", sa.String(200), primary_key=True),
    sa.Column("room", sa.Integer, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),  # by the database's clock, as leases.expires_at
)
