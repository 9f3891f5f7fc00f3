// What the page knows of each characteristic: retained limits and status, samples, violations and their acks.
import { MAX_HISTORY, TOPICS } from "./contract.js";

export const MAX_POINTS = 20000;          // samples kept per characteristic whose chart was opened
const MAX_ACKNOWLEDGED = 200;             // acknowledged violations kept per characteristic, newest
const HISTORY_CONCURRENCY = 2;            // history requests in flight (the bridge's per-user budget is 10/s)
const KINDS = new Map(Object.entries(TOPICS).map(([kind, template]) => [template.split("/").at(-1), kind]));
const PREFIX = TOPICS.sample.split("{id}")[0];

/** A characteristic's state; samples are kept only once its history was asked for (its chart opened). */
function newCharacteristic(id) {
  return { id, name: "", limits: null, status: null, samples: [], violations: new Map(), limitSets: [],
           revision: null, proposed: new Set(), historyLoaded: false, last: null, open: 0, _acks: new Map() };
}

/** The limits in force now (nulls during a baseline). */
function currentLimits(ch) {
  const current = ch.limits;
  return current?.phase === "monitoring"
    ? { center: current.center, ucl: current.ucl, lcl: current.lcl, sigma: current.sigma }
    : { center: null, ucl: null, lcl: null, sigma: null };
}

/** The limit set the latest baseline's samples are drawn against: its latest recalculation (phase I revised,
 *  as the published charts draw it), with the baseline's own version; null when there is none. */
function revision(limitSets) {
  const base = limitSets.findLastIndex((set) => set.cause === "baseline");
  const later = limitSets.slice(base + 1);
  if (base < 0 || !later.length || !later.every((set) => set.cause === "recalculate")) return null;
  return { of: limitSets[base].version, set: later.at(-1) };
}

/** The limits that judged a sample: its own (variable n, EWMA), its limit set's, or those in force. A sample
 *  of a baseline not yet judged is drawn against the limits in force (``judged: false``); one judged by a
 *  baseline's limits, against their latest recalculation. */
function limitsOf(ch, sample) {
  const current = ch.limits;
  if (sample.in_control == null) return { ...currentLimits(ch), judged: false };
  if (sample.ucl != null && sample.lcl != null) {
    const center = current?.center ?? (sample.ucl + sample.lcl) / 2;
    return { center, ucl: sample.ucl, lcl: sample.lcl, sigma: (sample.ucl - center) / 3 };
  }
  const revised = ch.revision && ch.revision.of === sample.limit_set ? ch.revision.set : null;
  const set = revised ?? (sample.limit_set != null ? ch.limitSets.find((s) => s.version === sample.limit_set) : null);
  if (set && set.ucl != null && set.center != null) {
    // a limit set keeps the process sigma; the zones are a third of the distance to the UCL at the nominal n
    return { center: set.center, ucl: set.ucl, lcl: set.lcl, sigma: (set.ucl - set.center) / 3 };
  }
  return currentLimits(ch);
}

/** Events: "characteristic", "samples", "violations", "limits", each with detail {id} (samples: also sample). */
export class Store extends EventTarget {
  constructor() {
    super();
    /** @type {Map<number, object>} */ this.characteristics = new Map();
    this._loading = new Map();
    this._queue = [];
    this._running = 0;
    this.openCount = 0;  // unacknowledged violations held, of every characteristic
  }

  /** The characteristic ``id``, or undefined. */
  get(id) { return this.characteristics.get(id); }

  /** Every characteristic, by id. */
  list() { return [...this.characteristics.values()].sort((a, b) => a.id - b.id); }

  /** Unacknowledged violations, newest first: of one characteristic, or of all when ``id`` is null. */
  openViolations(id = null) {
    return this.violations(id).filter((v) => !v.ack);
  }

  /** Every violation known, newest first: of one characteristic, or of all when ``id`` is null. */
  violations(id = null) {
    const chars = id === null ? [...this.characteristics.values()] : [this.get(id)].filter(Boolean);
    return chars.flatMap((ch) => [...ch.violations.values()]).sort((a, b) => b.violation_id - a.violation_id);
  }

  /** The sample ``sampleId`` of characteristic ``id`` if it is loaded. */
  sample(id, sampleId) {
    const samples = this.get(id)?.samples ?? [];
    let lo = 0, hi = samples.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1, at = samples[mid].sample_id;
      if (at === sampleId) return samples[mid];
      if (at < sampleId) lo = mid + 1; else hi = mid - 1;
    }
    return undefined;
  }

  /** Take one MQTT event (``spc/<id>/<kind>``); anything else, or a payload that is not JSON, is ignored. */
  apply(name, text) {
    if (!name.startsWith(PREFIX)) return;
    const [idText, kindLevel] = name.slice(PREFIX.length).split("/");
    const kind = KINDS.get(kindLevel);
    const id = Number(idText);
    if (!kind || !Number.isInteger(id)) return;
    let payload;
    try { payload = JSON.parse(text); } catch { return; }
    if (payload === null || typeof payload !== "object") return;
    const ch = this.characteristics.get(id) ?? this._add(id);
    this[`_${kind}`](ch, payload);
  }

  /** Ask for the history of ``id`` once (again with ``force``); resolves when it is loaded. */
  ensureHistory(id, session, { force = false } = {}) {
    const ch = this.get(id) ?? this._add(id);
    if (this._loading.has(id)) return this._loading.get(id);
    if (ch.historyLoaded && !force) return Promise.resolve(ch);
    this._session = session;  // to ask again when new limits come (their limit set's cause is in the history)
    const loading = new Promise((resolve, reject) => {
      this._queue.push(() => session.request("history", { characteristic_id: id, limit: MAX_HISTORY })
        .then((data) => { session.learn(data); this.loadHistory(id, data); resolve(ch); }, reject));
      this._pump();
    }).finally(() => this._loading.delete(id));
    this._loading.set(id, loading);
    return loading;
  }

  /** Fetch again what may have been missed: the history of every opened chart, and of every characteristic
   *  whose status counts more open violations than the page holds (after a reconnect: none passes silently). */
  refresh(session, { all = false } = {}) {
    const jobs = [];
    for (const ch of this.characteristics.values()) {
      if ((all && ch.historyLoaded) || (ch.status?.open_violations ?? 0) > ch.open) {
        jobs.push(this.ensureHistory(ch.id, session, { force: true }).catch(() => null));
      }
    }
    return Promise.all(jobs);
  }

  /** Replace what is known of ``id`` by a history answer; live samples newer than it are kept. */
  loadHistory(id, data) {
    const ch = this.get(id) ?? this._add(id);
    ch.limitSets = data.limit_sets ?? [];
    ch.revision = revision(ch.limitSets);
    ch.proposed = new Set(data.proposed_sample_ids ?? []);
    if (data.limits) this._limits(ch, data.limits, false);
    const history = (data.samples ?? []).map((s) => ({ ...s, lim: limitsOf(ch, s) }));
    const newest = history.length ? history.at(-1).sample_id : 0;
    ch.samples = [...history, ...ch.samples.filter((s) => s.sample_id > newest)].slice(-MAX_POINTS);
    ch.last = ch.samples.at(-1) ?? ch.last;
    for (const v of [...(data.violations ?? []), ...(data.open_violations ?? [])]) {
      const known = ch.violations.get(v.violation_id);
      ch.violations.set(v.violation_id, { ...v, ack: known?.ack ?? v.ack ?? ch._acks.get(v.violation_id) ?? null });
    }
    ch.historyLoaded = true;
    this._settle(ch);
    this._emit("samples", { id, sample: null });
    this._emit("violations", { id });
    this._emit("limits", { id });
    this._emit("characteristic", { id });
  }

  _add(id) {
    const ch = newCharacteristic(id);
    this.characteristics.set(id, ch);
    return ch;
  }

  _pump() {
    while (this._running < HISTORY_CONCURRENCY && this._queue.length) {
      this._running++;
      this._queue.shift()().finally(() => { this._running--; this._pump(); });
    }
  }

  _limits(ch, limits, emit = true) {
    const newSet = ch.historyLoaded && limits.limit_set?.version !== ch.limits?.limit_set?.version;
    ch.limits = limits;
    if (limits.name) ch.name = limits.name;
    const now = currentLimits(ch);
    for (const sample of ch.samples) if (sample.lim.judged === false) sample.lim = { ...now, judged: false };
    if (emit) {
      this._emit("limits", { id: ch.id });
      this._emit("characteristic", { id: ch.id });
      if (newSet && this._session) this.ensureHistory(ch.id, this._session, { force: true }).catch(() => null);
    }
  }

  _status(ch, status) {
    ch.status = status;
    this._emit("characteristic", { id: ch.id });
  }

  _sample(ch, sample) {
    sample.lim = limitsOf(ch, sample);
    if (ch.historyLoaded) {
      const samples = ch.samples;
      if (samples.length && samples.at(-1).sample_id >= sample.sample_id) {
        if (this.sample(ch.id, sample.sample_id)) return;  // delivered again (QoS 1)
        samples.push(sample);
        samples.sort((a, b) => a.sample_id - b.sample_id);
      } else samples.push(sample);
      if (samples.length > MAX_POINTS) samples.splice(0, samples.length - MAX_POINTS);
    }
    if (!ch.last || sample.sample_id >= ch.last.sample_id) ch.last = sample;
    this._emit("samples", { id: ch.id, sample });
    this._emit("characteristic", { id: ch.id });
  }

  _violation(ch, violation) {
    const known = ch.violations.get(violation.violation_id);
    ch.violations.set(violation.violation_id,
                      { ...violation, ack: known?.ack ?? ch._acks.get(violation.violation_id) ?? null });
    ch._acks.delete(violation.violation_id);
    this._settle(ch);
    this._emit("violations", { id: ch.id });
    this._emit("characteristic", { id: ch.id });
  }

  _ack(ch, ack) {
    if (!ack.acknowledged) return;
    const violation = ch.violations.get(ack.violation_id);
    if (violation) violation.ack = ack;
    else {
      ch._acks.set(ack.violation_id, ack);  // its violation may come with a history answer
      if (ch._acks.size > MAX_ACKNOWLEDGED) ch._acks.delete(ch._acks.keys().next().value);
    }
    if (ch.proposed && ack.assignable_cause) {
      const sampleId = violation?.sample_id;
      if (sampleId != null) ch.proposed.add(sampleId);
    }
    this._settle(ch);
    this._emit("violations", { id: ch.id });
    this._emit("characteristic", { id: ch.id });
  }

  /** Keep every open violation and the newest acknowledged ones; count the open ones. */
  _settle(ch) {
    const acknowledged = [...ch.violations.values()].filter((v) => v.ack).map((v) => v.violation_id);
    const open = ch.violations.size - acknowledged.length;
    this.openCount += open - ch.open;
    ch.open = open;
    if (acknowledged.length <= MAX_ACKNOWLEDGED) return;
    acknowledged.sort((a, b) => a - b);
    for (const old of acknowledged.slice(0, acknowledged.length - MAX_ACKNOWLEDGED)) ch.violations.delete(old);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
