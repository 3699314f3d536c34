/** Query drift compensation: estimators that map new-model queries into an old model's space. */
export * from "./compensator.js";
export { type AutoResult, alignment, type FitOptions, fitAuto, fitCompensator, loadCompensator } from "./fit.js";
