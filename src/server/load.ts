/** Embeds a corpus into a vector store with one model version (`qdc store load`). */
import { chunked, readIdTexts } from "../data/texts.js";
import { versionOf } from "../lineage/index.js";
import { EmbeddingModel } from "../models/embedding-model.js";
import { embedRows } from "../retrieval/rows.js";
import type { FieldValue, StoreSchema, VectorStore } from "../store/store.js";

export interface LoadOptions {
  batchSize?: number;
  maxLength?: number;
  device?: string;
  onProgress?: (done: number, seconds: number) => void;
}

/** Parses `name:type,…` (types string or number) into a schema's fields. */
export function parseFields(spec: string | undefined): StoreSchema["fields"] {
  const out: StoreSchema["fields"] = {};
  for (const part of (spec ?? "").split(",").filter(Boolean)) {
    const [name, type] = part.split(":") as [string, string | undefined];
    if (type !== "string" && type !== "number")
      throw new Error(`--fields ${spec}: '${part}' must be name:string or name:number`);
    out[name] = type;
  }
  return out;
}

export async function loadCorpus(
  store: VectorStore,
  modelDir: string,
  corpus: string,
  o: LoadOptions = {},
): Promise<number> {
  const model = EmbeddingModel.load(modelDir, { device: o.device });
  const version = versionOf(modelDir);
  const d = store.schema.dim;
  if (model.dimension !== d)
    throw new Error(`${modelDir} embeds ${model.dimension}-d vectors, the store holds ${d}-d ones`);
  const t0 = performance.now();
  let done = 0;
  try {
    for await (const docs of chunked(readIdTexts(corpus), 256)) {
      const rows = docs.map((x) => {
        const fields: Record<string, FieldValue> = {};
        for (const k of Object.keys(store.schema.fields)) {
          // own keys only: a row without a field named `constructor` has none
          const v = x.row && Object.hasOwn(x.row, k) ? x.row[k] : undefined;
          if (v !== undefined && v !== null) fields[k] = v as FieldValue;
        }
        return { id: x.id, text: x.text, fields };
      });
      await store.upsert(embedRows(model, rows, version, o));
      done += docs.length;
      o.onProgress?.(done, (performance.now() - t0) / 1000);
    }
    // one compacted table (LanceDB) or fresh statistics (PostgreSQL) before it serves
    await store.optimize();
  } finally {
    model.dispose();
  }
  return done;
}
