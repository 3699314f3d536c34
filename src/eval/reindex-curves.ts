/**
 * "How much should I re-embed, and in what order?": an old task's score as a function of the
 * fraction of its corpus re-embedded by the final model, the rest searched through compensation,
 * for three orders — random; most retrieved first (the service's policy, with retrieval counts from
 * simulated traffic); predicted drift first (src/drift/predicted-drift.ts). The mixed search is the
 * service's: queries routed per version by QueryRouter, each version's top k among its own
 * documents, the older version's scores calibrated onto the current model's scale from a sample of
 * its rows embedded by both (src/retrieval/calibration.ts), merged by mergeHits. The same merge on
 * raw scores is measured beside it.
 */
import { Rng } from "../data/rng.js";
import { predictDrift, sampleResiduals } from "../drift/predicted-drift.js";
import type { ExactIndex } from "../index/exact-index.js";
import { CALIBRATION_ROWS, type Calibration, calibrate, calibrateHits } from "../retrieval/calibration.js";
import { type Hit, mergeHits } from "../retrieval/hit.js";
import { byScore, countRetrievals, retrievedFirst } from "../retrieval/reindex-order.js";
import type { QueryRouter } from "../retrieval/router.js";
import { tensorRows } from "../retrieval/rows.js";
import type { Tensor } from "../tensor/index.js";
import { evaluate, type Measure, type Qrels } from "./metrics.js";
import { runFromHits } from "./trec.js";

export const REINDEX_ORDERS = ["random", "retrieved", "drift"] as const;
export type ReindexOrder = (typeof REINDEX_ORDERS)[number];

/** How hits of the two versions are merged: with the older version's scores calibrated (the service), or raw. */
export const MERGES = ["calibrated", "raw"] as const;
export type Merge = (typeof MERGES)[number];

export const ORDER_LABELS: Record<ReindexOrder, string> = {
  random: "random",
  retrieved: "most retrieved first",
  drift: "predicted drift first",
};

/** One old task's curve for one order: the score at each fraction re-embedded. */
export interface CurveRecord {
  seed: number;
  /** the chain: "ft" (compensated with mean) or "kd" (with auto) */
  chain: string;
  compensation: string;
  j: number;
  task: string;
  order: ReindexOrder;
  merge: Merge;
  fractions: number[];
  scores: number[];
  queries: number;
  /** what the record was computed with (parameters and model ids): reused only when they match */
  params?: string;
}

/** The first `k` hits of a ranked list that satisfy `keep`. */
function firstWhere(ranked: Hit[], keep: (h: Hit) => boolean, k: number): Hit[] {
  const out: Hit[] = [];
  for (const h of ranked) {
    if (keep(h)) out.push(h);
    if (out.length === k) break;
  }
  return out;
}

/**
 * Per query, the top k of a corpus whose `reembedded` documents are rows of the new version and the
 * rest rows of the old one: `oldRanked` / `newRanked` rank every document by its old vector with the
 * compensated query / its new vector with the model's own query.
 */
export function mixedHits(
  oldRanked: Hit[][],
  newRanked: Hit[][],
  reembedded: ReadonlySet<string>,
  k: number,
  calibration?: Calibration,
): Hit[][] {
  const olds = oldRanked.map((old) => firstWhere(old, (h) => !reembedded.has(h.id), k));
  const onScale = calibration ? calibrateHits(olds, calibration) : olds;
  return onScale.map((old, i) => mergeHits([old, firstWhere(newRanked[i] ?? [], (h) => reembedded.has(h.id), k)], k));
}

export interface TaskCurveInput {
  /** the index of the old model (one version) and of the final model, over the same corpus */
  oldIndex: ExactIndex;
  newIndex: ExactIndex;
  oldVersion: string;
  /** routes the final model's queries to the old version (its compensation chain) */
  router: QueryRouter;
  /** the final model's test queries [M, D'] and their ids */
  queries: Tensor;
  queryIds: string[];
  qrels: Qrels;
  measure: Measure;
  k: number;
  fractions: number[];
  /** the final model's embeddings of other queries of the task (traffic for retrieval counts) */
  traffic: Tensor;
  /** a sample of the task's documents embedded by the old and by the final model */
  sampleOld: Tensor;
  sampleNew: Tensor;
  seed: number;
}

/** Every order's curve for one old task, per merge (scores: the measure's mean over the test queries). */
export function taskCurves(o: TaskCurveInput): Record<Merge, Record<ReindexOrder, number[]>> {
  const { ids, vectors } = o.oldIndex.rowsOf(o.oldVersion);
  const newRows = o.newIndex.rowsOf(o.newIndex.versions[0] as string);
  const N = ids.length;
  const compensated = o.router.chain(o.oldVersion)(o.queries);
  const compensatedTraffic = o.router.chain(o.oldVersion)(o.traffic);
  try {
    if (newRows.ids.join("\n") !== ids.join("\n")) throw new Error("the two indexes hold different documents");
    const only = (q: Tensor) => (v: string) => (v === o.oldVersion ? q : null);
    const oldRanked = o.oldIndex.search(o.queries, N, { transform: only(compensated) });
    const counts = new Map<string, number>();
    countRetrievals(counts, o.oldIndex.search(o.traffic, 10, { transform: only(compensatedTraffic) }));
    const newRanked = o.newIndex.search(o.queries, N);
    // orders: documents no traffic retrieved follow in the store's order (here: a random one)
    const storeOrder = new Rng(o.seed).sample(N, N);
    const random = storeOrder.map((i) => ids[i] as string);
    const retrieved = retrievedFirst(random, counts);
    const mapped = o.router.chain(o.oldVersion)(o.sampleNew);
    let predicted: Float32Array;
    try {
      predicted = predictDrift(vectors, o.sampleOld, sampleResiduals(o.sampleOld, mapped));
    } finally {
      if (mapped !== o.sampleNew) mapped.dispose();
    }
    const orders: Record<ReindexOrder, string[]> = { random, retrieved, drift: byScore(ids, predicted) };
    const [qOldRows, qNewRows, oldDocRows, newDocRows] = [compensated, o.queries, vectors, newRows.vectors].map(
      tensorRows,
    ) as [Float32Array[], Float32Array[], Float32Array[], Float32Array[]];
    // the service's reference: the first rows of the older version in store order (here the random
    // one), embedded by both — fixed once, as the service fixes it at the first mixed search
    const reference = storeOrder.slice(0, CALIBRATION_ROWS);
    const calibration =
      reference.length >= 2
        ? calibrate(qOldRows, qNewRows, {
            old: reference.map((i) => oldDocRows[i] as Float32Array),
            new: reference.map((i) => newDocRows[i] as Float32Array),
          })
        : undefined;
    const out = { calibrated: {}, raw: {} } as Record<Merge, Record<ReindexOrder, number[]>>;
    for (const order of REINDEX_ORDERS) {
      const scores = { calibrated: [] as number[], raw: [] as number[] };
      for (const f of o.fractions) {
        const reembedded = new Set(orders[order].slice(0, Math.round(f * N)));
        for (const merge of MERGES) {
          // nothing re-embedded: one version, nothing to calibrate
          const c = merge === "calibrated" && reembedded.size ? calibration : undefined;
          const hits = mixedHits(oldRanked, newRanked, reembedded, o.k, c);
          const e = evaluate(o.qrels, runFromHits(o.queryIds, hits), [o.measure]);
          scores[merge].push(e.mean[Object.keys(e.mean)[0] as string] as number);
        }
      }
      for (const merge of MERGES) out[merge][order] = scores[merge];
    }
    return out;
  } finally {
    if (compensated !== o.queries) compensated.dispose();
    if (compensatedTraffic !== o.traffic) compensatedTraffic.dispose();
    vectors.dispose();
    newRows.vectors.dispose();
  }
}

/**
 * The smallest fraction whose gain over no re-embedding reaches `share` of a full re-index's gain
 * (`scores` at `fractions`, the last being the full re-index), or null where re-indexing does not
 * gain at all.
 */
export function fractionReaching(fractions: number[], scores: number[], share = 0.9): number | null {
  const full = scores[scores.length - 1] as number;
  const none = scores[0] as number;
  const gain = full - none;
  if (!(gain > 0)) return null;
  for (let i = 0; i < fractions.length; i++)
    if ((scores[i] as number) - none >= share * gain - 1e-12) return fractions[i] as number;
  return fractions[fractions.length - 1] as number;
}
