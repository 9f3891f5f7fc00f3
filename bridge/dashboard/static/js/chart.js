// Chart view: control chart and dispersion chart (uPlot) with zones, stepped limits, violations, zoom and panels.
import { createInbox } from "./inbox.js";
import { createCapability } from "./capability.js";
import { createWorkflow } from "./workflow.js";
import { COLOURS, LEGEND, ZONE_TEXT, Z_C, Z_NONE, Z_OUT, addShape, steppedAtChanges, zoneOf } from "./chart_marks.js";
import { syntheticLimits, syntheticSamples } from "./chart_synthetic.js";
import { num } from "./dom.js";

// Chart names by limits.chart (the bridge sends the primary chart's id: "i", "xbar", ...; configuration names too).
const CHART_NAMES = {
  i: "Individuals and moving range (I-MR)", imr: "Individuals and moving range (I-MR)", xbar: "X̄ chart",
  xbar_r: "X̄ and R", xbar_s: "X̄ and S", p: "p (proportion defective)", np: "np (number defective)",
  c: "c (defects)", u: "u (defects per unit)", cusum: "CUSUM", ewma: "EWMA",
};
const Y_LABELS = { i: "Individual value", imr: "Individual value", xbar: "Subgroup mean X̄", xbar_r: "Subgroup mean X̄",
  xbar_s: "Subgroup mean X̄", p: "Proportion p", np: "Number defective np", c: "Defects c", u: "Defects per unit u" };
const DISPERSION_OF_CHART = { i: "mr", imr: "mr", xbar_r: "r", xbar_s: "s" };
const DISPERSION_FIELD = { mr: "mr", r: "range", s: "s" };
const DISPERSION_NAME = { mr: "Moving range", r: "Range", s: "Standard deviation" };

// Series of the main chart, always in this order (unused ones are hidden).
const S_Y = 1, S_Y2 = 2, S_CL = 3, S_UCL = 4, S_LCL = 5, S_P1 = 6, S_M1 = 7, S_P2 = 8, S_M2 = 9,
  S_USL = 10, S_LSL = 11, S_PCL = 12, S_PUCL = 13, S_PLCL = 14;
const MAIN_SERIES = 15;
// Series of the dispersion chart.
const D_Y = 1, D_CL = 2, D_UCL = 3, D_LCL = 4;

const AXIS_COLOUR = "#212121";  // the plots are on white (chart.css), whatever the page's theme
const AXIS_FONT = "bold 18px system-ui, sans-serif";
const LABEL_FONT = "bold 20px system-ui, sans-serif";
const X_INCRS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000];
const WHEEL_FACTOR = 0.8;
const CLICK_SLOP_PX = 5;
const DENSE_PX = 2.5;          // below this spacing of samples (CSS px) zone C points are not marked
const LIVE_MS_PER_POINT = 0.05; // live redraws of big charts at most every n * this ms (10,000 points: 500 ms)
const PICK_PX = 28;
const SYNC_KEY = "spc-chart";

/** Index of sampleId in ascending ids, or -1. */
function indexOf(ids, sampleId) {
  let lo = 0, hi = ids.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const at = ids[mid];
    if (at === sampleId) return mid;
    if (at < sampleId) lo = mid + 1; else hi = mid - 1;
  }
  return -1;
}


const TEMPLATE = `
  <header class="chart-head">
    <h2 id="chart-title">Chart</h2>
    <p id="chart-status" class="chart-status" role="status"></p>
  </header>
  <div class="chart-tools">
    <button type="button" id="chart-reset-zoom" class="chart-reset-zoom">Reset zoom</button>
    <span class="chart-hint">Drag across the chart or use the mouse wheel to zoom; with the chart focused:
      ← → pan, + − zoom, 0 resets.</span>
  </div>
  <div class="chart-layout">
    <div class="chart-plots">
      <div id="chart-main" class="chart-box" tabindex="0" aria-label="Control chart"></div>
      <div id="chart-legend" class="chart-legend"></div>
      <div id="chart-dispersion" class="chart-box" tabindex="0" aria-label="Dispersion chart"></div>
    </div>
    <aside class="chart-side">
      <section id="capability" class="chart-panel" aria-label="Capability"></section>
      <section id="workflow" class="chart-panel" aria-label="Engineer workflow" hidden></section>
    </aside>
  </div>
  <section id="chart-violations" class="chart-panel" aria-label="Violations of this characteristic"></section>
`;

/**
 * Creates the chart view of one characteristic inside root (#chart-view).
 * @param {HTMLElement} root
 * @param {{store: object, session: object, navigate: (path: string) => void}} deps
 * @returns {{show(id: number|string): void, hide(): void}}
 */
export function createChartView(root, { store, session, navigate }) {
  if (!root.querySelector("#chart-main")) root.insertAdjacentHTML("beforeend", TEMPLATE);
  const find = (id, tag = "div") => {
    let el = root.querySelector(`#${id}`);
    if (!el) {
      el = document.createElement(tag);
      el.id = id;
      root.append(el);
    }
    return el;
  };
  const els = {
    title: find("chart-title", "h2"), status: find("chart-status", "p"), main: find("chart-main"),
    legend: find("chart-legend"), disp: find("chart-dispersion"), capability: find("capability", "section"),
    workflow: find("workflow", "section"), violations: find("chart-violations", "section"),
    reset: find("chart-reset-zoom", "button"),
  };
  els.legend.innerHTML = LEGEND.map(([icon, text]) => `<span class="chart-legend-item">${icon}${text}</span>`).join("");
  const capability = createCapability(els.capability);
  const workflow = createWorkflow(els.workflow, {
    store, session,
    onSelection: () => schedule("redraw"),
    onProposed: (limits) => { proposed = limits; schedule("full"); },
  });

  let id = null;            // characteristic shown, null while hidden
  let inbox = null;
  let mainPlot = null;
  let dispPlot = null;
  let layoutKey = "";       // statistic, dispersion, preview, spec limits: a change rebuilds the plots
  let model = null;         // the data arrays drawn (see buildModel)
  let proposed = null;      // limits payload of the last preview, drawn dashed
  let zoom = null;          // {min, max} on x while the user zoomed, else null (follow all samples)
  let syncing = false;
  let pending = { full: false, append: false, redraw: false, title: false, capability: false };
  let frame = 0;
  let timer = 0;            // a deferred drawing of live samples (see appendWait)
  let lastData = 0;         // when samples were last drawn
  let boxWidth = 0;         // width of #chart-main, from the ResizeObserver
  let renderMs = null;
  let measure = null;       // {t0, resolve, left} of a render timed up to the first draw of each plot

  const current = () => (id == null ? undefined : store.get(id));

  // ---------- data model ----------

  function statisticOf(limits) {
    if (limits?.statistic === "cusum" || limits?.chart === "cusum") return "cusum";
    if (limits?.statistic === "ewma" || limits?.chart === "ewma") return "ewma";
    return "value";
  }

  /** The dispersion chart ("mr", "r", "s") or null; an X̄ chart without dispersion limits yet tells by its samples. */
  function dispersionOf(limits, samples) {
    const known = limits?.dispersion?.chart ?? DISPERSION_OF_CHART[limits?.chart];
    if (known || limits?.chart !== "xbar") return known ?? null;
    const last = samples?.at(-1);
    return last?.range == null && last?.s != null ? "s" : "r";
  }

  function emptyModel(ch) {
    const limits = ch?.limits ?? null;
    const cols = [];
    for (let k = 0; k < MAIN_SERIES; k++) cols.push([]);
    return {
      stat: statisticOf(limits), dispKind: dispersionOf(limits, ch?.samples), limits,
      ids: [], zone: [], zone2: [], dzone: [], samples: [],
      main: cols, disp: [cols[0], [], [], [], []],
    };
  }

  /** Appends one sample to the model's arrays (the hot path of live updates: no allocation per series). */
  function appendSample(m, s) {
    const i = m.ids.length;
    const L = m.limits;
    const lim = s.lim ?? {};
    const c = m.main;
    let y = null, y2 = null, cl = null, ucl = null, lcl = null, sigma = null;
    if (m.stat === "cusum") {
      y = s.cusum_upper ?? null;
      y2 = s.cusum_lower == null ? null : -s.cusum_lower;
      cl = 0;
      ucl = lim.ucl ?? L?.ucl ?? null;
      lcl = lim.lcl ?? L?.lcl ?? null;
      if (lcl != null && lcl > 0) lcl = -lcl;
    } else if (m.stat === "ewma") {
      y = s.ewma ?? null;
      y2 = s.value ?? null;
      cl = L?.center ?? lim.center ?? null;
      ucl = s.ucl ?? lim.ucl ?? L?.ucl ?? null;
      lcl = s.lcl ?? lim.lcl ?? L?.lcl ?? null;
    } else {
      y = s.value ?? null;
      cl = lim.center ?? null;
      ucl = lim.ucl ?? null;
      lcl = lim.lcl ?? null;
      // the zone width the limits imply (3 zones up to UCL); lim.sigma only when there is no UCL
      sigma = ucl != null && cl != null ? (ucl - cl) / 3 : lim.sigma ?? null;
    }
    const zoned = sigma != null && cl != null;
    c[0].push(i);
    c[S_Y].push(y);
    c[S_Y2].push(y2);
    c[S_CL].push(cl);
    c[S_UCL].push(ucl);
    c[S_LCL].push(lcl);
    // zone lines never beyond the limits (an LCL clamped at 0, for instance)
    const hi = ucl ?? Infinity, lo = lcl ?? -Infinity;
    c[S_P1].push(zoned ? Math.min(hi, cl + sigma) : null);
    c[S_M1].push(zoned ? Math.max(lo, cl - sigma) : null);
    c[S_P2].push(zoned ? Math.min(hi, cl + 2 * sigma) : null);
    c[S_M2].push(zoned ? Math.max(lo, cl - 2 * sigma) : null);
    const cap = m.stat === "cusum" ? null : L?.capability;
    c[S_USL].push(cap?.usl ?? null);
    c[S_LSL].push(cap?.lsl ?? null);
    c[S_PCL].push(proposed?.center ?? null);
    c[S_PUCL].push(proposed?.ucl ?? null);
    c[S_PLCL].push(proposed?.lcl ?? null);
    if (m.stat === "cusum") {
      m.zone.push(zoneOf(null, y, cl, ucl, null, null));
      m.zone2.push(zoneOf(null, y2, cl, null, lcl, null));
    } else {
      m.zone.push(zoneOf(m.stat === "value" ? s.zone : null, y, cl, ucl, lcl, sigma));
      m.zone2.push(Z_NONE);
    }
    const D = m.limits?.dispersion;
    const dv = m.dispKind ? s[DISPERSION_FIELD[m.dispKind]] ?? null : null;
    m.disp[D_Y].push(dv);
    m.disp[D_CL].push(D?.center ?? null);
    m.disp[D_UCL].push(D?.ucl ?? null);
    m.disp[D_LCL].push(D?.lcl ?? null);
    m.dzone.push(dv == null ? Z_NONE : zoneOf(null, dv, null, D?.ucl ?? null, D?.lcl ?? null, null));
    m.ids.push(s.sample_id);
    m.samples.push(s);
  }

  function buildModel(ch) {
    const m = emptyModel(ch);
    for (const s of ch?.samples ?? []) appendSample(m, s);
    m.markers = buildMarkers(ch, m);
    return m;
  }

  /** Violations of the characteristic placed on their samples: {main: [...], disp: [...], bySample}. */
  function buildMarkers(ch, m) {
    const main = [], disp = [], bySample = new Map();
    for (const v of ch?.violations?.values() ?? []) {
      const i = indexOf(m.ids, v.sample_id);
      if (i < 0) continue;
      const onMain = m.dispKind == null || v.chart !== m.dispKind;
      (onMain ? main : disp).push({ i, v });
      const list = bySample.get(v.sample_id);
      if (list) list.push(v); else bySample.set(v.sample_id, [v]);
    }
    main.sort((a, b) => a.i - b.i);
    disp.sort((a, b) => a.i - b.i);
    return { main, disp, bySample };
  }

  // ---------- drawing ----------

  function visibleRange(u) {
    const n = model.ids.length;
    return [Math.max(0, Math.floor(u.scales.x.min ?? 0)), Math.min(n - 1, Math.ceil(u.scales.x.max ?? n - 1))];
  }

  /** CSS pixels between two neighbouring samples at the current zoom. */
  function spacing(u, i0, i1) {
    return u.bbox.width / Math.max(1, i1 - i0 + 1) / uPlot.pxRatio;
  }

  /** Draws points (one path per shape), exclusion crosses, violation rings and line labels in one pass. */
  function drawOverlay(u, isMain) {
    if (!model || !model.ids.length) return;
    const ctx = u.ctx;
    const { left, top, width, height } = u.bbox;
    const ratio = uPlot.pxRatio;
    const [i0, i1] = visibleRange(u);
    const gap = spacing(u, i0, i1);
    const r = Math.min(7, Math.max(2, gap * 0.35)) * ratio;
    // so dense that circles merge into the line: mark only the points outside zone C (the informative ones)
    const skipPlain = gap < DENSE_PX;
    const ys = isMain ? model.main[S_Y] : model.disp[D_Y];
    const y2s = isMain && model.stat === "cusum" ? model.main[S_Y2] : null;
    const zones = isMain ? model.zone : model.dzone;
    const zones2 = model.zone2;
    const paths = [new Path2D(), new Path2D(), new Path2D(), new Path2D(), new Path2D()];
    const crosses = new Path2D();
    const wf = workflow.enabled();
    const ids = model.ids;
    ctx.save();
    ctx.beginPath();
    ctx.rect(left - 6 * ratio, top - 6 * ratio, width + 12 * ratio, height + 12 * ratio);
    ctx.clip();
    for (let i = i0; i <= i1; i++) {
      const y = ys[i];
      if (y == null && (y2s == null || y2s[i] == null)) continue;
      const px = u.valToPos(i, "x", true);
      const code = zones[i];
      const rr = code === Z_OUT ? Math.max(r, 4 * ratio) : code > Z_C ? Math.max(r, 3 * ratio) : r;
      if (y != null && !(skipPlain && code <= Z_C)) addShape(paths[code], code, px, u.valToPos(y, "y", true), rr);
      if (y2s && y2s[i] != null) {
        const code2 = zones2[i];
        if (!(skipPlain && code2 <= Z_C)) {
          const r2 = code2 === Z_OUT ? Math.max(r, 4 * ratio) : code2 > Z_C ? Math.max(r, 3 * ratio) : r;
          addShape(paths[code2], code2, px, u.valToPos(y2s[i], "y", true), r2);
        }
      }
      if (wf && workflow.has(ids[i])) {
        const py = u.valToPos(y ?? y2s[i], "y", true);
        const d = rr + 5 * ratio;
        crosses.moveTo(px - d, py - d);
        crosses.lineTo(px + d, py + d);
        crosses.moveTo(px + d, py - d);
        crosses.lineTo(px - d, py + d);
      }
    }
    ctx.lineWidth = Math.max(1, ratio);
    ctx.strokeStyle = "#212121";
    for (let code = Z_NONE; code <= Z_OUT; code++) {
      ctx.fillStyle = COLOURS.fill[code];
      ctx.fill(paths[code]);
      if (!skipPlain) ctx.stroke(paths[code]);  // outlines only where the points stand apart
    }
    ctx.strokeStyle = COLOURS.selected;
    ctx.lineWidth = 3 * ratio;
    ctx.stroke(crosses);

    drawMarkers(u, isMain ? model.markers.main : model.markers.disp, ys, y2s, i0, i1, r);
    ctx.restore();
    drawLineLabels(u, isMain, i1);
  }

  function drawMarkers(u, list, ys, y2s, i0, i1, r) {
    const ctx = u.ctx;
    const ratio = uPlot.pxRatio;
    const ring = r + 7 * ratio;
    let labelsEnd = -Infinity;  // right edge of the last rule label: labels never overlap
    ctx.font = `bold ${Math.round(16 * ratio)}px system-ui, sans-serif`;
    ctx.textAlign = "center";
    ctx.textBaseline = "bottom";
    for (const { i, v } of list) {
      if (i < i0 || i > i1) continue;
      let y = ys[i];
      if (y2s && (y == null || (y2s[i] != null && Math.abs(y2s[i]) > Math.abs(y)))) y = y2s[i];
      if (y == null) continue;
      const px = u.valToPos(i, "x", true);
      const py = u.valToPos(y, "y", true);
      const open = !v.ack?.acknowledged;
      ctx.strokeStyle = open ? COLOURS.violation : COLOURS.acked;
      ctx.lineWidth = 3 * ratio;
      ctx.setLineDash(open ? [] : [4 * ratio, 3 * ratio]);
      ctx.beginPath();
      ctx.arc(px, py, ring, 0, 2 * Math.PI);
      ctx.stroke();
      const label = `R${v.rule_id}`;
      const half = ctx.measureText(label).width / 2;
      if (px - half > labelsEnd + 4 * ratio) {
        ctx.fillStyle = open ? COLOURS.violation : COLOURS.acked;
        ctx.fillText(label, px, py - ring - 2 * ratio);
        labelsEnd = px + half;
      }
    }
    ctx.setLineDash([]);
  }

  /** Text labels at the right end of the horizontal lines, so the lines are named and not only coloured. */
  function drawLineLabels(u, isMain, i1) {
    if (i1 < 0) return;
    const ctx = u.ctx;
    const ratio = uPlot.pxRatio;
    const lines = isMain
      ? [[S_UCL, "UCL", COLOURS.limit], [S_CL, "CL", COLOURS.centre], [S_LCL, "LCL", COLOURS.limit],
        [S_USL, "USL", COLOURS.spec], [S_LSL, "LSL", COLOURS.spec], [S_PUCL, "new UCL", COLOURS.proposed],
        [S_PCL, "new CL", COLOURS.proposed], [S_PLCL, "new LCL", COLOURS.proposed]]
      : [[D_UCL, "UCL", COLOURS.limit], [D_CL, "CL", COLOURS.centre], [D_LCL, "LCL", COLOURS.limit]];
    const data = isMain ? model.main : model.disp;
    const right = u.bbox.left + u.bbox.width - 4 * ratio;
    ctx.save();
    ctx.font = `bold ${Math.round(15 * ratio)}px system-ui, sans-serif`;
    ctx.textAlign = "right";
    ctx.textBaseline = "bottom";
    const labels = [];
    for (const [k, label, colour] of lines) {
      if (!u.series[k].show) continue;
      const v = data[k][i1];
      if (v == null) continue;
      const py = u.valToPos(v, "y", true);
      if (py >= u.bbox.top && py <= u.bbox.top + u.bbox.height) labels.push({ py, text: `${label} ${num(v)}`, colour });
    }
    // top to bottom, each at least one text line below the one above
    labels.sort((a, b) => a.py - b.py);
    const lineHeight = 17 * ratio;
    let floor = -Infinity;
    for (const { py, text, colour } of labels) {
      const y = Math.max(py, floor + lineHeight);
      floor = y;
      const w = ctx.measureText(text).width;
      ctx.fillStyle = "rgba(255,255,255,0.85)";
      ctx.fillRect(right - w - 2 * ratio, y - 17 * ratio, w + 4 * ratio, 16 * ratio);
      ctx.fillStyle = colour;
      ctx.fillText(text, right, y - 2 * ratio);
    }
    ctx.restore();
  }

  // ---------- tooltip ----------

  function tooltipFor(box) {
    let tip = box.querySelector(".chart-tooltip");
    if (!tip) {
      tip = document.createElement("div");
      tip.className = "chart-tooltip";
      tip.hidden = true;
      tip.setAttribute("role", "tooltip");
      box.append(tip);
    }
    return tip;
  }

  function line(text, className) {
    const div = document.createElement("div");
    if (className) div.className = className;
    div.textContent = text;
    return div;
  }

  function showTooltip(u, isMain, box) {
    const tip = tooltipFor(box);
    const i = u.cursor.idx;
    if (i == null || !model || i >= model.ids.length || u.cursor.left < 0) {
      tip.hidden = true;
      tip.dataset.idx = "";
      return;
    }
    if (tip.dataset.idx !== String(i)) {
      tip.dataset.idx = String(i);
      const s = model.samples[i];
      const rows = [line(`Sample ${s.sample_id}${s.timestamp ? ` · ${new Date(s.timestamp).toLocaleString()}` : ""}`, "tip-head")];
      if (isMain) {
        if (model.stat === "cusum") rows.push(line(`CUSUM+ ${num(s.cusum_upper)} · CUSUM− ${num(s.cusum_lower)}`));
        else if (model.stat === "ewma") rows.push(line(`EWMA ${num(s.ewma)} · value ${num(s.value)}`));
        else rows.push(line(`Value ${num(s.value)} · ${ZONE_TEXT[model.zone[i]]}`));
        rows.push(line(`CL ${num(model.main[S_CL][i])} · UCL ${num(model.main[S_UCL][i])} · LCL ${num(model.main[S_LCL][i])}`));
      } else {
        rows.push(line(`${DISPERSION_NAME[model.dispKind] ?? "Dispersion"} ${num(model.disp[D_Y][i])}`));
      }
      if (workflow.enabled() && workflow.has(s.sample_id)) rows.push(line("✕ selected for exclusion"));
      for (const v of model.markers.bySample.get(s.sample_id) ?? []) {
        const ack = v.ack?.acknowledged
          ? `acknowledged by ${v.ack.ack_user ?? "?"}${v.ack.reason_code ? `: ${v.ack.reason_code}` : ""}`
          : "open";
        const chart = v.chart ? ` (${String(v.chart).toUpperCase()} chart)` : "";
        rows.push(line(`⚑ R${v.rule_id} ${v.rule_name ?? ""}${chart} · ${v.severity ?? ""} · ${ack}`, "tip-violation"));
      }
      tip.replaceChildren(...rows);
    }
    tip.hidden = false;
    // the plotting area's offset in the box, from uPlot's own geometry (no layout read per mouse move)
    const x = u.bbox.left / uPlot.pxRatio + u.cursor.left;
    const y = u.bbox.top / uPlot.pxRatio + u.cursor.top;
    const flip = u.cursor.left > u.bbox.width / uPlot.pxRatio / 2;
    tip.style.transform = `translate(${flip ? x - 16 : x + 16}px, ${y - 12}px) translate(${flip ? "-100%" : "0"}, -100%)`;
  }

  // ---------- zoom ----------

  function fullRange() {
    const n = model?.ids.length ?? 0;
    return { min: 0, max: Math.max(1, n - 1) };
  }

  function applyZoom(min, max) {
    const full = fullRange();
    const span = Math.max(5, max - min);
    let lo = Math.max(full.min, min);
    let hi = Math.min(full.max, lo + span);
    lo = Math.max(full.min, hi - span);
    if (!mainPlot) return;
    mainPlot.setScale("x", { min: lo, max: hi });
  }

  function resetZoom() {
    zoom = null;
    if (mainPlot) mainPlot.setScale("x", fullRange());
  }

  function onScale(u, key) {
    if (key !== "x" || syncing || !model) return;
    const { min, max } = u.scales.x;
    const full = fullRange();
    zoom = min > full.min + 1e-9 || max < full.max - 1e-9 ? { min, max } : null;
    const other = u === mainPlot ? dispPlot : mainPlot;
    if (other && (other.scales.x.min !== min || other.scales.x.max !== max)) {
      syncing = true;
      other.setScale("x", { min, max });
      syncing = false;
    }
    schedule("capability");
  }

  function bindInteraction(u, isMain, box) {
    let down = null;
    u.over.addEventListener("mousedown", (e) => { down = [e.clientX, e.clientY]; });
    u.over.addEventListener("click", (e) => {
      if (!down || Math.hypot(e.clientX - down[0], e.clientY - down[1]) > CLICK_SLOP_PX) return;
      if (!workflow.enabled() || !model) return;
      const i = u.cursor.idx;
      if (i == null) return;
      const ys = isMain ? model.main[S_Y] : model.disp[D_Y];
      const candidates = [ys[i]];
      if (isMain && model.stat === "cusum") candidates.push(model.main[S_Y2][i]);
      const near = candidates.some((y) => y != null && Math.abs(u.valToPos(y, "y") - u.cursor.top) <= PICK_PX);
      if (near) workflow.toggle(model.ids[i]);
    });
    u.over.addEventListener("wheel", (e) => {
      e.preventDefault();
      const { min, max } = u.scales.x;
      const at = u.posToVal(e.offsetX, "x");
      const factor = e.deltaY < 0 ? WHEEL_FACTOR : 1 / WHEEL_FACTOR;
      applyZoom(at - (at - min) * factor, at + (max - at) * factor);
    }, { passive: false });
    box.onkeydown = (e) => {
      if (!mainPlot) return;
      const { min, max } = mainPlot.scales.x;
      const span = max - min;
      const keys = {
        ArrowLeft: () => applyZoom(min - span * 0.2, max - span * 0.2),
        ArrowRight: () => applyZoom(min + span * 0.2, max + span * 0.2),
        "+": () => applyZoom(min + span * 0.15, max - span * 0.15),
        "=": () => applyZoom(min + span * 0.15, max - span * 0.15),
        "-": () => applyZoom(min - span * 0.25, max + span * 0.25),
        0: resetZoom,
        Escape: resetZoom,
      };
      const action = keys[e.key];
      if (action) { e.preventDefault(); action(); }
    };
    box.onmouseleave = () => { tooltipFor(box).hidden = true; };
  }

  // ---------- plots ----------

  function noteDrawn() {
    if (!measure || --measure.left > 0) return;
    renderMs = performance.now() - measure.t0;
    measure.resolve(renderMs);
    measure = null;
  }

  /** The plots' width: the one the ResizeObserver saw last (reading clientWidth would force a layout). */
  function plotWidth() {
    if (!boxWidth) boxWidth = els.main.clientWidth || root.clientWidth || window.innerWidth - 48;
    return Math.max(320, boxWidth);
  }

  function mainHeight() {
    return Math.round(Math.min(600, Math.max(340, window.innerHeight * 0.48)));
  }

  function xAxis(fg, grid) {
    return {
      stroke: fg, font: AXIS_FONT, labelFont: LABEL_FONT, label: "Sample", labelSize: 30, size: 50, space: 90,
      incrs: X_INCRS, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 },
      values: (u, splits) => splits.map((v) => {
        const k = Math.round(v);
        return Math.abs(v - k) < 1e-6 && model?.ids[k] !== undefined ? String(model.ids[k]) : "";
      }),
    };
  }

  function yAxis(fg, grid, label) {
    return {
      stroke: fg, font: AXIS_FONT, labelFont: LABEL_FONT, label, labelSize: 30, size: 90,
      grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 },
    };
  }

  function baseOptions(height) {
    return {
      width: plotWidth(), height, legend: { show: false },
      scales: { x: { time: false } },
      cursor: {
        sync: { key: SYNC_KEY, scales: ["x", null] },
        points: { show: false },
        drag: { x: true, y: false, setScale: true },
      },
      select: { show: true },
    };
  }

  function mainOptions(m) {
    const fg = AXIS_COLOUR;
    const grid = "rgba(128,128,128,0.25)";
    const limit = (stroke, width, dash, show = true) => ({ stroke, width, dash, paths: steppedAtChanges, show, points: { show: false } });
    const cusum = m.stat === "cusum";
    const value = m.stat === "value";
    const hasSpec = !cusum && m.limits?.capability && (m.limits.capability.usl != null || m.limits.capability.lsl != null);
    const yLabel = cusum ? "CUSUM C+ / −C−" : m.stat === "ewma" ? "EWMA z" : Y_LABELS[m.limits?.chart] ?? "Value";
    const opts = baseOptions(mainHeight());
    opts.series = [
      {},
      { label: cusum ? "CUSUM+" : m.stat === "ewma" ? "EWMA" : "Value", stroke: COLOURS.line, width: 2, points: { show: false } },
      { label: cusum ? "CUSUM−" : "Value", stroke: cusum ? COLOURS.lower : COLOURS.faint, width: cusum ? 2 : 1.5,
        show: !value, points: { show: false } },
      limit(COLOURS.centre, 3, []),
      limit(COLOURS.limit, 3, []),
      limit(COLOURS.limit, 3, []),
      limit(COLOURS.zone, 1.5, [3, 5], value),
      limit(COLOURS.zone, 1.5, [3, 5], value),
      limit(COLOURS.zone, 1.5, [10, 5], value),
      limit(COLOURS.zone, 1.5, [10, 5], value),
      limit(COLOURS.spec, 3, [14, 7], !!hasSpec),
      limit(COLOURS.spec, 3, [14, 7], !!hasSpec),
      limit(COLOURS.proposed, 3, [7, 6], !!proposed),
      limit(COLOURS.proposed, 3, [7, 6], !!proposed),
      limit(COLOURS.proposed, 3, [7, 6], !!proposed),
    ];
    opts.axes = [xAxis(fg, grid), yAxis(fg, grid, yLabel)];
    opts.hooks = {
      draw: [(u) => { drawOverlay(u, true); noteDrawn(); }],
      setScale: [onScale],
      setCursor: [(u) => showTooltip(u, true, els.main)],
    };
    return opts;
  }

  function dispOptions(m) {
    const fg = AXIS_COLOUR;
    const grid = "rgba(128,128,128,0.25)";
    const line = (stroke, width, dash) => ({ stroke, width, dash, paths: steppedAtChanges, points: { show: false } });
    const opts = baseOptions(Math.round(mainHeight() * 0.55));
    opts.series = [
      {},
      { label: DISPERSION_NAME[m.dispKind], stroke: COLOURS.line, width: 2, points: { show: false } },
      line(COLOURS.centre, 3, []), line(COLOURS.limit, 3, []), line(COLOURS.limit, 3, []),
    ];
    opts.axes = [xAxis(fg, grid), yAxis(fg, grid, DISPERSION_NAME[m.dispKind] ?? "Dispersion")];
    opts.hooks = {
      draw: [(u) => { drawOverlay(u, false); noteDrawn(); }],
      setScale: [onScale],
      setCursor: [(u) => showTooltip(u, false, els.disp)],
    };
    return opts;
  }

  function destroyPlots() {
    mainPlot?.destroy();
    dispPlot?.destroy();
    mainPlot = dispPlot = null;
    layoutKey = "";
    els.main.querySelector(".chart-tooltip")?.remove();
    els.disp.querySelector(".chart-tooltip")?.remove();
  }

  /** Builds the model from the store and (re)creates or refills the plots. */
  function renderFull(forceNew = false) {
    const ch = current();
    model = buildModel(ch);
    const key = `${model.stat}|${model.dispKind}|${proposed ? 1 : 0}|${model.limits?.capability ? 1 : 0}`;
    if (forceNew || key !== layoutKey || !mainPlot) {
      destroyPlots();
      layoutKey = key;
      mainPlot = new uPlot(mainOptions(model), model.main, els.main);
      bindInteraction(mainPlot, true, els.main);
      els.disp.hidden = !model.dispKind;
      if (model.dispKind) {
        dispPlot = new uPlot(dispOptions(model), model.disp, els.disp);
        bindInteraction(dispPlot, false, els.disp);
      }
      if (zoom) applyZoom(zoom.min, zoom.max);
    } else {
      refill();
    }
    schedule("capability");
  }

  function refill() {
    mainPlot.setData(model.main, !zoom);
    dispPlot?.setData(model.disp, !zoom);
    if (zoom) {
      const { min, max } = zoom;
      mainPlot.setScale("x", { min, max });
    }
  }

  /** Appends the store's new samples to the model, or rebuilds it when the store's array moved underneath. */
  function renderAppend() {
    const samples = current()?.samples ?? [];
    const n = model.ids.length;
    if (samples.length < n || (n > 0 && samples[n - 1] !== model.samples[n - 1])) {
      renderFull();
      return;
    }
    for (let i = n; i < samples.length; i++) appendSample(model, samples[i]);
    model.markers = buildMarkers(current(), model);
    refill();
    schedule("capability");
  }

  // ---------- updates ----------

  /** Milliseconds until live samples may be drawn again: big charts redraw at most every n * LIVE_MS_PER_POINT. */
  function appendWait() {
    return model ? lastData + model.ids.length * LIVE_MS_PER_POINT - performance.now() : 0;
  }

  function deferAppend() {
    if (!timer) timer = setTimeout(() => { timer = 0; schedule("append"); }, Math.max(0, appendWait()));
  }

  function schedule(kind) {
    if (id == null) return;
    pending[kind] = true;
    if (kind === "append" && appendWait() > 0) deferAppend();
    else if (!frame) frame = requestAnimationFrame(flush);
  }

  function flush() {
    frame = 0;
    const p = pending;
    pending = { full: false, append: false, redraw: false, title: false, capability: false };
    if (id == null) return;
    if (p.append && !p.full && model && appendWait() > 0) {
      pending.append = true;
      p.append = false;
      deferAppend();
    }
    if (p.title) renderTitle();
    if (p.full || !model) renderFull();
    else if (p.append) renderAppend();
    else if (p.redraw) {
      model.markers = buildMarkers(current(), model);
      mainPlot?.redraw(false);
      dispPlot?.redraw(false);
    }
    if (p.full || p.append) lastData = performance.now();
    if (p.capability || pending.capability) {
      pending.capability = false;
      const range = mainPlot && model.ids.length ? visibleRange(mainPlot) : null;
      capability.update(current(), range && { i0: range[0], i1: range[1] });
    }
  }

  function renderTitle() {
    const ch = current();
    const limits = ch?.limits;
    const name = ch?.name || limits?.name || "";
    const parts = [`${name ? `${name} ` : ""}#${id}`];
    if (limits?.chart) parts.push(CHART_NAMES[limits.chart] ?? limits.chart);
    parts.push(limits?.phase ? `phase: ${limits.phase}` : "no limits yet");
    els.title.textContent = parts.join(" — ");
    els.title.dataset.phase = limits?.phase ?? "none";
  }

  const forThis = (handler) => (event) => {
    if (id != null && Number(event.detail?.id) === id) handler(event);
  };
  const listeners = {
    samples: forThis((e) => {
      if (e.detail.sample) schedule("append");
      else { schedule("full"); workflow.refresh(); }
    }),
    limits: forThis(() => { schedule("title"); schedule("full"); }),
    violations: forThis(() => { schedule("redraw"); workflow.refresh(); }),
    characteristic: forThis(() => schedule("title")),
  };

  const resizer = new ResizeObserver((entries) => {
    boxWidth = Math.round(entries.at(-1).contentRect.width);
    if (!mainPlot || id == null || !boxWidth) return;
    const width = plotWidth();
    if (width === mainPlot.width) return;
    mainPlot.setSize({ width, height: mainPlot.height });
    dispPlot?.setSize({ width, height: dispPlot.height });
    schedule("capability");
  });
  resizer.observe(els.main);

  els.reset.addEventListener("click", resetZoom);
  session.addEventListener("role", () => {
    if (id == null) return;
    workflow.refresh();
    schedule("redraw");
  });

  // ---------- hooks for tests and the benchmark ----------

  function hooks() {
    const sd = (window.spcDashboard ??= {});
    sd.bench = { ...(sd.bench ?? {}), loadSynthetic };
    return sd;
  }

  function publish() {
    hooks().chart = {
      id,
      markers: () => (model ? [...model.markers.main, ...model.markers.disp].map(({ v }) => ({
        violation_id: v.violation_id, sample_id: v.sample_id, rule_id: v.rule_id, rule_name: v.rule_name,
      })) : []),
      limitLines: () => ({
        x: model ? [...model.ids] : [],
        center: model ? [...model.main[S_CL]] : [],
        ucl: model ? [...model.main[S_UCL]] : [],
        lcl: model ? [...model.main[S_LCL]] : [],
      }),
      select: (sampleIds) => workflow.set(sampleIds),
      selected: () => workflow.selected(),
      get renderMs() { return renderMs; },
    };
  }

  /**
   * Benchmark: fills characteristic `cid` with n synthetic samples and renders it from scratch.
   * @returns {Promise<number>} the render time in ms (build of the data and the plots up to the first draw)
   */
  async function loadSynthetic(cid, n) {
    const key = Number(cid);
    if (!store.get(key)) throw new Error(`unknown characteristic ${cid}`);
    await store.ensureHistory(key, session).catch(() => null);  // a history answer later would replace the samples
    const ch = store.get(key);
    // ids end at the newest real one, so live samples still append after them
    ch.samples = syntheticSamples(key, n, (ch.last?.sample_id ?? n) - n, statisticOf(ch.limits));
    ch.last = ch.samples[n - 1] ?? null;
    ch.historyLoaded = true;
    if (!ch.limits) ch.limits = syntheticLimits(key, ch.name);
    if (id !== key) {
      navigate(`#/c/${key}`);
      const t0 = performance.now();
      while (id !== key && performance.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
      if (id !== key) throw new Error("the chart view did not open");
    }
    if (frame) { cancelAnimationFrame(frame); frame = 0; }
    if (timer) { clearTimeout(timer); timer = 0; }
    pending = { full: false, append: false, redraw: false, title: false, capability: false };
    zoom = null;
    const drawn = new Promise((resolve) => { measure = { t0: performance.now(), resolve, left: Infinity }; });
    renderFull(true);
    measure.left = dispPlot ? 2 : 1;
    renderTitle();
    return drawn;
  }

  hooks();

  return {
    /** Shows characteristic `cid`: loads its history once and follows its live events. */
    show(cid) {
      const key = Number(cid);
      if (id !== key) {
        this.hide();
        id = key;
        zoom = null;
        proposed = null;
        model = null;
        inbox = createInbox(els.violations, { store, session, characteristicId: key });
        inbox.show();
      }
      for (const [type, handler] of Object.entries(listeners)) store.addEventListener(type, handler);
      workflow.show(key);
      renderTitle();
      publish();
      els.status.textContent = current()?.historyLoaded ? "" : "Loading history…";
      Promise.resolve(store.ensureHistory(key, session)).then(
        () => { if (id === key) els.status.textContent = ""; },
        (error) => { if (id === key) els.status.textContent = `History not loaded: ${error.message}`; },
      );
      schedule("full");
    },
    hide() {
      for (const [type, handler] of Object.entries(listeners)) store.removeEventListener(type, handler);
      if (frame) { cancelAnimationFrame(frame); frame = 0; }
      if (timer) { clearTimeout(timer); timer = 0; }
      inbox?.destroy();
      inbox = null;
      destroyPlots();
      model = null;
      id = null;
      workflow.hide();
      if (window.spcDashboard) delete window.spcDashboard.chart;
    },
  };
}
