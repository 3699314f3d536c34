/** The retrieval path shared by the CLI, the benchmark and the service. */
export * from "./calibration.js";
export * from "./hit.js";
export * from "./reindex-order.js";
export * from "./router.js";
export * from "./rows.js";
export * from "./store-search.js";
