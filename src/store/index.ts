/** Vector stores: LanceDB (embedded default) and PostgreSQL + pgvector (scale-out). */
export * from "./lancedb.js";
export * from "./open.js";
export * from "./pgvector.js";
export * from "./store.js";
