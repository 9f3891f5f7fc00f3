// Engineer panel of the chart view: points to exclude, preview/confirm recalculation, new baseline, manual limits.
import { num } from "./dom.js";

const TEMPLATE = `
  <h3>Engineer: limits</h3>
  <p class="wf-note" id="wf-note" hidden></p>
  <p class="wf-count">Selected for exclusion: <strong id="wf-selected">0</strong> points
    <span class="wf-hint">(click a point on the chart to select or unselect it)</span></p>
  <div class="wf-row">
    <button type="button" id="wf-select-violations">Select points with open violations</button>
    <button type="button" id="wf-clear">Clear selection</button>
  </div>
  <div class="wf-row">
    <button type="button" id="wf-preview">Preview limits</button>
  </div>
  <p id="wf-proposed" class="wf-proposed" aria-live="polite"></p>
  <label class="wf-field" for="wf-reason">Reason (required)
    <input id="wf-reason" type="text" autocomplete="off" maxlength="500" placeholder="why the limits change">
  </label>
  <div class="wf-row">
    <button type="button" id="wf-confirm">Recalculate limits</button>
    <button type="button" id="wf-start-baseline">Start new baseline…</button>
  </div>
  <div class="wf-row wf-confirm-row" id="wf-baseline-ask" hidden>
    <span>Start a new baseline? The limits are dropped until enough samples are collected.</span>
    <button type="button" id="wf-baseline-confirm">Yes, start baseline</button>
    <button type="button" id="wf-baseline-cancel">Cancel</button>
  </div>
  <form id="wf-set-limits" class="wf-set-limits">
    <fieldset>
      <legend>Set limits by hand (uses the reason above)</legend>
      <label for="wf-center">Centre <input id="wf-center" type="number" step="any" inputmode="decimal"></label>
      <label for="wf-ucl">UCL <input id="wf-ucl" type="number" step="any" inputmode="decimal"></label>
      <label for="wf-lcl">LCL <input id="wf-lcl" type="number" step="any" inputmode="decimal"></label>
      <button type="submit" id="wf-set-limits-submit">Set limits</button>
    </fieldset>
  </form>
  <p id="wf-message" class="wf-message" role="status" aria-live="polite"></p>
`;


/** "CL 10 · UCL 11.5 · LCL 8.5" of a limits payload. */
function limitsText(limits) {
  return `CL ${num(limits?.center)} · UCL ${num(limits?.ucl)} · LCL ${num(limits?.lcl)}`;
}

/**
 * Creates the engineer panel inside root (#workflow); hidden unless session.can("recalculate").
 * @param {HTMLElement} root
 * @param {{store: object, session: object, onSelection: () => void, onProposed: (limits: object|null) => void}} deps
 * @returns {{show(id: number): void, hide(): void, refresh(): void, enabled(): boolean, toggle(sampleId: number): void,
 *   set(ids: Iterable<number>): void, has(sampleId: number): boolean, selected(): number[]}}
 */
export function createWorkflow(root, { store, session, onSelection, onProposed }) {
  if (!root.querySelector("#wf-selected")) root.innerHTML = TEMPLATE;
  const $ = (id) => root.querySelector(`#${id}`);
  const els = {
    note: $("wf-note"), count: $("wf-selected"), proposed: $("wf-proposed"), reason: $("wf-reason"),
    message: $("wf-message"), ask: $("wf-baseline-ask"), form: $("wf-set-limits"),
    center: $("wf-center"), ucl: $("wf-ucl"), lcl: $("wf-lcl"),
  };
  const buttons = [...root.querySelectorAll("button")];
  const selection = new Set();
  const seenProposed = new Set();
  let id = null;
  let busy = false;

  function say(text, kind) {
    els.message.textContent = text;
    els.message.dataset.kind = kind;
  }

  function changed() {
    els.count.textContent = String(selection.size);
    onSelection();
  }

  function reason() {
    const text = els.reason.value.trim();
    if (!text) {
      say("Enter a reason first: every change of limits is recorded with its reason.", "error");
      els.reason.focus();
    }
    return text;
  }

  /** Runs one command with the buttons disabled; the rejection's message goes to #wf-message. */
  async function run(command, body, done) {
    if (busy) return;
    busy = true;
    for (const b of buttons) b.disabled = true;
    say(`Sending ${command}…`, "pending");
    try {
      const data = await session.request(command, { characteristic_id: id, ...body });
      done(data);
    } catch (error) {
      say(`${command} refused: ${error.message}`, "error");
    } finally {
      busy = false;
      for (const b of buttons) b.disabled = false;
    }
  }

  function adoptProposed() {
    const proposed = store.get(id)?.proposed;
    let added = 0;
    for (const sampleId of proposed ?? []) {
      if (seenProposed.has(sampleId)) continue;
      seenProposed.add(sampleId);
      selection.add(sampleId);
      added++;
    }
    const total = proposed?.size ?? 0;
    els.note.hidden = total === 0;
    els.note.textContent = total
      ? `${total} point${total === 1 ? " was" : "s were"} proposed for exclusion by acknowledgements with an `
        + "assignable cause and pre-selected. Review them before recalculating."
      : "";
    if (added) changed();
  }

  $("wf-clear").addEventListener("click", () => { selection.clear(); changed(); });
  $("wf-select-violations").addEventListener("click", () => {
    for (const v of store.openViolations(id)) if (v.sample_id != null) selection.add(v.sample_id);
    changed();
  });

  $("wf-preview").addEventListener("click", () => {
    run("recalculate", { reason: "preview", exclude_sample_ids: [...selection], preview: true }, (data) => {
      els.proposed.textContent = `Proposed (nothing changed yet): ${limitsText(data.limits)}, `
        + `excluding ${data.excluded_sample_ids?.length ?? selection.size} samples.`;
      onProposed(data.limits ?? null);
      say("Preview ready: the proposed limits are drawn dashed on the chart.", "ok");
    });
  });

  $("wf-confirm").addEventListener("click", () => {
    const text = reason();
    if (!text) return;
    run("recalculate", { reason: text, exclude_sample_ids: [...selection] }, (data) => {
      say(`Limits recalculated: ${limitsText(data.limits)} (excluded ${data.excluded_sample_ids?.length ?? 0}).`, "ok");
      selection.clear();
      els.proposed.textContent = "";
      onProposed(null);
      changed();
    });
  });

  $("wf-start-baseline").addEventListener("click", () => {
    if (!reason()) return;
    els.ask.hidden = false;
    $("wf-baseline-confirm").focus();
  });
  $("wf-baseline-cancel").addEventListener("click", () => { els.ask.hidden = true; $("wf-start-baseline").focus(); });
  $("wf-baseline-confirm").addEventListener("click", () => {
    const text = reason();
    els.ask.hidden = true;
    if (!text) return;
    run("start_baseline", { reason: text }, () => say("New baseline started: limits follow once it is complete.", "ok"));
  });

  els.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = {};
    for (const key of ["center", "ucl", "lcl"]) {
      const raw = els[key].value.trim();
      if (raw === "") continue;
      const value = Number(raw);
      if (!Number.isFinite(value)) { say(`${key.toUpperCase()} is not a number.`, "error"); return; }
      body[key] = value;
    }
    if (!Object.keys(body).length) { say("Enter at least one of centre, UCL, LCL.", "error"); return; }
    const { center, ucl, lcl } = body;
    if ((ucl != null && lcl != null && ucl <= lcl) || (center != null && ucl != null && center >= ucl)
        || (center != null && lcl != null && center <= lcl)) {
      say("The limits must satisfy LCL < centre < UCL.", "error");
      return;
    }
    const text = reason();
    if (!text) return;
    run("set_limits", { reason: text, ...body }, (data) => say(`Limits set: ${limitsText(data.limits ?? body)}.`, "ok"));
  });

  return {
    show(characteristicId) {
      if (id !== characteristicId) {
        selection.clear();
        seenProposed.clear();
        els.proposed.textContent = "";
        els.ask.hidden = true;
        say("", "none");
      }
      id = characteristicId;
      this.refresh();
      els.count.textContent = String(selection.size);
    },
    hide() {
      root.hidden = true;
    },
    /** Re-reads the permission and the proposed sample ids (after history, acknowledgements, reconnects). */
    refresh() {
      root.hidden = !session.can("recalculate");
      if (id != null) adoptProposed();
    },
    enabled: () => !root.hidden,
    toggle(sampleId) {
      if (!selection.delete(sampleId)) selection.add(sampleId);
      changed();
    },
    set(ids) {
      selection.clear();
      for (const sampleId of ids) selection.add(sampleId);
      changed();
    },
    has: (sampleId) => selection.has(sampleId),
    selected: () => [...selection].sort((a, b) => a - b),
  };
}
