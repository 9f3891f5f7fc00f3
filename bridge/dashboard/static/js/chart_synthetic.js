// Synthetic samples and limits of a characteristic for the benchmark (window.spcDashboard.bench.loadSynthetic).

/** Deterministic pseudo-random normal numbers for the synthetic benchmark data. */
function normals(seed) {
  let state = seed >>> 0;
  const uniform = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) + 1) / 4294967297;
  return () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
}

/** n synthetic samples (values with CUSUM and EWMA statistics) with a limit change at 60 %, for the benchmark. */
export function syntheticSamples(id, n, base, statistic) {
  const random = normals(id * 7919 + n);
  const sets = [{ center: 10, sigma: 0.5 }, { center: 10.2, sigma: 0.4 }];
  const samples = new Array(n);
  const start = Date.now() - n * 1000;
  let prev = null, upper = 0, lower = 0, ewma = null;
  for (let i = 0; i < n; i++) {
    const set = sets[i < n * 0.6 ? 0 : 1];
    const shift = i % 997 > 980 ? 1.6 * set.sigma : 0;
    const value = set.center + shift + random() * set.sigma;
    const spread = prev == null ? null : Math.abs(value - prev);  // serves as MR, R and S alike
    upper = Math.max(0, upper + (value - set.center) / set.sigma - 0.5);
    lower = Math.max(0, lower - (value - set.center) / set.sigma - 0.5);
    ewma = ewma == null ? value : 0.2 * value + 0.8 * ewma;
    const lim = statistic === "cusum" ? { center: 0, ucl: 5, lcl: -5, sigma: 1 }
      : { center: set.center, ucl: set.center + 3 * set.sigma, lcl: set.center - 3 * set.sigma, sigma: set.sigma };
    const d = (value - set.center) / set.sigma;
    const side = d >= 0 ? "upper" : "lower";
    const a = Math.abs(d);
    const zone = a > 3 ? (d > 0 ? "beyond_ucl" : "beyond_lcl") : `zone_${a <= 1 ? "c" : a <= 2 ? "b" : "a"}_${side}`;
    samples[i] = {
      sample_id: base + i + 1, characteristic_id: id, timestamp: new Date(start + i * 1000).toISOString(), value, zone,
      in_control: a <= 3, n: 1, range: spread, mr: spread, s: spread, ucl: null, lcl: null, cusum_upper: upper,
      cusum_lower: lower, ewma, seq: i + 1, lim,
    };
    prev = value;
  }
  return samples;
}

/** Limits payload (I-MR, monitoring, with capability) for a characteristic without limits, for the benchmark. */
export function syntheticLimits(id, name) {
  return {
    characteristic_id: id, name, chart: "imr", phase: "monitoring", center: 10.2, ucl: 11.4, lcl: 9, sigma: 0.4, n: 1,
    dispersion: { chart: "mr", center: 0.451, ucl: 1.474, lcl: 0 },
    capability: { cp: 1.67, cpk: 1.5, pp: 1.6, ppk: 1.45, usl: 12.2, lsl: 8.2 },
    reason: "synthetic benchmark data", statistic: "value", limit_set: null, effective_from: null,
  };
}
