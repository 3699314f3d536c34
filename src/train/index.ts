/** Continual contrastive training: one task (`train`), a run of tasks (`runContinual`), the losses. */
export * from "./continual.js";
export * from "./losses.js";
export * from "./schedule.js";
export * from "./trainer.js";
