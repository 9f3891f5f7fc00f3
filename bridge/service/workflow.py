"""The engineers' commands of the SPC workflow: characteristic, recalculate, start_baseline,
set_limits and rules.

Each changes one characteristic without a restart, as a trial first: the new configuration is
validated and the chart's new state computed on a copy, so a refused command changes nothing. Then
the configuration's new version is stored, the limits are recorded as the characteristic's next
limit set, the audit trail gets a row, and the new retained ``spc/<id>/limits`` is published. A
characteristic created, changed or retired runs as such at once, with the subscriptions that follow
from its topic; the command context puts the one before back if the command or its batch fails.
"""

import json
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import Connection

from bridge.assemble import Assembler
from bridge.config import CharacteristicConfig
from bridge.contract import (
    CHARACTERISTIC_COMMAND, MAX_REASON_CHARS, RECALCULATE_COMMAND, RULES_COMMAND, SET_LIMITS_COMMAND,
    START_BASELINE_COMMAND, CharacteristicRequest, RecalculateRequest, RulesRequest, SetLimitsRequest,
    StartBaselineRequest, limits_topic,
)
from bridge.service import catalog, events
from bridge.service.command_context import Catalog, Cause, CommandContext
from bridge.service.command_errors import CommandError, parse
from bridge.service.messages import Event
from bridge.service.registry import Characteristic
from bridge.spc import ChartSpec
from bridge.store import audit, queries

_FIXED = ("center", "ucl", "lcl", "sigma")

Result = tuple[dict[str, Any], list[Event]]


def reason_of(text: str) -> str:
    """The reason of a request, required and bounded."""
    reason = text.strip()
    if not reason:
        raise CommandError("a reason is required: it goes to the audit trail")
    if len(reason) > MAX_REASON_CHARS:
        raise CommandError(f"the reason is longer than {MAX_REASON_CHARS} characters")
    return reason


def _running(context: CommandContext, characteristic_id: int) -> Characteristic:
    ch = context.characteristic(characteristic_id)
    if ch is None:
        raise CommandError(f"no characteristic {characteristic_id}")
    return ch


def _stored_config(conn: Connection, characteristic_id: int) -> tuple[CharacteristicConfig, Any]:
    row = queries.stored_characteristics(conn, [characteristic_id])[characteristic_id]
    return CharacteristicConfig.model_validate_json(row.config), row


def _validated(data: dict[str, Any]) -> CharacteristicConfig:
    """A characteristic's keys as a configuration, validated as the file's tables are."""
    try:
        return CharacteristicConfig.model_validate_json(json.dumps(data))
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'characteristic'}: {e['msg']}"
                             for e in error.errors(include_url=False))
        raise CommandError(f"the chart would be invalid: {problems}") from None


def _changed_config(config: CharacteristicConfig, changes: dict[str, Any]) -> CharacteristicConfig:
    """``config`` with ``changes`` (None removes a key), validated."""
    return _validated({key: value for key, value in {**json.loads(config.model_dump_json()), **changes}.items()
                       if value is not None})


def _limits_summary(ch: Characteristic) -> dict[str, Any]:
    """The limit set in force, for the audit trail."""
    evaluator = ch.assembler.evaluator
    limits = evaluator.limits()
    primary = limits[0] if limits is not None else None
    return {"limit_set": ch.limit_set.version if ch.limit_set is not None else None, "phase": evaluator.phase,
            "center": primary.center if primary else None, "ucl": primary.ucl if primary else None,
            "lcl": primary.lcl if primary else None}


def _trial(ch: Characteristic, spec: ChartSpec, change: Callable[[Assembler], object]) -> Assembler:
    """A copy of ``ch``'s chart with ``spec``, changed by ``change``."""
    trial = Assembler(spec, ch.assembler.evaluator.state(), list(ch.assembler.pending))
    try:
        change(trial)
    except ValueError as error:
        raise CommandError(f"characteristic {ch.id}: {error}") from None
    return trial


def _apply(conn: Connection, context: CommandContext, ch: Characteristic, user: str, now: str,
           command: str, reason: str, change: Callable[[Assembler], object],
           config: tuple[CharacteristicConfig, Any] | None = None, excluded: Sequence[int] = (),
           extra: dict[str, Any] | None = None) -> Result:
    """Try ``change`` on a copy of ``ch``'s chart (with ``config``'s spec if given: a new version of its
    configuration); if it holds, make it the running one, record and publish the new limit set."""
    spec = config[0].chart_spec() if config is not None else ch.spec
    trial = _trial(ch, spec, change)
    before = _limits_summary(ch)
    context.change(ch)
    ch.spec, ch.assembler = spec, trial
    trail = []
    if config is not None:
        new, row = config
        queries.save_characteristics(conn, [catalog.row(new, (row.version or 1) + 1, row.imported, row.topic)])
        trail.append(audit.entry(now, user, f"characteristic.{command}", ch.id, catalog.plain(row.config),
                                 catalog.plain(new.model_dump_json()), reason))
    text = context.publish_limits(ch, Cause(command, user, reason, tuple(sorted(excluded))))
    trail.append(audit.entry(now, user, f"limits.{command}", ch.id, before, _limits_summary(ch), reason))
    audit.append(conn, trail)
    data = {"characteristic_id": ch.id, "limits": json.loads(text), **(extra or {})}
    return data, [Event(limits_topic(ch.id), text, True)]


def recalculate(conn: Connection, user: str, payload: bytes, now: str, context: CommandContext) -> Result:
    """The limits again from the current baseline without the samples given (or proposed)."""
    request = parse(RecalculateRequest, payload)
    reason = request.reason if request.preview else reason_of(request.reason)
    ch = _running(context, request.characteristic_id)
    evaluator = ch.assembler.evaluator
    if not ch.spec.needs_baseline:
        raise CommandError(f"characteristic {ch.id} has fixed limits: there is no baseline to recalculate "
                           "from (start_baseline starts one)")
    if evaluator.params is None:
        raise CommandError(f"characteristic {ch.id} is still in its baseline ({len(evaluator.baseline)} of "
                           f"{ch.spec.baseline} samples): recalculate once it has limits")
    first, stop = evaluator.baseline_start, evaluator.baseline_start + len(evaluator.baseline)
    ids = sorted(set(request.exclude_sample_ids if request.exclude_sample_ids is not None
                     else queries.proposed_samples(conn, ch.id, first, stop)))
    found = queries.samples_by_id(conn, ids)
    unknown = [i for i in ids if i not in found]
    if unknown:
        raise CommandError(f"unknown sample id(s) {unknown[:20]}")
    foreign = {i: found[i][0] for i in ids if found[i][0] != ch.id}
    if foreign:
        raise CommandError(f"sample(s) {sorted(foreign)[:20]} belong to characteristic(s) "
                           f"{sorted(set(foreign.values()))[:20]}, not to {ch.id}")
    outside = [i for i in ids if not first <= found[i][1] < stop]
    if outside:
        raise CommandError(f"sample(s) {outside[:20]} are not in the current baseline of characteristic {ch.id}")
    indexes = [found[i][1] for i in ids]
    if request.preview:
        trial = _trial(ch, ch.spec, lambda trial: trial.evaluator.recalculate(indexes))
        limits = events.limits_model(ch.id, trial.evaluator, name=ch.name).model_dump(mode="json")
        return {"characteristic_id": ch.id, "preview": True, "limits": limits, "excluded_sample_ids": ids}, []
    return _apply(conn, context, ch, user, now, RECALCULATE_COMMAND, reason,
                  lambda trial: trial.evaluator.recalculate(indexes), excluded=ids,
                  extra={"excluded_sample_ids": ids})


def start_baseline(conn: Connection, user: str, payload: bytes, now: str, context: CommandContext) -> Result:
    """A new phase I: fixed limits are dropped, and the next samples set the limits."""
    request = parse(StartBaselineRequest, payload)
    reason = reason_of(request.reason)
    ch = _running(context, request.characteristic_id)
    config, row = _stored_config(conn, ch.id)
    cleared = [key for key in _FIXED if getattr(config, key) is not None]
    changed = (_changed_config(config, dict.fromkeys(cleared)), row) if cleared else None
    return _apply(conn, context, ch, user, now, START_BASELINE_COMMAND, reason,
                  lambda trial: trial.evaluator.start_baseline(), config=changed,
                  extra={"cleared": cleared})


def _reconfigure(conn: Connection, user: str, now: str, context: CommandContext, command: str,
                 request: SetLimitsRequest | RulesRequest, keys: tuple[str, ...]) -> Result:
    """Set the configuration's ``keys`` that ``request`` gives, then the limits again."""
    reason = reason_of(request.reason)
    ch = _running(context, request.characteristic_id)
    given = {key: getattr(request, key) for key in keys if getattr(request, key) is not None}
    if not given:
        raise CommandError(f"give at least one of {', '.join(keys)}")
    lcl, ucl = given.get("lcl"), given.get("ucl")
    if lcl is not None and ucl is not None and lcl >= ucl:
        raise CommandError(f"lcl {lcl:g} must be below ucl {ucl:g}")
    config, row = _stored_config(conn, ch.id)
    return _apply(conn, context, ch, user, now, command, reason, lambda trial: trial.evaluator.reestablish(),
                  config=(_changed_config(config, given), row))


def set_limits(conn: Connection, user: str, payload: bytes, now: str, context: CommandContext) -> Result:
    """Fix any of center, ucl, lcl and sigma; the others still come from the baseline."""
    return _reconfigure(conn, user, now, context, SET_LIMITS_COMMAND, parse(SetLimitsRequest, payload), _FIXED)


def rules(conn: Connection, user: str, payload: bytes, now: str, context: CommandContext) -> Result:
    """The rules of the chart and of its dispersion chart."""
    return _reconfigure(conn, user, now, context, RULES_COMMAND, parse(RulesRequest, payload),
                        ("rules", "dispersion_rules"))


def characteristic(conn: Connection, user: str, payload: bytes, now: str, context: CommandContext) -> Result:
    """Create, update or retire a characteristic, with the keys of the file's tables."""
    request = parse(CharacteristicRequest, payload)
    reason = reason_of(request.reason)
    catalog_host = context.catalog
    if catalog_host is None:
        raise CommandError("this bridge cannot change its characteristics")
    cid = request.characteristic.get("id")
    if isinstance(cid, bool) or not isinstance(cid, int):
        raise CommandError("characteristic.id: give the characteristic's id (an integer)")
    stored = queries.stored_characteristics(conn, [cid]).get(cid)
    running = context.characteristic(cid)
    if running is not None and running.topic is None:
        raise CommandError(f"characteristic {cid} is fed by a Sparkplug metric: change it through the file")
    if request.action == "retire":
        if running is None or stored is None:
            raise CommandError(f"no characteristic {cid}")
        return _retire(conn, context, catalog_host, running, stored, user, now, reason)
    if request.action == "create" and stored is not None:
        state = "retired; update it to bring it back" if stored.retired else "running; update it instead"
        raise CommandError(f"characteristic {cid} exists ({state})")
    if request.action == "update" and stored is None:
        raise CommandError(f"no characteristic {cid}: create it")
    config = _validated(request.characteristic)
    problem = catalog_host.route_problem(config, cid if running is not None else None)
    if problem is not None:
        raise CommandError(problem)
    spec = config.chart_spec()
    fresh = running is None or catalog.reshaped(catalog.plain(stored.config), config)
    assembler = Assembler(spec) if fresh or running is None else Assembler(
        spec, running.assembler.evaluator.state(), list(running.assembler.pending))
    if not fresh:
        try:
            assembler.evaluator.reestablish()
        except ValueError as error:
            raise CommandError(f"characteristic {cid}: {error}") from None
    new = Characteristic(cid, spec, assembler, limit_set=running.limit_set if running is not None else None,
                         name=config.name)
    version = 1 if stored is None else (stored.version or 1) + 1
    queries.save_characteristics(conn, [catalog.row(config, version, stored.imported if stored else None,
                                                    catalog_host.source_topic(config))])
    _follow_subscriptions(conn, context, catalog_host, catalog_host.source_topic(config), running)
    context.touched[cid] = new
    text = context.publish_limits(new, Cause(CHARACTERISTIC_COMMAND, user, reason))
    audit.append(conn, [audit.entry(now, user, f"characteristic.{request.action}", cid,
                                    catalog.plain(stored.config) if stored is not None else None,
                                    catalog.plain(config.model_dump_json()), reason)])
    _replace(context, catalog_host, cid, running, stored, lambda: catalog_host.install(new, config))
    return {"characteristic_id": cid, "action": request.action, "version": version,
            "limits": json.loads(text)}, [Event(limits_topic(cid), text, True)]


def _retire(conn: Connection, context: CommandContext, catalog_host: Catalog, running: Characteristic,
            stored: Any, user: str, now: str, reason: str) -> Result:
    """Stop running a characteristic; its data stays, and its retained limits are cleared."""
    queries.save_characteristics(conn, [{**stored._mapping, "retired": True, "version": (stored.version or 1) + 1}])
    _follow_subscriptions(conn, context, catalog_host, None, running)
    audit.append(conn, [audit.entry(now, user, "characteristic.retire", running.id, catalog.plain(stored.config),
                                    None, reason)])
    _replace(context, catalog_host, running.id, running, stored, lambda: catalog_host.retire(running.id))
    return ({"characteristic_id": running.id, "action": "retire", "version": (stored.version or 1) + 1},
            [Event(limits_topic(running.id), "", True)])


def _replace(context: CommandContext, catalog_host: Catalog, cid: int, running: Characteristic | None,
             stored: Any, change: Callable[[], None]) -> None:
    """Make ``change`` to what runs now; the context can put ``running`` back if the command fails."""
    change()
    if running is None:
        context.undo.append(lambda: catalog_host.retire(cid))
    else:
        old = CharacteristicConfig.model_validate_json(stored.config)
        context.undo.append(lambda: catalog_host.install(running, old))


def _follow_subscriptions(conn: Connection, context: CommandContext, catalog_host: Catalog, added: str | None,
                          leaving: Characteristic | None) -> None:
    """Subscribe to what a changed topic needs and drop what it no longer does, once committed."""
    before, after = catalog_host.topics, catalog_host.filters_after(added, leaving)
    if before != after:
        queries.replace_subscriptions(conn, catalog_host.bridge, after)
        context.change_subscriptions([f for f in after if f not in before], [f for f in before if f not in after])


COMMANDS: dict[str, Callable[[Connection, str, bytes, str, CommandContext], Result]] = {
    CHARACTERISTIC_COMMAND: characteristic,
    RECALCULATE_COMMAND: recalculate,
    START_BASELINE_COMMAND: start_baseline,
    SET_LIMITS_COMMAND: set_limits,
    RULES_COMMAND: rules,
}
