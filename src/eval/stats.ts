/**
 * Statistics for the benchmark's questions "is a difference real?": mean and sample standard
 * deviation over seeds, and paired comparisons of two settings over the same queries — a
 * percentile bootstrap of the mean difference (95% interval) and a two-sided randomisation
 * (sign-flip) test, both seeded so that a report is reproducible.
 */
import { Rng } from "../data/rng.js";

export interface MeanStd {
  mean: number | null;
  /** sample standard deviation (n − 1); null below two values */
  std: number | null;
  n: number;
}

export function meanStd(xs: number[]): MeanStd {
  const n = xs.length;
  if (!n) return { mean: null, std: null, n: 0 };
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { mean, std: null, n };
  const v = xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1);
  return { mean, std: Math.sqrt(v), n };
}

export interface PairedTest {
  /** paired units (queries) */
  n: number;
  /** mean of the differences */
  delta: number;
  /** 95% percentile-bootstrap interval of the mean difference */
  ci95: [number, number];
  /** two-sided p-value of the sign-flip randomisation test (mean difference 0 under the null) */
  p: number;
}

/** The `q`-quantile (0–1) of sorted values, linearly interpolated. */
export function quantile(sorted: Float64Array | number[], q: number): number {
  const n = sorted.length;
  if (!n) throw new RangeError("quantile of no values");
  const at = q * (n - 1);
  const lo = Math.floor(at);
  const hi = Math.min(n - 1, lo + 1);
  return (sorted[lo] as number) + ((sorted[hi] as number) - (sorted[lo] as number)) * (at - lo);
}

/**
 * Paired comparison of per-unit differences `d` (a − b for each query): bootstrap interval and
 * randomisation p-value, from `resamples` draws each (default 10,000).
 */
export function pairedTest(d: number[], opts: { resamples?: number; seed?: number } = {}): PairedTest {
  const n = d.length;
  if (!n) throw new RangeError("a paired comparison needs at least one unit");
  const B = opts.resamples ?? 10_000;
  const rng = new Rng(opts.seed ?? 0);
  const delta = d.reduce((a, b) => a + b, 0) / n;
  const means = new Float64Array(B);
  for (let b = 0; b < B; b++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += d[rng.int(n)] as number;
    means[b] = s / n;
  }
  means.sort();
  let extreme = 0;
  const observed = Math.abs(delta) - 1e-12;
  for (let b = 0; b < B; b++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += rng.next() < 0.5 ? (d[i] as number) : -(d[i] as number);
    if (Math.abs(s / n) >= observed) extreme++;
  }
  return { n, delta, ci95: [quantile(means, 0.025), quantile(means, 0.975)], p: (extreme + 1) / (B + 1) };
}

/**
 * 95% interval of the mean difference over seeds and queries by a two-level bootstrap: each
 * resample draws the seeds with replacement, then the queries with replacement (the same draw for
 * every seed drawn, since they are the same queries), and averages d[seed][query] over both.
 * `d` is seeds × queries. Covers training-seed spread as well as query sampling.
 */
export function seedQueryInterval(d: number[][], opts: { resamples?: number; seed?: number } = {}): [number, number] {
  const S = d.length;
  const n = d[0]?.length ?? 0;
  if (!S || !n || d.some((row) => row.length !== n))
    throw new RangeError("a seeds × queries matrix of differences is needed");
  const B = opts.resamples ?? 10_000;
  const rng = new Rng(opts.seed ?? 0);
  const means = new Float64Array(B);
  const seeds = new Int32Array(S);
  for (let b = 0; b < B; b++) {
    for (let k = 0; k < S; k++) seeds[k] = rng.int(S);
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const q = rng.int(n);
      for (let k = 0; k < S; k++) sum += (d[seeds[k] as number] as number[])[q] as number;
    }
    means[b] = sum / (n * S);
  }
  means.sort();
  return [quantile(means, 0.025), quantile(means, 0.975)];
}
