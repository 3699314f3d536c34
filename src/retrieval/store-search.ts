/**
 * A search of a vector store across the model versions it holds, given each version's query
 * vectors (the query model's own, or compensated into that version's space): one store call per
 * version with every query, merged per query without duplicates — older versions' scores first put
 * on the current model's scale where a calibration is given (src/retrieval/calibration.ts). The
 * service and `qdc upgrade check` search this way.
 */
import type { Filter, StoreHit, VectorStore } from "../store/store.js";
import { type Calibration, calibrateHits } from "./calibration.js";
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
    /** per older version, the map of its scores onto the current model's scale */
    calibrations?: Record<string, Calibration>;
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
      const own = single ? hits.map((h) => h.filter((x) => x.version === v)) : hits;
      const c = opts.calibrations?.[v];
      return c ? calibrateHits(own, c) : own;
    }),
  );
  return Array.from({ length: n }, (_, i) =>
    mergeHits(
      perVersion.map((hits) => hits[i] as StoreHit[]),
      k,
    ),
  );
}
