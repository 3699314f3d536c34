/**
 * Fitting a compensator by name, and `auto`: every estimator is fitted on 80% of the pairs and the
 * one that does best on the held-out 20% (aligned with the old embeddings, or retrieving the
 * relevant documents from the old model's index when relevance is known) is refitted on all pairs.
 */
import { existsSync } from "node:fs";
import { type CompensatorMethod, CROSS_DIMENSION } from "../lineage/methods.js";
import { cosineSimilarity, noGrad, type Tensor, tidy } from "../tensor/index.js";
import { type Compensator, METHODS, type Method, readCompensator } from "./compensator.js";
import {
  fitAffine,
  fitIdentity,
  fitKernel,
  fitLocal,
  fitMean,
  fitMlp,
  fitProcrustes,
  invert,
  restore,
} from "./estimators.js";

export interface FitOptions {
  sigma?: number;
  ridge?: number;
  rank?: number;
  centre?: boolean;
  mlpEpochs?: number;
  /** clusters of the local adapters (default: one per 250 pairs, 1–16) */
  clusters?: number;
  seed?: number;
}

export function fitCompensator(method: Method, oldE: Tensor, newE: Tensor, opts: FitOptions = {}): Compensator {
  if (oldE.ndim !== 2 || newE.ndim !== 2 || oldE.size(0) !== newE.size(0)) {
    throw new Error(
      `drift pairs must be two [N, D] tensors with one row per pair, got [${oldE.shape}] and [${newE.shape}]`,
    );
  }
  if (oldE.size(1) !== newE.size(1) && !CROSS_DIMENSION.includes(method as CompensatorMethod))
    throw new Error(
      `${method} maps within one embedding space, but the models embed in ${newE.size(1)} (new) and ${oldE.size(1)} (old) dimensions: use ${CROSS_DIMENSION.join(", ")} (or auto)`,
    );
  if (oldE.size(0) < 2) throw new Error("drift needs at least 2 pairs");
  switch (method) {
    case "identity":
      return fitIdentity();
    case "mean":
      return fitMean(oldE, newE);
    case "kernel":
      return fitKernel(oldE, newE, { sigma: opts.sigma });
    case "procrustes":
      return fitProcrustes(oldE, newE, { centre: opts.centre });
    case "affine":
      return fitAffine(oldE, newE, { ridge: opts.ridge, rank: opts.rank });
    case "mlp":
      return fitMlp(oldE, newE, { epochs: opts.mlpEpochs, seed: opts.seed });
    case "local":
      return fitLocal(oldE, newE, { clusters: opts.clusters, seed: opts.seed });
  }
}

/** Mean cosine between compensated new embeddings and the old ones. */
export function alignment(c: Compensator, oldE: Tensor, newE: Tensor): number {
  return tidy(() => noGrad(() => cosineSimilarity(c.apply(newE), oldE.float(), 1).mean().item()));
}

export interface AutoResult {
  compensator: Compensator;
  scores: Record<string, number>;
  /** what the scores measure */
  criterion: "alignment" | "retrieval";
}

/** Rows [start, start + count) of the pairs held out from fitting. */
export interface HeldOut {
  start: number;
  count: number;
}

/**
 * A held-out retrieval criterion: compensated held-out queries are searched against the old
 * model's document embeddings `docsOld` [Nd, D]; `relevant[i]` lists the document rows relevant to
 * pair i. The score is MRR@10 (the best-ranked relevant document) over held-out pairs that have one.
 */
export function heldOutRetrieval(
  docsOld: Tensor,
  relevant: number[][],
): (c: Compensator, held: HeldOut, newE: Tensor) => number {
  return (c, held, newE) =>
    tidy(() =>
      noGrad(() => {
        const q = c.apply(newE.narrow(0, held.start, held.count)).float();
        const scores = q.matmul(docsOld.float().T);
        const flat = scores.toArray();
        const nd = docsOld.size(0);
        let sum = 0;
        let n = 0;
        for (let i = 0; i < held.count; i++) {
          const rel = relevant[held.start + i] ?? [];
          if (!rel.length) continue;
          const row = flat.slice(i * nd, (i + 1) * nd);
          const target = Math.max(...rel.map((r) => row[r] as number));
          const rank = 1 + row.filter((s) => s > target).length;
          sum += rank <= 10 ? 1 / rank : 0;
          n++;
        }
        if (!n) throw new Error("held-out retrieval: no held-out query has a relevant document");
        return sum / n;
      }),
    );
}

/**
 * Fits every estimator on the first 80% of the pairs, scores it on the rest, and refits the best
 * on all pairs. The score is held-out alignment (mean cosine to the old embeddings) unless a
 * `retrieval` criterion (heldOutRetrieval) is given, which ranks by MRR@10 instead.
 */
export function fitAuto(
  oldE: Tensor,
  newE: Tensor,
  opts: FitOptions & {
    methods?: Method[];
    retrieval?: (c: Compensator, held: HeldOut, newE: Tensor) => number;
  } = {},
): AutoResult {
  const n = oldE.size(0);
  if (n < 3) throw new Error(`auto needs at least 3 pairs (2 to fit, 1 held out), got ${n}`);
  const cut = Math.min(n - 1, Math.max(2, Math.floor(n * 0.8)));
  const held = { start: cut, count: n - cut };
  const scores: Record<string, number> = {};
  const across = oldE.size(1) !== newE.size(1);
  const candidates = opts.methods ?? (across ? (CROSS_DIMENSION as Method[]) : METHODS);
  for (const m of candidates) {
    const c = fitCompensator(m, oldE.narrow(0, 0, cut), newE.narrow(0, 0, cut), opts);
    scores[m] = opts.retrieval
      ? opts.retrieval(c, held, newE)
      : alignment(c, oldE.narrow(0, cut, n - cut), newE.narrow(0, cut, n - cut));
    c.dispose();
  }
  const best = Object.entries(scores).sort((a, b) => b[1] - a[1])[0]?.[0] as Method;
  return {
    compensator: fitCompensator(best, oldE, newE, opts),
    scores,
    criterion: opts.retrieval ? "retrieval" : "alignment",
  };
}

export function loadCompensator(path: string): { compensator: Compensator; fittedOn: Record<string, unknown> } {
  const r = readCompensator(path);
  return { compensator: restore(r.method, Object.fromEntries(r.tensors), r.settings), fittedOn: r.fittedOn };
}

/** Where the reverse fit of the compensator at `path` lives (for maps without an inverse). */
export const reversePath = (path: string): string => path.replace(/(\.safetensors)?$/, ".reverse.safetensors");

/**
 * The map back of the compensator at `path` (the old model's queries into the new model's space):
 * its reverse fit where one lies beside it, else its inverse.
 */
export function loadReverse(path: string): Compensator {
  const back = reversePath(path);
  if (existsSync(back)) return loadCompensator(back).compensator;
  const c = loadCompensator(path).compensator;
  try {
    const inv = invert(c);
    if (!inv)
      throw new Error(
        `${path}: a ${c.method} map has no inverse, and no reverse fit (${back}) lies beside it: fit it again with \`qdc drift fit\`, which writes both`,
      );
    return inv;
  } finally {
    c.dispose();
  }
}
