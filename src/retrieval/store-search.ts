/**
 * A search of a vector store across the model versions it holds, given each version's query
 * vectors (the query model's own, or compensated into that version's space): one store call per
 * version with every query, merged per query without duplicates. The service and
 * `qdc upgrade check` search this way.
 */
import type { Filter, StoreHit, VectorStore } from "../store/store.js";
import { mergeHits } from "./hit.js";

export async function searchVersions(
  store: VectorStore,
  /** per store version, one query vector per query */
  vectors: Record<string, Float32Array[]>,
  k: number,
  opts: {
    filter?: Filter;
    /** the store holds this one version only: searched without a version filter */
    single?: boolean;
  } = {},
): Promise<StoreHit[][]> {
  const targets = Object.keys(vectors);
  const n = (vectors[targets[0] as string] ?? []).length;
  const single = opts.single === true && targets.length === 1;
  const perVersion = await Promise.all(
    targets.map(async (v) => {
      const hits = await store.searchMany(vectors[v] as Float32Array[], k, {
        filter: opts.filter,
        version: single ? undefined : v,
      });
      // a row of a version that appeared meanwhile is dropped
      return single ? hits.map((h) => h.filter((x) => x.version === v)) : hits;
    }),
  );
  return Array.from({ length: n }, (_, i) =>
    mergeHits(
      perVersion.map((hits) => hits[i] as StoreHit[]),
      k,
    ),
  );
}
