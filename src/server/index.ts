/**
 * The search service: `SearchService` (search with compensation across versions, zero-downtime
 * upgrades, rollback), the background `Reindexer`, the HTTP app (`buildApp`), corpus loading and
 * the pre-cutover check.
 */
export * from "./encoder.js";
export { buildApp, type HttpOptions, modelName, redactPaths } from "./http.js";
export * from "./load.js";
export * from "./reindex.js";
export * from "./service.js";
export * from "./upgrade-check.js";
