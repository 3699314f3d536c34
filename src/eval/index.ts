/** Evaluation exactly as trec_eval, TREC runs, and the continual-retrieval benchmark. */

export { readQrels } from "../data/beir.js";
export * from "./config.js";
export * from "./metrics.js";
export { prepareBase, prepareData, runBenchmark } from "./protocol.js";
export * from "./report.js";
export * from "./trec.js";
