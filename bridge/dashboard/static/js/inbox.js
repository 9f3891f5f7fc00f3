// The violations inbox: open violations first, then recent acknowledgements; single and bulk acknowledgement.
import { openAckDialog } from "./ack_dialog.js";
import { COMMANDS } from "./contract.js";

const MAX_ROWS = 500;        // rows drawn at most (the rest are counted in a note)
const RECENT_ACKED = 200;    // acknowledged violations kept on show, newest acknowledgement first
const MIN_RENDER_MS = 200;   // between two redraws while violations pour in

/** Shapes and words for severities: colour is never the only sign. */
const SEVERITIES = {
  CRITICAL: { icon: "◆", label: "Critical" },
  WARNING: { icon: "▲", label: "Warning" },
  INFO: { icon: "●", label: "Info" },
};

function severityOf(severity) {
  const known = SEVERITIES[severity];
  if (known) return known;
  const text = String(severity ?? "unknown").toLowerCase();
  return { icon: "■", label: text[0].toUpperCase() + text.slice(1) };
}

/** "14:03:27" today, "2026-11-30 14:03" on another day. */
function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const pad = (n) => String(n).padStart(2, "0");
  const clock = `${pad(date.getHours())}:${pad(date.getMinutes())}`;
  if (date.toDateString() === new Date().toDateString()) return `${clock}:${pad(date.getSeconds())}`;
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${clock}`;
}

/** The text of `.violation-state`: "open" or "acknowledged by USER: CODE – comment". */
function stateText(ack) {
  if (!ack) return "open";
  let text = `acknowledged by ${ack.ack_user ?? "?"}: ${ack.reason_code ?? "–"}`;
  if (ack.ack_reason) text += ` – ${ack.ack_reason}`;
  return text;
}

const isAcknowledged = (violation) => violation.ack !== null;  // the store sets ack only once acknowledged

/** Newest acknowledgement first (ISO times compare as text), then the newest violation. */
const byAckTime = (a, b) => String(b.ack.ack_time).localeCompare(String(a.ack.ack_time))
  || b.violation_id - a.violation_id;

/**
 * A violations inbox, for one characteristic (inside its chart view) or for all (the #inbox-view).
 * Redrawn at most once per animation frame (and every MIN_RENDER_MS while busy); rows are kept by violation
 * id and only moved or changed as needed.
 * @param {HTMLElement} root the container to fill
 * @param {{store: import("./store.js").Store, session: import("./session.js").Session,
 *          characteristicId?: number|null}} deps
 * @returns {{show(): void, hide(): void, destroy(): void}}
 */
export function createInbox(root, { store, session, characteristicId = null }) {
  const across = characteristicId === null;
  const make = (tag, className, text) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  };

  const box = make("div", "inbox");
  const bar = make("div", "inbox-bar");
  const title = make(across ? "h2" : "h3", "inbox-title", "Violations");
  title.tabIndex = -1;   // where focus goes when the last open violation was acknowledged
  const selectAllLabel = make("label", "inbox-select-all-label");
  const selectAll = make("input", "inbox-select-all");
  selectAll.type = "checkbox";
  const selectAllText = make("span", "", "Select all open");
  selectAllLabel.append(selectAll, selectAllText);
  const ackSelected = make("button", "inbox-ack-selected", "Acknowledge selected");
  ackSelected.type = "button";
  const message = make("p", "inbox-message");
  message.setAttribute("role", "status");
  bar.append(title, selectAllLabel, ackSelected, message);

  const table = make("table", "inbox-table");
  const head = make("thead");
  const headRow = make("tr");
  const column = (text, label = text) => {
    const th = make("th", "", text);
    th.scope = "col";
    th.setAttribute("aria-label", label);
    return th;
  };
  const headings = ["Severity", ...(across ? ["Characteristic"] : []), "Time", "Rule", "Sample", "State"];
  headRow.append(column("", "Select"), ...headings.map((text) => column(text)), column("", "Action"));
  head.append(headRow);
  const list = make("tbody", "inbox-list");
  table.append(head, list);
  const empty = make("p", "inbox-empty", "No open violations.");
  const more = make("p", "inbox-more");
  box.append(bar, empty, table, more);
  root.append(box);

  /** @type {Map<number, object>} rows drawn, by violation id */
  const rows = new Map();
  /** ids chosen for a bulk acknowledgement (open ones only) */
  const selected = new Set();
  /** characteristic id -> its acknowledged violations, newest acknowledgement first (at most RECENT_ACKED) */
  const acked = new Map();
  const dirty = new Set();
  const waiting = new Set();   // characteristics whose name a drawn row still lacks
  let openIds = [];
  let refocus = null;   // ids just acknowledged: once none is open, focus lost with their rows moves on
  let shown = false, frame = 0, lastRender = -Infinity, canAck = false, generation = 0;

  function recentAcked(cid) {
    const ch = store.get(cid);
    const list = ch ? [...ch.violations.values()].filter(isAcknowledged) : [];
    list.sort(byAckTime);
    if (list.length) acked.set(cid, list.slice(0, RECENT_ACKED)); else acked.delete(cid);
  }

  function buildRow(violation) {
    const tr = make("tr", "violation");
    tr.dataset.violationId = String(violation.violation_id);
    const cell = (className) => {
      const td = make("td", className);
      tr.append(td);
      return td;
    };
    const selectCell = cell("violation-select-cell");
    const checkbox = make("input", "violation-select");
    checkbox.type = "checkbox";
    checkbox.value = String(violation.violation_id);
    checkbox.setAttribute("aria-label", `Select violation ${violation.violation_id}`);
    selectCell.append(checkbox);

    const severity = severityOf(violation.severity);
    const sev = make("span", "violation-severity");
    sev.dataset.severity = String(violation.severity).toLowerCase();
    const sevIcon = make("span", "violation-icon", severity.icon);
    sevIcon.setAttribute("aria-hidden", "true");
    sev.append(sevIcon, ` ${severity.label}`);
    cell("violation-severity-cell").append(sev);

    let name = null;
    if (across) {
      name = make("a", "violation-characteristic");
      name.href = `#/c/${violation.characteristic_id}`;
      cell("violation-characteristic-cell").append(name);
    }
    const time = make("time", "violation-time");
    cell("violation-time-cell").append(time);
    const rule = make("span", "violation-rule", `#${violation.rule_id} ${violation.rule_name}`);
    const ruleCell = cell("violation-rule-cell");
    ruleCell.append(rule);
    if (violation.chart && violation.chart !== "primary") {
      ruleCell.append(make("span", "violation-chart", ` (${violation.chart.toUpperCase()} chart)`));
    }
    cell("violation-sample").textContent = String(violation.sample_id);
    const stateCell = cell("violation-state-cell");
    const stateIcon = make("span", "violation-icon");
    stateIcon.setAttribute("aria-hidden", "true");
    const state = make("span", "violation-state");
    const assignable = make("span", "violation-assignable", " · assignable cause");
    stateCell.append(stateIcon, state, assignable);
    const ack = make("button", "violation-ack", "Acknowledge");
    ack.type = "button";
    ack.setAttribute("aria-label", `Acknowledge violation ${violation.violation_id}`);
    cell("violation-action").append(ack);

    return { tr, checkbox, name, time, state, stateIcon, assignable, ack, shown: {}, generation: 0 };
  }

  function updateRow(row, violation) {
    const { shown: was } = row;
    if (row.name) {
      const ch = store.get(violation.characteristic_id);
      const label = ch?.name || `#${violation.characteristic_id}`;
      if (label !== was.name) row.name.textContent = was.name = label;
      if (!ch?.name) waiting.add(violation.characteristic_id);
    }
    if (!was.time) {
      // the time of its sample: loaded with the chart's history, or the last one (a live violation's)
      const last = store.get(violation.characteristic_id)?.last;
      const sample = store.sample(violation.characteristic_id, violation.sample_id)
        ?? (last?.sample_id === violation.sample_id ? last : null);
      if (sample?.timestamp) {
        row.time.dateTime = sample.timestamp;
        row.time.textContent = was.time = formatTime(sample.timestamp);
      } else {
        row.time.textContent = "–";
      }
    }
    const ack = isAcknowledged(violation) ? violation.ack : null;
    const text = stateText(ack);
    if (text !== was.state) {
      row.state.textContent = was.state = text;
      row.stateIcon.textContent = ack ? "✓ " : "● ";
      row.tr.dataset.acknowledged = String(Boolean(ack));
      row.assignable.hidden = !ack?.assignable_cause;
      if (ack) row.tr.title = `acknowledged ${ack.ack_time ?? ""}`;
    }
    const offer = canAck && !ack;
    if (offer !== was.offer) {
      row.checkbox.hidden = row.ack.hidden = !offer;
      row.checkbox.disabled = row.ack.disabled = !offer;
      was.offer = offer;
    }
    const checked = offer && selected.has(violation.violation_id);
    if (row.checkbox.checked !== checked) row.checkbox.checked = checked;
  }

  function render() {
    frame = 0;
    if (!shown) return;
    const now = performance.now();
    if (now - lastRender < MIN_RENDER_MS) {
      frame = requestAnimationFrame(render);
      return;
    }
    lastRender = now;
    canAck = session.can(COMMANDS.ack);
    for (const cid of dirty) recentAcked(cid);
    dirty.clear();
    waiting.clear();

    const open = store.openViolations(characteristicId);
    openIds = open.map((v) => v.violation_id);
    const openSet = new Set(openIds);
    for (const id of selected) if (!openSet.has(id)) selected.delete(id);

    let recent = across ? [...acked.values()].flat() : (acked.get(characteristicId) ?? []);
    if (across) {
      recent.sort(byAckTime);
      recent = recent.slice(0, RECENT_ACKED);
    }
    const wanted = open.slice(0, MAX_ROWS);
    for (const v of recent) {
      if (wanted.length >= MAX_ROWS) break;
      wanted.push(v);
    }

    generation += 1;
    let cursor = list.firstChild;
    for (const violation of wanted) {
      let row = rows.get(violation.violation_id);
      if (!row) {
        row = buildRow(violation);
        rows.set(violation.violation_id, row);
      }
      row.generation = generation;
      updateRow(row, violation);
      if (row.tr === cursor) cursor = cursor.nextSibling;
      else list.insertBefore(row.tr, cursor);
    }
    for (const [id, row] of rows) {
      if (row.generation !== generation) {
        row.tr.remove();
        rows.delete(id);
      }
    }

    const hiddenOpen = open.length - Math.min(open.length, MAX_ROWS);
    more.hidden = hiddenOpen === 0;
    more.textContent = `${hiddenOpen} more open violations not shown (the oldest).`;
    empty.hidden = open.length > 0;
    if (refocus && refocus.every((id) => !openSet.has(id))) {
      if (document.activeElement === document.body) (list.querySelector("button.violation-ack:not([hidden])") ?? title).focus();
      refocus = null;
    }
    table.hidden = wanted.length === 0;
    title.textContent = open.length ? `Open violations: ${open.length}` : "Violations";
    selectAllText.textContent = `Select all open (${open.length})`;
    renderSelection();
  }

  function renderSelection() {
    selectAllLabel.hidden = ackSelected.hidden = !canAck;
    selectAll.disabled = openIds.length === 0;
    selectAll.checked = openIds.length > 0 && selected.size === openIds.length;
    selectAll.indeterminate = selected.size > 0 && selected.size < openIds.length;
    ackSelected.disabled = selected.size === 0;
    ackSelected.textContent = selected.size ? `Acknowledge selected (${selected.size})` : "Acknowledge selected";
  }

  function schedule() {
    if (shown && !frame) frame = requestAnimationFrame(render);
  }

  function onViolations(event) {
    const { id } = event.detail;
    if (!across && id !== characteristicId) return;
    dirty.add(id);
    schedule();
  }

  // a characteristic's name (with its limits) may arrive after its violations
  function onCharacteristic(event) {
    if (waiting.has(event.detail.id)) schedule();
  }

  async function acknowledge(ids) {
    message.textContent = "";
    const done = await openAckDialog({ store, session, violationIds: ids });
    if (!done) return;
    for (const id of ids) selected.delete(id);
    refocus = ids;
    message.textContent = ids.length === 1 ? `Violation ${ids[0]} acknowledged.` : `${ids.length} violations acknowledged.`;
    schedule();
  }

  list.addEventListener("change", (event) => {
    const box = event.target;
    if (!box.classList.contains("violation-select")) return;
    const id = Number(box.value);
    if (box.checked) selected.add(id); else selected.delete(id);
    renderSelection();
  });
  list.addEventListener("click", (event) => {
    const button = event.target.closest("button.violation-ack");
    if (button) acknowledge([Number(button.closest(".violation").dataset.violationId)]);
  });
  selectAll.addEventListener("change", () => {
    selected.clear();
    if (selectAll.checked) for (const id of openIds) selected.add(id);
    for (const row of rows.values()) {
      const checked = !row.checkbox.disabled && selected.has(Number(row.checkbox.value));
      if (row.checkbox.checked !== checked) row.checkbox.checked = checked;
    }
    renderSelection();
  });
  ackSelected.addEventListener("click", () => {
    if (selected.size) acknowledge([...selected]);
  });
  store.addEventListener("violations", onViolations);
  store.addEventListener("characteristic", onCharacteristic);
  session.addEventListener("role", schedule);   // the commands offered may change with the role learnt

  function show() {
    root.hidden = false;
    if (shown) return;
    shown = true;
    const ids = across ? store.list().map((ch) => ch.id) : [characteristicId];
    for (const id of ids) dirty.add(id);
    lastRender = -Infinity;
    render();
  }

  function hide() {
    root.hidden = true;
    shown = false;
    if (frame) cancelAnimationFrame(frame);
    frame = 0;
  }

  function destroy() {
    hide();
    store.removeEventListener("violations", onViolations);
    store.removeEventListener("characteristic", onCharacteristic);
    session.removeEventListener("role", schedule);
    box.remove();
    rows.clear();
  }

  return { show, hide, destroy };
}
