/** Small statistics helpers for the benchmark reports. */

export interface Percentiles {
  n: number;
  min: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentile of an ascending array. */
function rank(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

const round = (v: number, digits = 3) => Math.round(v * 10 ** digits) / 10 ** digits;

export function percentiles(samples: readonly number[]): Percentiles {
  const s = [...samples].sort((a, b) => a - b);
  const sum = s.reduce((a, b) => a + b, 0);
  return {
    n: s.length,
    min: round(s[0] ?? Number.NaN),
    p50: round(rank(s, 50)),
    p90: round(rank(s, 90)),
    p99: round(rank(s, 99)),
    max: round(s[s.length - 1] ?? Number.NaN),
    mean: round(s.length ? sum / s.length : Number.NaN),
  };
}

export { round };
