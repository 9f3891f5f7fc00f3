// Drawing primitives of the chart: zone codes and their point shapes, stepped limit paths, legend entries.

// Zone codes of a point, each drawn with its own shape (see LEGEND).
export const Z_NONE = 0, Z_C = 1, Z_B = 2, Z_A = 3, Z_OUT = 4;
const ZONE_CODE = {
  zone_c_upper: Z_C, zone_c_lower: Z_C, zone_b_upper: Z_B, zone_b_lower: Z_B,
  zone_a_upper: Z_A, zone_a_lower: Z_A, beyond_ucl: Z_OUT, beyond_lcl: Z_OUT,
};
export const ZONE_TEXT = ["no zone (baseline)", "zone C (within 1σ)", "zone B (1σ–2σ)", "zone A (2σ–3σ)",
  "beyond the control limits"];
export const COLOURS = {
  line: "#546e7a", lower: "#8d6e63", faint: "rgba(120,144,156,0.45)", centre: "#2e7d32", limit: "#c62828", zone: "#78909c",
  spec: "#8e24aa", proposed: "#1565c0", violation: "#d50000", acked: "#ef9a9a", selected: "#111111",
  fill: ["#90a4ae", "#43a047", "#f9a825", "#ef6c00", "#d50000"],
};

/**
 * Adds one shape of a zone code to its path (canvas pixels). Each outline returns to its start by lineTo:
 * Path2D.closePath is slow on paths of thousands of subpaths, and filling closes them anyway.
 */
export function addShape(path, code, x, y, r) {
  switch (code) {
    case Z_B:
      path.rect(x - r, y - r, 2 * r, 2 * r);
      break;
    case Z_A:
      path.moveTo(x, y - 1.3 * r);
      path.lineTo(x + 1.2 * r, y + 0.9 * r);
      path.lineTo(x - 1.2 * r, y + 0.9 * r);
      path.lineTo(x, y - 1.3 * r);
      break;
    case Z_OUT:
      path.moveTo(x, y - 1.6 * r);
      path.lineTo(x + 1.6 * r, y);
      path.lineTo(x, y + 1.6 * r);
      path.lineTo(x - 1.6 * r, y);
      path.lineTo(x, y - 1.6 * r);
      break;
    default:
      path.moveTo(x + r, y);
      path.arc(x, y, r, 0, 2 * Math.PI);
  }
}

/**
 * uPlot path builder for limit lines: a step wherever the value changes (held from a sample to the next), with
 * vertices only at the changes, so 10,000 samples under a few limit sets make a path of a few points.
 */
export function steppedAtChanges(u, seriesIdx, i0, i1) {
  const ys = u.data[seriesIdx];
  const stroke = new Path2D();
  let held = null;
  for (let i = i0; i <= i1; i++) {
    const v = ys[i];
    if (v === held) continue;
    const x = u.valToPos(i, "x", true);
    if (held != null) stroke.lineTo(x, u.valToPos(held, "y", true));
    if (v != null) {
      if (held == null) stroke.moveTo(x, u.valToPos(v, "y", true));
      else stroke.lineTo(x, u.valToPos(v, "y", true));
    }
    held = v;
  }
  if (held != null) stroke.lineTo(u.valToPos(i1, "x", true), u.valToPos(held, "y", true));
  return { stroke, fill: null, clip: null, band: null, gaps: null, flags: 0 };
}

/** The zone code of a plotted value against its limits (when the sample does not say). */
export function zoneOf(zone, y, cl, ucl, lcl, sigma) {
  if (zone != null) return ZONE_CODE[zone] ?? Z_NONE;
  if (y == null) return Z_NONE;
  if ((ucl != null && y > ucl) || (lcl != null && y < lcl)) return Z_OUT;
  if (cl == null || sigma == null || !(sigma > 0)) return ucl == null && lcl == null ? Z_NONE : Z_C;
  const d = Math.abs(y - cl) / sigma;
  return d <= 1 ? Z_C : d <= 2 ? Z_B : Z_A;
}

/** SVG of a legend entry: a shape of a zone code, or a line with a dash pattern. */
function legendIcon(kind, colour, dash = "") {
  const shapes = {
    [Z_C]: `<circle cx="12" cy="12" r="6"/>`, [Z_B]: `<rect x="6" y="6" width="12" height="12"/>`,
    [Z_A]: `<polygon points="12,4 20,18 4,18"/>`, [Z_OUT]: `<polygon points="12,2 22,12 12,22 2,12"/>`,
  };
  if (kind === "line") {
    return `<svg viewBox="0 0 36 24" width="36" height="24" aria-hidden="true"><line x1="0" y1="12" x2="36" y2="12"
      stroke="${colour}" stroke-width="4" stroke-dasharray="${dash}"/></svg>`;
  }
  if (kind === "ring") {
    return `<svg viewBox="0 0 24 24" width="24" height="24" aria-hidden="true"><circle cx="12" cy="12" r="9"
      fill="none" stroke="${colour}" stroke-width="3"/></svg>`;
  }
  if (kind === "x") {
    return `<svg viewBox="0 0 24 24" width="24" height="24" aria-hidden="true"><path d="M4 4L20 20M20 4L4 20"
      stroke="${colour}" stroke-width="4"/></svg>`;
  }
  return `<svg viewBox="0 0 24 24" width="24" height="24" aria-hidden="true"><g fill="${colour}" stroke="#212121"
    stroke-width="1.5">${shapes[kind]}</g></svg>`;
}

/** Legend entries of the main chart: [SVG icon, text]. */
export const LEGEND = [
  [legendIcon(Z_C, COLOURS.fill[Z_C]), "Zone C (within 1σ)"],
  [legendIcon(Z_B, COLOURS.fill[Z_B]), "Zone B (1–2σ)"],
  [legendIcon(Z_A, COLOURS.fill[Z_A]), "Zone A (2–3σ)"],
  [legendIcon(Z_OUT, COLOURS.fill[Z_OUT]), "Beyond control limits"],
  [legendIcon("ring", COLOURS.violation), "Violation (rule number above)"],
  [legendIcon("x", COLOURS.selected), "Selected for exclusion"],
  [legendIcon("line", COLOURS.centre), "Centre line (CL)"],
  [legendIcon("line", COLOURS.limit), "Control limits (UCL/LCL)"],
  [legendIcon("line", COLOURS.zone, "3 5"), "±1σ / ±2σ zones"],
  [legendIcon("line", COLOURS.spec, "10 5"), "Spec limits (USL/LSL)"],
  [legendIcon("line", COLOURS.proposed, "5 5"), "Proposed limits (preview)"],
];
