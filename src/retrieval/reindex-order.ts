/**
 * The order in which a re-index re-embeds documents. The service re-embeds the most retrieved
 * first (counted over the results it serves); the benchmark measures that order against a random
 * one and against predicted drift (src/drift/predicted-drift.ts) with the same functions.
 */
import type { Hit } from "./hit.js";

/** The `n` entries with the highest counts, highest first (ties in the order given). */
export function topByCount<T>(entries: [T, number][], n: number): [T, number][] {
  if (entries.length <= n) return [...entries].sort((a, b) => b[1] - a[1]);
  // the n-th largest count by a histogram of counts (counts are small integers), then one pass
  const byCount = new Map<number, number>();
  for (const [, c] of entries) byCount.set(c, (byCount.get(c) ?? 0) + 1);
  let cut = 0;
  let seen = 0;
  for (const c of [...byCount.keys()].sort((a, b) => b - a)) {
    seen += byCount.get(c) as number;
    cut = c;
    if (seen >= n) break;
  }
  const above = entries.filter(([, c]) => c > cut);
  const at = entries.filter(([, c]) => c === cut).slice(0, n - above.length);
  return [...above, ...at].sort((a, b) => b[1] - a[1]);
}

/** Counts each hit of served results (one per document per result list) into `counts`. */
export function countRetrievals(counts: Map<string, number>, results: readonly (readonly Hit[])[]): void {
  for (const top of results) for (const h of top) counts.set(h.id, (counts.get(h.id) ?? 0) + 1);
}

/**
 * All of `ids`, the retrieved ones first (most retrieved first, ties in the order they were first
 * retrieved), then the rest in the order given — the service's re-index order.
 */
export function retrievedFirst(ids: readonly string[], counts: Map<string, number>): string[] {
  const known = new Set(ids);
  const hot = topByCount(
    [...counts].filter(([id]) => known.has(id)),
    counts.size,
  ).map(([id]) => id);
  const seen = new Set(hot);
  return [...hot, ...ids.filter((id) => !seen.has(id))];
}

/** `ids` by a score per id, highest first (ties in the order given). */
export function byScore(ids: readonly string[], scores: ArrayLike<number>): string[] {
  if (scores.length !== ids.length) throw new RangeError(`${ids.length} ids but ${scores.length} scores`);
  return ids
    .map((id, i) => ({ id, i, s: scores[i] as number }))
    .sort((a, b) => b.s - a.s || a.i - b.i)
    .map((e) => e.id);
}
