"""Requests from operators, engineers and dashboards: acknowledge violations, ask for history, and
the engineers' workflow commands (bridge.service.workflow).

A request arrives on ``spc/bridge/request/<user>/<command>``; the user is the one the broker's ACL
let publish there (never a field of the payload). The answer goes to
``spc/bridge/response/<user>/<command>`` only: ``{"status": "ok", "data": {...}}``,
``{"status": "error", "error": "..."}`` or ``{"status": "busy", "error": "..."}``, with the
request's ``transaction`` echoed. A refused request changes nothing. Given the users
(bridge.service.roles), the bridge also refuses a command the sender's role does not allow.

What a client controls is bounded before it costs anything (the ``MAX_*`` of bridge.contract):
payload size, nesting, command name, transaction, ids. A batch gives commands a bounded share
(MAX_PER_BATCH, BATCH_SECONDS) and each user has a budget (bridge.service.budget); the rest are
answered ``busy`` without touching the database (and past a second budget, not at all), so a
flood of commands never holds up the readings committed with them. Each command runs in a
savepoint: one that fails for any reason rolls back its own writes (and the subscription changes it
asked for) only and is answered with the reason. Commands reach the characteristics and the
subscriptions through their context (bridge.service.command_context).
"""

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal, NamedTuple

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from bridge.contract import (
    ACK_COMMAND, HISTORY_COMMAND, INT64, MAX_ACK_IDS, MAX_COMMAND_CHARS, MAX_HISTORY,
    MAX_REASON_CHARS, MAX_REQUEST_BYTES, MAX_REQUEST_DEPTH, MAX_RESPONSE_BYTES,
    MAX_TRANSACTION_CHARS, REQUEST_ROOT, AckRequest, CommandResponse, HistoryRequest, ack_topic,
    response_topic,
)
from bridge.jsondepth import deeper_than
from bridge.service import events, workflow
from bridge.service.budget import Budget
from bridge.service.command_context import CommandContext
from bridge.service.command_errors import CommandError, parse
from bridge.service.messages import Event
from bridge.store import audit, limit_sets, queries
from bridge.store.schema import TOPIC_CHARS, USER_CHARS

log = logging.getLogger(__name__)
# A batch's readings are committed after its commands: these bound what commands add to their latency
# (a history of 1,000 samples takes some 35 ms on SQLite here).
MAX_PER_BATCH = 50
BATCH_SECONDS = 0.05
FLOOD_LOG_S = 60.0  # at most one warning this often about requests left unanswered
MAX_USER_CHARS = USER_CHARS
RETAINED_IGNORED = ("retained command ignored: a request is carried out when it is sent, never "
                    "replayed; publish requests without the retain flag")

MAX_LIMIT_SETS = 100  # limit sets in one history answer


class Outcome(NamedTuple):
    """Events to publish (topic, payload, retain) and, if refused, the reason."""

    events: list[Event]
    error: str | None


class Request(NamedTuple):
    """One request of a batch: who sent which command, its payload and when it was received."""

    user: str
    command: str
    payload: bytes
    now: str


def parse_request_topic(topic: str) -> tuple[str, str] | None:
    """(user, command) of a request topic, None if the topic is not a request."""
    prefix = REQUEST_ROOT + "/"
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix):].split("/")
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None


def clear_retained(topic: str) -> list[Event]:
    """The event that deletes a retained request from the broker (an empty retained message), so
    it is not replayed at the next start; none for a topic too long to be one."""
    return [Event(topic, "", True)] if len(topic) <= TOPIC_CHARS else []


def screen(payload: bytes) -> None:
    """The checks that come before the payload is parsed at all (CommandError with the reason)."""
    if len(payload) > MAX_REQUEST_BYTES:
        raise CommandError(f"the request is {len(payload)} bytes; at most {MAX_REQUEST_BYTES} are accepted")
    if deeper_than(payload, MAX_REQUEST_DEPTH):
        raise CommandError(f"the request nests deeper than {MAX_REQUEST_DEPTH} levels; "
                           "send a flat JSON object")


def _command(user: str, command: str, context: CommandContext) -> Callable[..., tuple[dict[str, Any], list[Event]]]:
    """The function that carries out ``command``, if it exists and ``user`` may be recorded and send it."""
    run = _COMMANDS.get(command) if len(command) <= MAX_COMMAND_CHARS else None
    if run is None:
        shown = command if len(command) <= MAX_COMMAND_CHARS else f"{command[:MAX_COMMAND_CHARS]}..."
        raise CommandError(f"unknown command {shown!r}: use one of {sorted(_COMMANDS)}")
    if len(user) > MAX_USER_CHARS:
        raise CommandError(f"the user name is longer than {MAX_USER_CHARS} characters")
    if not context.permits(user, command):
        raise CommandError(f"{user} may not send {command}: its role does not allow it")
    return run


def _transaction(payload: bytes) -> str | int | None:
    """The request's transaction if it is within bounds (to answer even a bad request with it)."""
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    value = body.get("transaction") if isinstance(body, dict) else None
    if isinstance(value, str) and len(value) <= MAX_TRANSACTION_CHARS:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and -INT64 - 1 <= value <= INT64:
        return value
    return None


def _acknowledge(conn: Connection, user: str, payload: bytes, now: str,
                 context: CommandContext) -> tuple[dict[str, Any], list[Event]]:
    request = parse(AckRequest, payload)
    ids = sorted({*([request.violation_id] if request.violation_id is not None else []),
                  *(request.violation_ids or [])})
    if not ids:
        raise CommandError("give violation_id or violation_ids")
    if len(ids) > MAX_ACK_IDS:
        raise CommandError(f"{len(ids)} violations in one request; acknowledge at most {MAX_ACK_IDS} at a time")
    if request.reason_code not in context.reason_codes:
        raise CommandError(f"unknown reason_code {request.reason_code[:64]!r}: use one of "
                           f"{', '.join(context.reason_codes)}")
    reason = request.reason.strip()
    if len(reason) > MAX_REASON_CHARS:
        raise CommandError(f"the reason is longer than {MAX_REASON_CHARS} characters")
    found = queries.violations_by_id(conn, ids)
    unknown = sorted(set(ids) - set(found))
    if unknown:
        raise CommandError(f"unknown violation(s) {unknown}")
    done = sorted(i for i, row in found.items() if row.acknowledged)
    if done:
        raise CommandError(f"violation(s) {done} already acknowledged")
    rows = queries.acknowledge(conn, ids, user, reason, now, request.reason_code, request.assignable_cause)
    audit.append(conn, [audit.entry(now, user, "violation.ack", row.characteristic_id,
                                    {"violation_id": row.id, "acknowledged": False},
                                    {"violation_id": row.id, "acknowledged": True, "reason_code": row.reason_code,
                                     "assignable_cause": row.assignable_cause, "sample_id": row.sample_id},
                                    reason or row.reason_code) for row in rows])
    out = [Event(ack_topic(row.characteristic_id), events.ack_event(row._mapping), False) for row in rows]
    return {"violation_ids": [row.id for row in rows], "ack_user": user, "ack_time": now,
            "reason_code": request.reason_code, "assignable_cause": request.assignable_cause}, out


def _history(conn: Connection, user: str, payload: bytes, now: str,
             context: CommandContext) -> tuple[dict[str, Any], list[Event]]:
    request = parse(HistoryRequest, payload)
    cid = request.characteristic_id
    ch = context.characteristic(cid)
    if ch is None:
        raise CommandError(f"no characteristic {cid}")
    evaluator = ch.assembler.evaluator
    if not 1 <= request.limit <= MAX_HISTORY:
        raise CommandError(f"limit must be 1..{MAX_HISTORY}")
    samples = [{**json.loads(events.sample_event(row.id, row._mapping, evaluator.spec, None)),
                "limit_set": row.limit_set}
               for row in queries.recent_samples(conn, cid, request.limit)]

    def violation_list(open_only: bool) -> list[Any]:
        """Each violation with its ``ack`` event, null while it is open."""
        return [{**json.loads(events.violation_event(row.id, row._mapping)),
                 "ack": json.loads(events.ack_event(row._mapping)) if row.acknowledged else None}
                for row in queries.recent_violations(conn, cid, request.limit, open_only)]

    first = evaluator.baseline_start
    commands = context.commands(user)
    return {
        "characteristic_id": cid,
        "role": context.role(user), "commands": list(commands) if commands is not None else None,
        "reason_codes": list(context.reason_codes),
        "limits": json.loads(events.limits_event(cid, evaluator, ch.limit_set, ch.name)),
        "limit_sets": limit_sets.recent(conn, cid, MAX_LIMIT_SETS),
        "samples": samples,
        "violations": violation_list(False),
        "open_violations": violation_list(True),
        "proposed_sample_ids": queries.proposed_samples(conn, cid, first, first + len(evaluator.baseline)),
    }, []


_COMMANDS: dict[str, Callable[..., tuple[dict[str, Any], list[Event]]]] = {
    ACK_COMMAND: _acknowledge,
    HISTORY_COMMAND: _history,
    **workflow.COMMANDS,
}


def _answer(user: str, command: str, response: CommandResponse) -> Event:
    # cut to their bounds, so the topic fits the outbox even for a name that was refused for its length
    return Event(response_topic(user[:MAX_USER_CHARS], command[:MAX_COMMAND_CHARS]), response.model_dump_json(), False)


def _refused(user: str, command: str, transaction: str | int | None, reason: str) -> Outcome:
    response = CommandResponse(status="error", error=reason, transaction=transaction)
    return Outcome([_answer(user, command, response)], reason)


@contextmanager
def _savepoint(conn: Connection) -> Iterator[None]:
    """A savepoint of the caller's transaction, so a failing command undoes only its own writes."""
    dbapi = conn.connection.dbapi_connection
    if conn.dialect.name == "sqlite" and dbapi is not None and not dbapi.in_transaction:
        # pysqlite opens its transaction at the first write: a SAVEPOINT before it would be the
        # outermost transaction, and releasing it would commit the command ahead of its batch.
        # IMMEDIATE takes the write lock now (waiting out another writer): a deferred BEGIN would read
        # a snapshot that a commit of another writer (the lease's) makes stale, and the batch's first
        # write would then fail at once with "database is locked", the busy timeout unused.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    with conn.begin_nested():
        yield


def handle(conn: Connection, user: str, command: str, payload: bytes, now: str,
           context: CommandContext) -> Outcome:
    """Carry out one request in a savepoint of the caller's transaction: its events and response.

    Raises only when the database cannot be used for now (a lost connection, a lock to wait out:
    the batch is then retried); any other failure is an error response.
    """
    if not payload:
        return Outcome([], None)  # the deletion of a retained request (see RETAINED_IGNORED): no request
    try:
        screen(payload)
    except CommandError as error:
        return _refused(user, command, None, str(error))
    transaction = _transaction(payload)
    mark = context.mark()
    try:
        run = _command(user, command, context)
        with _savepoint(conn):
            data, out = run(conn, user, payload, now, context)
            text = CommandResponse(status="ok", data=data, transaction=transaction).model_dump_json()
            if len(text) > MAX_RESPONSE_BYTES:
                raise CommandError(f"the answer would be {len(text)} bytes, more than {MAX_RESPONSE_BYTES}; "
                                   "ask for a smaller limit")
        return Outcome(out + [Event(response_topic(user, command), text, False)], None)
    except CommandError as error:
        context.discard(mark)
        return _refused(user, command, transaction, str(error))
    except DBAPIError as error:
        context.discard(mark)
        if queries.unavailable(conn.engine, error):
            raise  # a lost connection or a lock to wait out: the batch is retried
        log.warning("%s of %s could not be carried out: %s", command, user, error.orig)
        return _refused(user, command, transaction,
                        f"the database refused this request ({type(error.orig).__name__}); nothing was changed")
    except Exception as error:
        context.discard(mark)
        log.exception("%s of %s failed", command, user)
        return _refused(user, command, transaction,
                        f"the bridge could not carry out this request ({type(error).__name__}); "
                        "nothing was changed: tell the bridge's administrator")


def _not_carried_out(user: str, command: str, payload: bytes, status: Literal["busy", "error"],
                     reason: str) -> Outcome:
    """The answer to a request that was not carried out, nothing read or written for it."""
    if not payload:
        return Outcome([], None)
    try:
        screen(payload)
        transaction = _transaction(payload)
    except CommandError:
        transaction = None
    response = CommandResponse(status=status, error=reason, transaction=transaction)
    return Outcome([_answer(user, command, response)], reason if status == "error" else None)


def busy(user: str, command: str, payload: bytes, reason: str) -> Outcome:
    """The ``busy`` answer to a request that was not carried out (nothing is read or written)."""
    return _not_carried_out(user, command, payload, "busy", reason)


def refuse(user: str, command: str, payload: bytes, reason: str) -> Outcome:
    """The ``error`` answer to a request refused before it was carried out."""
    return _not_carried_out(user, command, payload, "error", reason)


class Desk:
    """Carries out the requests of each batch within the per-user budget and the batch's share:
    at most MAX_PER_BATCH commands and, once BATCH_SECONDS have gone on commands, no more.

    Refusals are answered ``busy`` within a second budget of the same size per user; a user past
    both (a flood) gets no answer to the rest, as answering a flood would flood the broker in turn.
    """

    def __init__(self, budget: Budget | None = None, answers: Budget | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.budget = budget or Budget()
        self.answers = answers or Budget()
        self._clock = clock
        self.busy = 0        # requests answered busy since the start
        self.unanswered = 0  # requests past both budgets, dropped
        self._warned = -FLOOD_LOG_S
        self._spent: list[tuple[Budget, str]] = []  # the tokens the batch's requests took
        self._counted = (0, 0)

    def begin(self) -> None:
        """A batch starts: what it spends is given back if it is rolled back (then retried)."""
        self._spent = []
        self._counted = self.busy, self.unanswered

    def rollback(self) -> None:
        """The batch failed: its requests were neither carried out nor answered, so they cost nothing."""
        for budget, user in self._spent:
            budget.refund(user)
        self._spent = []
        self.busy, self.unanswered = self._counted

    def run(self, conn: Connection, requests: Sequence[Request],
            context: CommandContext) -> list[Outcome]:
        """The outcome of each request, in order."""
        outcomes = []
        carried = 0
        started = self._clock()
        for user, command, payload, now in requests:
            if carried >= MAX_PER_BATCH or self._clock() - started >= BATCH_SECONDS:
                reason = "the bridge is busy with other commands; ask again in a second"
            elif not self.budget.take(user):
                reason = (f"at most {self.budget.rate:g} commands a second (bursts of "
                          f"{self.budget.burst}) per user; ask again in {self.budget.wait(user):.1f} s")
            else:
                self._spent.append((self.budget, user))
                carried += 1
                outcomes.append(handle(conn, user, command, payload, now, context))
                continue
            if self.answers.take(user):
                self._spent.append((self.answers, user))
                self.busy += 1
                outcomes.append(busy(user, command, payload, reason))
            else:
                self.unanswered += 1
                outcomes.append(Outcome([], None))
                self._warn(user)
        return outcomes

    def _warn(self, user: str) -> None:
        now = self._clock()
        if now - self._warned >= FLOOD_LOG_S:
            self._warned = now
            log.warning("%s sends far more commands than its budget: the excess goes unanswered "
                        "(%d so far)", user, self.unanswered)
