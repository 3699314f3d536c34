/** qdc: continual learning of dense-retrieval embedding models without re-indexing. */
export * from "./tensor/index.js";
