// Capability panel of the chart view: Cp/Cpk/Pp/Ppk and a histogram of the values against LSL/USL and the centre.

const INDICES = [["cp", "Cp"], ["cpk", "Cpk"], ["pp", "Pp"], ["ppk", "Ppk"]];
const MIN_BINS = 8;
const MAX_BINS = 40;
const HIST_HEIGHT = 220;
const COLOURS = { bar: "#607d8b", barOut: "#c62828", spec: "#8e24aa", centre: "#2e7d32", text: "#212121" };  // on white

/** Verdict text for an index, so the state is not carried by colour alone. */
function verdict(value) {
  if (value == null) return "";
  if (value >= 1.33) return "capable";
  if (value >= 1) return "marginal";
  return "not capable";
}

function format(value) {
  return value == null || !Number.isFinite(value) ? "—" : value.toFixed(2);
}

/** Finds the element with this id inside root, or creates it there. */
function part(root, id, tag, className) {
  let el = root.querySelector(`#${id}`);
  if (!el) {
    el = document.createElement(tag);
    el.id = id;
    root.append(el);
  }
  if (className) el.classList.add(className);
  return el;
}

/**
 * Creates the capability panel inside root (#capability).
 * @param {HTMLElement} root
 * @returns {{update(characteristic: object|null, range?: {i0: number, i1: number}|null): void}}
 */
export function createCapability(root) {
  if (!root.querySelector("h3")) {
    const heading = document.createElement("h3");
    heading.textContent = "Capability";
    root.prepend(heading);
  }
  const indices = part(root, "capability-indices", "dl", "cap-indices");
  const hist = part(root, "capability-hist", "div", "cap-hist");
  const canvas = hist.querySelector("canvas") ?? hist.appendChild(document.createElement("canvas"));
  canvas.setAttribute("role", "img");
  const caption = hist.querySelector(".cap-caption") ?? hist.appendChild(document.createElement("p"));
  caption.className = "cap-caption";

  const cells = new Map();
  indices.replaceChildren();
  for (const [key, label] of INDICES) {
    const wrap = document.createElement("div");
    wrap.className = "cap-index";
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    dd.dataset.index = key;
    const value = document.createElement("span");
    value.className = "cap-value";
    const note = document.createElement("span");
    note.className = "cap-verdict";
    dd.append(value, note);
    wrap.append(dt, dd);
    indices.append(wrap);
    cells.set(key, { value, note, dd });
  }

  function showIndices(capability) {
    for (const [key] of INDICES) {
      const cell = cells.get(key);
      const v = capability ? capability[key] : null;
      cell.value.textContent = format(v);
      cell.note.textContent = verdict(v);
      cell.dd.dataset.verdict = verdict(v).replace(" ", "-") || "none";
    }
  }

  function drawHistogram(values, count, spec, centre) {
    if (!histWidth) histWidth = hist.clientWidth;
    const width = Math.max(200, histWidth || 320);
    const ratio = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(HIST_HEIGHT * ratio)) {
      canvas.style.width = `${width}px`;
      canvas.style.height = `${HIST_HEIGHT}px`;
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(HIST_HEIGHT * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, HIST_HEIGHT);
    const fg = COLOURS.text;
    if (count === 0) {
      caption.textContent = "No values yet.";
      canvas.setAttribute("aria-label", "Histogram: no values");
      return;
    }
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < count; i++) {
      const v = values[i];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    for (const s of [spec.lsl, spec.usl, centre]) {
      if (s != null) { lo = Math.min(lo, s); hi = Math.max(hi, s); }
    }
    if (hi === lo) { hi += 0.5; lo -= 0.5; }
    const pad = (hi - lo) * 0.05;
    lo -= pad;
    hi += pad;
    const bins = Math.min(MAX_BINS, Math.max(MIN_BINS, Math.ceil(Math.sqrt(count))));
    const counts = new Uint32Array(bins);
    const binWidth = (hi - lo) / bins;
    let outside = 0;
    for (let i = 0; i < count; i++) {
      const v = values[i];
      counts[Math.min(bins - 1, Math.floor((v - lo) / binWidth))]++;
      if ((spec.usl != null && v > spec.usl) || (spec.lsl != null && v < spec.lsl)) outside++;
    }
    let top = 0;
    for (let b = 0; b < bins; b++) top = Math.max(top, counts[b]);

    const left = 8, right = width - 8, base = HIST_HEIGHT - 30, ceil = 34;
    const xOf = (v) => left + ((v - lo) / (hi - lo)) * (right - left);
    for (let b = 0; b < bins; b++) {
      if (!counts[b]) continue;
      const x0 = xOf(lo + b * binWidth);
      const x1 = xOf(lo + (b + 1) * binWidth);
      const h = (counts[b] / top) * (base - ceil);
      const mid = lo + (b + 0.5) * binWidth;
      const out = (spec.usl != null && mid > spec.usl) || (spec.lsl != null && mid < spec.lsl);
      ctx.fillStyle = out ? COLOURS.barOut : COLOURS.bar;
      ctx.fillRect(x0 + 1, base - h, Math.max(1, x1 - x0 - 2), h);
    }
    ctx.strokeStyle = fg;
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.moveTo(left, base + 0.5);
    ctx.lineTo(right, base + 0.5);
    ctx.stroke();

    ctx.font = "bold 16px system-ui, sans-serif";
    ctx.textBaseline = "top";
    const marks = [[spec.lsl, "LSL", COLOURS.spec, [8, 5]], [spec.usl, "USL", COLOURS.spec, [8, 5]],
      [centre, "CL", COLOURS.centre, []]];
    marks.forEach(([v, label, colour, dash], k) => {
      if (v == null) return;
      const x = Math.round(xOf(v)) + 0.5;
      ctx.strokeStyle = colour;
      ctx.lineWidth = 3;
      ctx.setLineDash(dash);
      ctx.beginPath();
      ctx.moveTo(x, ceil - 6);
      ctx.lineTo(x, base);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = colour;
      ctx.textAlign = x < width / 2 ? "left" : "right";
      ctx.fillText(label, x + (x < width / 2 ? 4 : -4), k === 2 ? 18 : 2);
    });
    ctx.fillStyle = fg;
    ctx.textBaseline = "top";
    ctx.textAlign = "left";
    ctx.fillText(lo.toPrecision(4), left, base + 6);
    ctx.textAlign = "right";
    ctx.fillText(hi.toPrecision(4), right, base + 6);

    const specText = outside ? `, ${outside} outside the spec limits` : "";
    caption.textContent = `${count} values${specText}.`;
    canvas.setAttribute("aria-label", `Histogram of ${count} values${specText}`);
  }

  let buffer = new Float64Array(0);
  let histWidth = 0;  // from the ResizeObserver: reading clientWidth on every update would force a layout
  let last = null;    // the arguments of the last update, to draw again at a new width
  new ResizeObserver((entries) => {
    const width = Math.round(entries.at(-1).contentRect.width);
    if (width === histWidth) return;
    histWidth = width;
    if (last) update(...last);
  }).observe(hist);

  /** Shows the indices of the characteristic's limits and the histogram of its values in range (all if null). */
  function update(characteristic, range = null) {
    last = [characteristic, range];
    const capability = characteristic?.limits?.capability ?? null;
    showIndices(capability);
    const samples = characteristic?.samples ?? [];
    const i0 = range ? Math.max(0, range.i0) : 0;
    const i1 = range ? Math.min(samples.length - 1, range.i1) : samples.length - 1;
    if (buffer.length < samples.length) buffer = new Float64Array(Math.max(1024, samples.length * 2));
    let count = 0;
    for (let i = i0; i <= i1; i++) {
      const v = samples[i].value;
      if (v != null && Number.isFinite(v)) buffer[count++] = v;
    }
    const statistic = characteristic?.limits?.statistic ?? "value";
    const centre = statistic === "value" ? characteristic?.limits?.center ?? null : null;
    drawHistogram(buffer, count, { usl: capability?.usl ?? null, lsl: capability?.lsl ?? null }, centre);
  }

  return { update };
}
