/** Query drift compensation: estimators that map new-model queries into an old model's space. */
export * from "./between-models.js";
export * from "./compensator.js";
export { hasInverse, invert } from "./estimators.js";
export {
  type AutoResult,
  alignment,
  type FitOptions,
  fitAuto,
  fitCompensator,
  type HeldOut,
  heldOutRetrieval,
  loadCompensator,
  loadReverse,
  reversePath,
} from "./fit.js";
export * from "./predicted-drift.js";
export * from "./task-drift.js";
