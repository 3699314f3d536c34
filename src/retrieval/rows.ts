/** Embeddings as plain float32 rows, and documents embedded into store rows. */
import type { EmbeddingModel } from "../models/embedding-model.js";
import { type Tensor, tidy } from "../tensor/index.js";
import type { FieldValue } from "./hit.js";

/** The rows of a [N, D] tensor as float32 arrays (views of one buffer). */
export function tensorRows(t: Tensor): Float32Array[] {
  const d = t.size(1);
  const flat = tidy(() => t.float().contiguous().data() as Float32Array);
  return Array.from({ length: t.size(0) }, (_, i) => flat.subarray(i * d, (i + 1) * d));
}

export interface DocumentRow {
  id: string;
  text: string;
  fields?: Record<string, FieldValue>;
}

/** Document embeddings [N, D] as rows of `version`, fields kept (the shape every store writes). */
export function asRows<D extends DocumentRow>(
  docs: D[],
  vectors: Float32Array[],
  version: string,
): (DocumentRow & { version: string; vector: Float32Array })[] {
  return docs.map((x, i) => ({
    id: x.id,
    text: x.text,
    fields: x.fields,
    version,
    vector: vectors[i] as Float32Array,
  }));
}

/** Documents embedded by `model` as store rows of `version` (fields kept). */
export function embedRows(
  model: EmbeddingModel,
  docs: DocumentRow[],
  version: string,
  o: { batchSize?: number; maxLength?: number } = {},
): (DocumentRow & { version: string; vector: Float32Array })[] {
  const emb = model.encode(
    docs.map((x) => x.text),
    { kind: "document", batchSize: o.batchSize, maxLength: o.maxLength },
  );
  try {
    return asRows(docs, tensorRows(emb), version);
  } finally {
    emb.dispose();
  }
}
