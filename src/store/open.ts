/** Opens a store from a URI: `lancedb:DIR` (or a plain directory) or `postgres://…#table`. */
import { LanceStore } from "./lancedb.js";
import { PgVectorStore } from "./pgvector.js";
import type { StoreSchema, VectorStore } from "./store.js";

export async function openStore(
  uri: string,
  schema?: StoreSchema,
  opts: { annThreshold?: number } = {},
): Promise<VectorStore> {
  if (/^postgres(ql)?:\/\//.test(uri)) {
    const [conn, table] = uri.split("#") as [string, string | undefined];
    return PgVectorStore.open(conn, table ?? "qdc_vectors", schema, opts);
  }
  return LanceStore.open(uri.replace(/^lancedb:/, ""), schema, opts);
}
