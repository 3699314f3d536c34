/** qdc: continual learning of dense-retrieval embedding models without re-indexing. */

export * from "./drift/index.js";
export * from "./models/index.js";
export * from "./tensor/index.js";
/** The raw addon, for diagnostics and tests; use the Tensor API instead. */
export { N } from "./tensor/native.js";
