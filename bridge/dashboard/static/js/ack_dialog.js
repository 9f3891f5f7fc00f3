// The acknowledgement dialog: a reason code, a comment and the assignable-cause flag for one or many violations.
import { COMMANDS, DEFAULT_REASON_CODES, MAX_ACK_IDS, MAX_REASON_CHARS } from "./contract.js";

/**
 * A human label for a reason code: "tool_wear" -> "Tool wear".
 * @param {string} code
 * @returns {string}
 */
export function reasonLabel(code) {
  const words = code.replace(/_+/g, " ").trim();
  return words ? words[0].toUpperCase() + words.slice(1) : code;
}

let parts = null;      // the dialog's elements, made on first use
let pending = null;    // {resolve, ids, done: Set<number>, store, session, sending} of the dialog open now (a request
                       // in flight when it is cancelled still completes)

function build() {
  const dialog = document.createElement("dialog");
  dialog.id = "ack-dialog";
  dialog.setAttribute("aria-labelledby", "ack-title");
  dialog.innerHTML = `
    <form method="dialog" class="ack-form" novalidate>
      <h2 id="ack-title"></h2>
      <ul class="ack-summary"></ul>
      <label for="ack-code">Reason</label>
      <select id="ack-code" required></select>
      <label for="ack-comment">Comment <span class="ack-hint">(optional; Ctrl+Enter sends)</span></label>
      <textarea id="ack-comment" rows="3" maxlength="${MAX_REASON_CHARS}"></textarea>
      <label class="ack-check"><input id="ack-assignable" type="checkbox">
        <span>Assignable cause: propose the sample(s) for exclusion at the next recalculation</span></label>
      <p id="ack-error" role="alert"></p>
      <p id="ack-progress" role="status"></p>
      <div class="ack-buttons">
        <button type="button" id="ack-cancel">Cancel</button>
        <button type="submit" id="ack-confirm">Acknowledge</button>
      </div>
    </form>`;
  document.body.append(dialog);
  const $ = (selector) => dialog.querySelector(selector);
  const code = $("#ack-code");
  const elements = {
    dialog, code, form: $("form"), title: $("#ack-title"), summary: $(".ack-summary"),
    comment: $("#ack-comment"), assignable: $("#ack-assignable"), error: $("#ack-error"),
    progress: $("#ack-progress"), confirm: $("#ack-confirm"), cancel: $("#ack-cancel"),
  };
  elements.form.addEventListener("submit", (event) => { event.preventDefault(); confirm(); });
  elements.cancel.addEventListener("click", () => finish(false));
  dialog.addEventListener("cancel", (event) => { event.preventDefault(); finish(false); });  // Escape
  dialog.addEventListener("close", () => finish(false));   // closed otherwise (a second quick Escape)
  dialog.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.isComposing || event.target.tagName === "BUTTON") return;
    if (event.target === elements.comment && !(event.ctrlKey || event.metaKey)) return;  // a new line
    event.preventDefault();
    confirm();
  });
  return elements;
}

/** Closes the dialog, settling the promise of whoever opened it. */
function finish(result) {
  if (!pending) return;
  const { resolve } = pending;
  pending = null;
  parts.dialog.close();
  resolve(result);
}

/** Sends the acknowledgements not yet made, MAX_ACK_IDS at a time; stays open and says why on failure. */
async function confirm() {
  const open = pending;
  if (!open || open.sending) return;
  const reasonCode = parts.code.value;
  if (!reasonCode) {
    parts.error.textContent = "Choose a reason.";
    parts.code.focus();
    return;
  }
  const body = {
    reason_code: reasonCode, reason: parts.comment.value.trim(), assignable_cause: parts.assignable.checked,
  };
  // the bridge refuses a request naming one already acknowledged (by someone else meanwhile): leave those out
  const acknowledged = acknowledgedIds(open.store);
  const todo = open.ids.filter((id) => !open.done.has(id) && !acknowledged.has(id));
  open.sending = true;
  parts.error.textContent = "";
  parts.confirm.disabled = true;
  parts.progress.textContent = "Sending…";
  try {
    for (let start = 0; start < todo.length; start += MAX_ACK_IDS) {
      const chunk = todo.slice(start, start + MAX_ACK_IDS);
      if (todo.length > MAX_ACK_IDS) parts.progress.textContent = `Sending… ${start} of ${todo.length}`;
      await open.session.request(COMMANDS.ack, { violation_ids: chunk, ...body });
      for (const id of chunk) open.done.add(id);
    }
  } catch (error) {
    open.sending = false;
    if (pending !== open) return;
    parts.confirm.disabled = false;
    parts.progress.textContent = open.done.size
      ? `${open.done.size} of ${open.ids.length} acknowledged; confirm again to retry the rest.` : "";
    parts.error.textContent = error?.message || String(error);
    return;
  }
  open.sending = false;
  if (pending === open) finish(true);
}

/** The reason codes offered: the bridge's own once a history answer named them, else the defaults. */
function fillCodes(codes) {
  const select = parts.code;
  if (select.options.length === codes.length && codes.every((code, i) => select.options[i].value === code)) return;
  const chosen = select.value;
  select.replaceChildren(...codes.map((code) => new Option(reasonLabel(code), code)));
  if (codes.includes(chosen)) select.value = chosen;
}

function describe(store, ids) {
  parts.summary.replaceChildren();
  const shown = ids.slice(0, 5);
  for (const id of shown) {
    const item = document.createElement("li");
    const violation = findViolation(store, id);
    if (violation) {
      const ch = store.get(violation.characteristic_id);
      item.textContent = `${ch?.name || `#${violation.characteristic_id}`}: rule ${violation.rule_id} `
        + `${violation.rule_name} (${String(violation.severity).toLowerCase()}), sample ${violation.sample_id}`;
    } else {
      item.textContent = `violation ${id}`;
    }
    parts.summary.append(item);
  }
  if (ids.length > shown.length) {
    const more = document.createElement("li");
    more.textContent = `and ${ids.length - shown.length} more`;
    parts.summary.append(more);
  }
}

/** The ids of the violations the store holds as acknowledged. */
function acknowledgedIds(store) {
  const ids = new Set();
  for (const ch of store.characteristics.values()) {
    for (const violation of ch.violations.values()) if (violation.ack) ids.add(violation.violation_id);
  }
  return ids;
}

function findViolation(store, id) {
  for (const ch of store.characteristics.values()) {
    const violation = ch.violations.get(id);
    if (violation) return violation;
  }
  return undefined;
}

/**
 * Asks for the reason of acknowledging `violationIds` and sends it (in requests of at most MAX_ACK_IDS ids).
 * Resolves true once every acknowledgement was accepted, false when the user cancels. A failure keeps the
 * dialog open with the bridge's error text.
 * @param {{store: import("./store.js").Store, session: import("./session.js").Session, violationIds: number[]}} args
 * @returns {Promise<boolean>}
 */
export function openAckDialog({ store, session, violationIds }) {
  parts ??= build();
  finish(false);   // a dialog still open for other violations gives way
  const ids = [...new Set(violationIds)];
  return new Promise((resolve) => {
    pending = { resolve, ids, done: new Set(), store, session, sending: false };
    parts.title.textContent = ids.length === 1 ? "Acknowledge violation" : `Acknowledge ${ids.length} violations`;
    fillCodes(session.reasonCodes ?? DEFAULT_REASON_CODES);
    describe(store, ids);
    parts.comment.value = "";
    parts.assignable.checked = false;
    parts.error.textContent = "";
    parts.progress.textContent = "";
    parts.confirm.disabled = false;
    parts.confirm.textContent = ids.length === 1 ? "Acknowledge" : `Acknowledge ${ids.length}`;
    parts.dialog.showModal();
    parts.code.focus();
  });
}
