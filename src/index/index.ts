/** The versioned exact index: embeddings by shard with each shard's model version, bounded memory. */
export * from "./exact-index.js";
