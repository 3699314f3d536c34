/**
 * Fitting compensators between two model versions from texts: the texts are embedded by both
 * models, each requested method is fitted on the (old, new) pairs and saved as
 * `<newDir>/drift/<method>.safetensors` (`auto` under its own name, whatever it picked), with the
 * models and data named in its metadata. With relevance (documents and which of them each query
 * should find), `auto` ranks estimators by held-out retrieval against the old model's document
 * embeddings; without, by held-out alignment.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { EmbeddingModel } from "../models/embedding-model.js";
import { cat, tidy } from "../tensor/index.js";
import { type Method, saveCompensator } from "./compensator.js";
import { hasInverse } from "./estimators.js";
import { fitAuto, fitCompensator, heldOutRetrieval, reversePath } from "./fit.js";

export type FitMethod = Method | "auto";

export interface BetweenModelsOptions {
  oldDir: string;
  newDir: string;
  /** queries to fit on (the new task's training queries) */
  queries: string[];
  /** extra pairs from documents, embedded as documents */
  documents?: string[];
  /** relevance for `auto`: candidate documents and, per query, the rows of its relevant ones */
  relevance?: { documents: string[]; relevant: number[][] };
  methods: FitMethod[];
  /** where to write (default `<newDir>/drift`); existing files are kept unless `overwrite` */
  outDir?: string;
  /** a file per method instead of `<outDir>/<method>.safetensors` */
  outFiles?: Partial<Record<FitMethod, string>>;
  overwrite?: boolean;
  device?: string;
  batchSize?: number;
  maxLength?: number;
  prefix?: string | false;
  /** recorded in each compensator's metadata */
  fittedOn?: Record<string, unknown>;
}

export interface BetweenModelsResult {
  written: Record<string, string>;
  /** `auto`: the held-out score of every method and which it picked */
  auto?: { picked: Method; scores: Record<string, number>; criterion: string };
}

export function fitBetweenModels(o: BetweenModelsOptions): BetweenModelsResult {
  const outDir = o.outDir ?? join(o.newDir, "drift");
  const pathOf = (m: FitMethod) => o.outFiles?.[m] ?? join(outDir, `${m}.safetensors`);
  const todo = o.methods.filter((m) => o.overwrite || !existsSync(pathOf(m)));
  const written: Record<string, string> = {};
  if (!todo.length) return { written };
  const enc = { batchSize: o.batchSize, maxLength: o.maxLength, prefix: o.prefix };
  const embed = (dir: string, withRelevance: boolean) => {
    const model = EmbeddingModel.load(dir, { device: o.device });
    try {
      const q = model.encode(o.queries, { ...enc, kind: "query" });
      const pairs = o.documents?.length
        ? tidy(() => cat([q, model.encode(o.documents as string[], { ...enc, kind: "document" })]))
        : q;
      if (pairs !== q) q.dispose();
      const docs =
        withRelevance && o.relevance ? model.encode(o.relevance.documents, { ...enc, kind: "document" }) : undefined;
      return { pairs, docs };
    } finally {
      model.dispose();
    }
  };
  const wantsRetrieval = todo.includes("auto") && o.relevance !== undefined;
  const old = embed(o.oldDir, wantsRetrieval);
  const fresh = embed(o.newDir, false);
  const result: BetweenModelsResult = { written };
  try {
    for (const m of todo) {
      const fittedOn = { old: o.oldDir, new: o.newDir, pairs: old.pairs.size(0), ...o.fittedOn };
      let c: ReturnType<typeof fitCompensator>;
      if (m === "auto") {
        const offset = o.documents?.length ?? 0;
        const relevant = o.relevance && [...Array.from({ length: offset }, () => []), ...o.relevance.relevant];
        const auto = fitAuto(old.pairs, fresh.pairs, {
          retrieval: old.docs && relevant ? heldOutRetrieval(old.docs, relevant) : undefined,
        });
        c = auto.compensator;
        result.auto = { picked: c.method, scores: auto.scores, criterion: auto.criterion };
        Object.assign(fittedOn, { auto: result.auto });
      } else c = fitCompensator(m, old.pairs, fresh.pairs);
      const path = pathOf(m);
      saveCompensator(path, c, { fittedOn });
      if (!hasInverse(c.method)) {
        // no closed inverse: the map back (a rollback's old queries to the new rows) is fitted too
        const back = fitCompensator(c.method, fresh.pairs, old.pairs);
        saveCompensator(reversePath(path), back, {
          fittedOn: { ...fittedOn, old: o.newDir, new: o.oldDir, reverse: true },
        });
        back.dispose();
        written[`${m}.reverse`] = reversePath(path);
      }
      c.dispose();
      written[m] = path;
    }
  } finally {
    for (const t of [old.pairs, old.docs, fresh.pairs]) t?.dispose();
  }
  return result;
}
