/**
 * Fitting a compensator by name, and `auto`: every estimator is fitted on 80% of the pairs and the
 * one whose compensated held-out queries align best with their old embeddings (mean cosine) is
 * refitted on all pairs.
 */
import { cosineSimilarity, noGrad, type Tensor, tidy } from "../tensor/index.js";
import { type Compensator, METHODS, type Method, readCompensator } from "./compensator.js";
import { fitAffine, fitKernel, fitMean, fitMlp, fitProcrustes, restore } from "./estimators.js";

export interface FitOptions {
  sigma?: number;
  ridge?: number;
  rank?: number;
  centre?: boolean;
  mlpEpochs?: number;
  seed?: number;
}

export function fitCompensator(method: Method, oldE: Tensor, newE: Tensor, opts: FitOptions = {}): Compensator {
  if (oldE.shape.join() !== newE.shape.join() || oldE.ndim !== 2) {
    throw new Error(
      `drift pairs must be two [N, D] tensors of the same shape, got [${oldE.shape}] and [${newE.shape}]`,
    );
  }
  if (oldE.size(0) < 2) throw new Error("drift needs at least 2 pairs");
  switch (method) {
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
  }
}

/** Mean cosine between compensated new embeddings and the old ones. */
export function alignment(c: Compensator, oldE: Tensor, newE: Tensor): number {
  return tidy(() => noGrad(() => cosineSimilarity(c.apply(newE), oldE.float(), 1).mean().item()));
}

export interface AutoResult {
  compensator: Compensator;
  scores: Record<string, number>;
}

/** Picks the estimator with the best held-out alignment and refits it on all pairs. */
export function fitAuto(oldE: Tensor, newE: Tensor, opts: FitOptions & { methods?: Method[] } = {}): AutoResult {
  const n = oldE.size(0);
  const cut = Math.max(1, Math.floor(n * 0.8));
  if (n - cut < 1) throw new Error("auto needs at least 2 pairs (one held out)");
  const scores: Record<string, number> = {};
  for (const m of opts.methods ?? METHODS) {
    const c = fitCompensator(m, oldE.narrow(0, 0, cut), newE.narrow(0, 0, cut), opts);
    scores[m] = alignment(c, oldE.narrow(0, cut, n - cut), newE.narrow(0, cut, n - cut));
    c.dispose();
  }
  const best = Object.entries(scores).sort((a, b) => b[1] - a[1])[0]?.[0] as Method;
  return { compensator: fitCompensator(best, oldE, newE, opts), scores };
}

export function loadCompensator(path: string): { compensator: Compensator; fittedOn: Record<string, unknown> } {
  const r = readCompensator(path);
  return { compensator: restore(r.method, Object.fromEntries(r.tensors), r.settings), fittedOn: r.fittedOn };
}
