/**
 * Predicted drift of each stored document from its old embedding alone, for re-embedding the
 * documents a compensated search serves worst first (in the spirit of FastFill, ICLR 2023). A
 * sample of documents is embedded by both models; a sample document's residual is how far its old
 * vector lies from its new vector carried into the old space by the map queries are compensated
 * with (1 − cosine); a stored document's predicted drift is the mean residual of its k nearest
 * sample documents in the old space. Cost: one [N, S] product over the old vectors, no forward pass
 * over the corpus.
 */
import { cosineSimilarity, noGrad, normalize, type Tensor, tidy } from "../tensor/index.js";

/** 1 − cos(old_s, mapped_s) per sample document: old [S, D] and the new vectors mapped into the old space [S, D]. */
export function sampleResiduals(oldSample: Tensor, mappedNew: Tensor): Float32Array {
  if (oldSample.ndim !== 2 || mappedNew.ndim !== 2 || oldSample.size(0) !== mappedNew.size(0))
    throw new Error(
      `sample residuals: old [${oldSample.shape}] and mapped new [${mappedNew.shape}] must be [S, D] with the same S`,
    );
  return Float32Array.from(tidy(() => noGrad(() => cosineSimilarity(oldSample, mappedNew).neg().add(1).toArray())));
}

/**
 * Per stored document (rows of `corpusOld` [N, D]): the mean residual of its `k` nearest sample
 * documents (cosine in the old space; `oldSample` [S, D]).
 */
export function predictDrift(corpusOld: Tensor, oldSample: Tensor, residuals: Float32Array, k = 10): Float32Array {
  const S = oldSample.size(0);
  if (residuals.length !== S) throw new Error(`${residuals.length} residuals for ${S} sample documents`);
  const kk = Math.min(k, S);
  const nearest = tidy(() =>
    noGrad(() => normalize(corpusOld).matmul(normalize(oldSample).T).topk(kk, 1).indices.toArray()),
  );
  const N = corpusOld.size(0);
  const out = new Float32Array(N);
  for (let i = 0; i < N; i++) {
    let s = 0;
    for (let j = 0; j < kk; j++) s += residuals[nearest[i * kk + j] as number] as number;
    out[i] = s / kk;
  }
  return out;
}
