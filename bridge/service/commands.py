"""Requests from operators and dashboards: acknowledge violations, ask for history.

A request arrives on ``spc/bridge/request/<user>/<command>``; the user is the one the broker's ACL
let publish there (never a field of the payload). The answer goes to
``spc/bridge/response/<user>/<command>`` only: ``{"status": "ok", "data": {...}}`` or
``{"status": "error", "error": "..."}``, with the request's ``transaction`` echoed. A refused
request changes nothing.
"""

import json
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from pydantic import ValidationError
from sqlalchemy.engine import Connection

from bridge.contract import (
    ACK_COMMAND, HISTORY_COMMAND, REQUEST_ROOT, AckRequest, CommandResponse, HistoryRequest,
    ack_topic, response_topic,
)
from bridge.service import events
from bridge.spc import Evaluator
from bridge.store import queries

MAX_HISTORY = 1000
MAX_REASON = 1000


class CommandError(ValueError):
    """A request that cannot be carried out; the message is sent back to its user."""


class Outcome(NamedTuple):
    """Events to publish (topic, payload, retain) and, if refused, the reason."""

    events: list[tuple[str, str, bool]]
    error: str | None


def parse_request_topic(topic: str) -> tuple[str, str] | None:
    """(user, command) of a request topic, None if the topic is not a request."""
    prefix = REQUEST_ROOT + "/"
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix):].split("/")
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None


def _request(model: type[AckRequest] | type[HistoryRequest], payload: bytes) -> Any:
    try:
        return model.model_validate_json(payload)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}"
                             for e in error.errors(include_url=False))
        raise CommandError(f"bad request: {problems}") from None


def _transaction(payload: bytes) -> str | int | None:
    """The request's transaction, if it can be read at all (to answer even a bad request)."""
    try:
        body = json.loads(payload)
    except ValueError:
        return None
    value = body.get("transaction") if isinstance(body, dict) else None
    return value if isinstance(value, (str, int)) and not isinstance(value, bool) else None


def _acknowledge(conn: Connection, user: str, payload: bytes, now: str,
                 evaluators: Mapping[int, Evaluator]) -> tuple[dict[str, Any], list[tuple[str, str, bool]]]:
    request = _request(AckRequest, payload)
    ids = ([request.violation_id] if request.violation_id is not None else []) + (request.violation_ids or [])
    if not ids:
        raise CommandError("give violation_id or violation_ids")
    reason = request.reason.strip()
    if not reason:
        raise CommandError("a reason is required")
    if len(reason) > MAX_REASON:
        raise CommandError(f"the reason is longer than {MAX_REASON} characters")
    found = queries.violations_by_id(conn, ids)
    unknown = sorted(set(ids) - set(found))
    if unknown:
        raise CommandError(f"unknown violation(s) {unknown}")
    done = sorted(i for i, row in found.items() if row.acknowledged)
    if done:
        raise CommandError(f"violation(s) {done} already acknowledged")
    rows = queries.acknowledge(conn, sorted(set(ids)), user, reason, now)
    out = [(ack_topic(row.characteristic_id), events.ack_event(row._mapping), False) for row in rows]
    return {"violation_ids": [row.id for row in rows], "ack_user": user, "ack_time": now}, out


def _history(conn: Connection, user: str, payload: bytes, now: str,
             evaluators: Mapping[int, Evaluator]) -> tuple[dict[str, Any], list[tuple[str, str, bool]]]:
    request = _request(HistoryRequest, payload)
    cid = request.characteristic_id
    evaluator = evaluators.get(cid)
    if evaluator is None:
        raise CommandError(f"no characteristic {cid}")
    if not 1 <= request.limit <= MAX_HISTORY:
        raise CommandError(f"limit must be 1..{MAX_HISTORY}")
    samples = [json.loads(events.sample_event(row.id, row._mapping, evaluator.spec, None))
               for row in queries.recent_samples(conn, cid, request.limit)]

    def violation_list(open_only: bool) -> list[Any]:
        return [json.loads(events.violation_event(row.id, row._mapping))
                for row in queries.recent_violations(conn, cid, request.limit, open_only)]

    return {
        "characteristic_id": cid,
        "limits": json.loads(events.limits_event(cid, evaluator)),
        "samples": samples,
        "violations": violation_list(False),
        "open_violations": violation_list(True),
    }, []


_COMMANDS: dict[str, Callable[..., tuple[dict[str, Any], list[tuple[str, str, bool]]]]] = {
    ACK_COMMAND: _acknowledge,
    HISTORY_COMMAND: _history,
}


def handle(conn: Connection, user: str, command: str, payload: bytes, now: str,
           evaluators: Mapping[int, Evaluator]) -> Outcome:
    """Carry out one request inside the caller's transaction; its events and the response."""
    transaction = _transaction(payload)
    try:
        run = _COMMANDS.get(command)
        if run is None:
            raise CommandError(f"unknown command {command!r}: use one of {sorted(_COMMANDS)}")
        data, out = run(conn, user, payload, now, evaluators)  # checks come before any write
        response = CommandResponse(status="ok", data=data, transaction=transaction)
        return Outcome(out + [(response_topic(user, command), response.model_dump_json(), False)], None)
    except CommandError as error:
        response = CommandResponse(status="error", error=str(error), transaction=transaction)
        return Outcome([(response_topic(user, command), response.model_dump_json(), False)], str(error))
