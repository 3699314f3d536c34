/**
 * Opens a store from a URI: `lancedb:DIR` (or a plain directory) or `postgres://…#table`. `ef` is the
 * HNSW candidate list of a search (LanceDB `ef`, pgvector `hnsw.ef_search`): higher finds more of
 * the exact neighbours, more slowly.
 */
import { LanceStore } from "./lancedb.js";
import { PgVectorStore } from "./pgvector.js";
import type { StoreSchema, VectorStore } from "./store.js";

export async function openStore(
  uri: string,
  schema?: StoreSchema,
  opts: { annThreshold?: number; ef?: number } = {},
): Promise<VectorStore> {
  const { ef, ...rest } = opts;
  if (/^postgres(ql)?:\/\//.test(uri)) {
    const [conn, table] = uri.split("#") as [string, string | undefined];
    return PgVectorStore.open(conn, table ?? "qdc_vectors", schema, { ...rest, efSearch: ef });
  }
  return LanceStore.open(uri.replace(/^lancedb:/, ""), schema, { ...rest, ef });
}
