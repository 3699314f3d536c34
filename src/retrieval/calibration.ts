/**
 * Score calibration between model versions for mixed-version search. A query's cosine scores
 * against rows of an older version (through compensation) and against rows of the current model
 * are not on one scale: a fine-tuned model's own documents score higher across the board, so
 * merging raw scores lets a few re-embedded rows crowd out every older one (measured in the
 * benchmark's re-index curves: 5% re-embedded took nDCG@10 from 48.6 to 3.3 on one task). Reference
 * documents embedded by both versions put them on one scale: per query, the older version's
 * scores are mapped so that the reference documents' scores have the mean and spread they have
 * under the current model.
 */
import type { Hit } from "./hit.js";

/** Rows of an older version, embedded by both versions, that a calibration is computed from. */
export const CALIBRATION_ROWS = 256;

/** Per query: score_current ≈ scale · score_old + shift. */
export interface Calibration {
  scale: Float32Array;
  shift: Float32Array;
}

/** Reference rows: the same documents embedded by an older version (`old`) and the current model (`new`). */
export interface Reference {
  old: ArrayLike<number>[];
  new: ArrayLike<number>[];
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] as number) * (b[i] as number);
  return s;
}

/** Mean and standard deviation of one query's scores against reference rows. */
function moments(q: ArrayLike<number>, rows: ArrayLike<number>[]): [number, number] {
  let s = 0;
  let s2 = 0;
  for (const r of rows) {
    const v = dot(q, r);
    s += v;
    s2 += v * v;
  }
  const m = s / rows.length;
  return [m, Math.sqrt(Math.max(0, s2 / rows.length - m * m))];
}

/**
 * The per-query affine maps from an older version's scores to the current model's: `qOld` are the
 * queries as searched against the older version (compensated), `qNew` against the current one.
 * Needs at least two reference documents.
 */
export function calibrate(qOld: ArrayLike<number>[], qNew: ArrayLike<number>[], ref: Reference): Calibration {
  const R = ref.old.length;
  if (R < 2 || ref.new.length !== R)
    throw new Error(
      `score calibration needs the same ≥ 2 reference documents in both versions, got ${R} and ${ref.new.length}`,
    );
  if (qOld.length !== qNew.length) throw new Error(`${qOld.length} old-side and ${qNew.length} new-side queries`);
  const M = qOld.length;
  const scale = new Float32Array(M);
  const shift = new Float32Array(M);
  for (let i = 0; i < M; i++) {
    const [mo, so] = moments(qOld[i] as ArrayLike<number>, ref.old);
    const [mn, sn] = moments(qNew[i] as ArrayLike<number>, ref.new);
    const a = so > 1e-6 ? sn / so : 1;
    scale[i] = a;
    shift[i] = mn - a * mo;
  }
  return { scale, shift };
}

/** Hits of an older version with their scores put on the current model's scale (new objects). */
export function calibrateHits<H extends Hit>(hits: H[][], c: Calibration): H[][] {
  return hits.map((list, i) => {
    const a = c.scale[i] as number;
    const b = c.shift[i] as number;
    return list.map((h) => ({ ...h, score: a * h.score + b }));
  });
}
