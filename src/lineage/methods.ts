/**
 * The compensation methods, in one place: what `qdc drift fit` fits, what the continual runner
 * fits after each task and what a search or the service can compensate with. A leaf module (no
 * imports), so the drift estimators below the lineage can name their methods from here too.
 */

/**
 * The fitted compensators: mean drift (QDC), kernel, Procrustes, low-rank affine, residual MLP,
 * and local adapters (an affine map per cluster of the new space, queries routed softly).
 * Procrustes, affine, MLP and local also map between models of different dimensions.
 */
export const COMPENSATORS = ["mean", "kernel", "procrustes", "affine", "mlp", "local"] as const;
/** The compensators that map between embedding spaces of different dimensions. */
export const CROSS_DIMENSION: readonly CompensatorMethod[] = ["procrustes", "affine", "mlp", "local"];
export type CompensatorMethod = (typeof COMPENSATORS)[number];

/** What a fit may ask for: one compensator, or `auto` (each fitted, the best on held-out pairs kept). */
export const FIT_METHODS = [...COMPENSATORS, "auto"] as const;
export type FitMethod = (typeof FIT_METHODS)[number];

/** How a query reaches rows of an older version: a fitted method, `auto`'s pick, or `none`. */
export const COMPENSATION_MODES = ["auto", ...COMPENSATORS, "none"] as const;
export type CompensationMode = (typeof COMPENSATION_MODES)[number];

export function isCompensationMode(s: string): s is CompensationMode {
  return (COMPENSATION_MODES as readonly string[]).includes(s);
}
