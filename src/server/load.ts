/**
 * Embeds a corpus into a vector store with one model version (`qdc store load`), so that a load
 * cannot half-succeed unnoticed: the whole file is checked before anything is written (ids unique,
 * declared fields of their types and present in some row, every error with file:line), progress is
 * recorded in the store after every write, a rerun of the same load goes on after the rows already
 * written, and the service refuses a store whose load did not finish unless told otherwise.
 */
import { statSync } from "node:fs";
import { resolve } from "node:path";
import { chunked, InputError, readIdTexts } from "../data/texts.js";
import { versionOf } from "../lineage/index.js";
import { EmbeddingModel } from "../models/embedding-model.js";
import { embedRows } from "../retrieval/rows.js";
import type { FieldValue, LoadState, StoreSchema, StoreState, VectorStore } from "../store/store.js";

export interface LoadOptions {
  batchSize?: number;
  maxLength?: number;
  device?: string;
  onProgress?: (done: number, seconds: number) => void;
  /** told once when the load goes on after `rows` rows written by an earlier, interrupted run */
  onResume?: (rows: number) => void;
  /** test hook: exit the process (as a crash) after this many store writes */
  crashAfterWrites?: number;
  /** the rows `checkCorpus` counted when the caller has checked the corpus already */
  checkedRows?: number;
}

/** Rows written per store write (and per progress record). */
const CHUNK = 256;

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

/**
 * Reads the whole corpus once and throws at its first problem, naming file and line: a duplicate
 * id (with the line of its first occurrence), a declared field of the wrong type, or a declared
 * field no row has. Returns the number of rows.
 */
export async function checkCorpus(corpus: string, schema: StoreSchema): Promise<number> {
  const first = new Map<string, number>();
  const seen = new Set<string>();
  let rows = 0;
  for await (const x of readIdTexts(corpus)) {
    const at = first.get(x.id);
    if (at !== undefined) throw new InputError(corpus, x.line, `duplicate _id '${x.id}' (first at line ${at})`);
    first.set(x.id, x.line);
    for (const [k, type] of Object.entries(schema.fields)) {
      const v = x.row && Object.hasOwn(x.row, k) ? x.row[k] : undefined;
      if (v === undefined || v === null) continue;
      if (typeof v !== type || (type === "number" && !Number.isFinite(v)))
        throw new InputError(corpus, x.line, `field '${k}' must be a ${type}, got ${JSON.stringify(v)}`);
      seen.add(k);
    }
    rows++;
  }
  const absent = Object.keys(schema.fields).filter((k) => !seen.has(k));
  if (rows && absent.length)
    throw new Error(
      `${corpus}: no row has the declared field${absent.length > 1 ? "s" : ""} ${absent.map((k) => `'${k}'`).join(", ")} (--fields): check the name${absent.length > 1 ? "s" : ""}`,
    );
  return rows;
}

const stampOf = (file: string) => {
  const st = statSync(file);
  return `${st.size}:${Math.round(st.mtimeMs)}`;
};

/** A load the store records as not finished, as a sentence (null when there is none). */
export function unfinishedLoad(state: StoreState | null): string | null {
  const l = state?.load;
  if (!l || l.complete) return null;
  return `the store's load of ${l.corpus} stopped after ${l.done} of ${l.rows} rows (last written ${l.updatedAt})`;
}

export async function loadCorpus(
  store: VectorStore,
  modelDir: string,
  corpus: string,
  o: LoadOptions = {},
): Promise<number> {
  const version = versionOf(modelDir);
  const d = store.schema.dim;
  const rows = o.checkedRows ?? (await checkCorpus(corpus, store.schema));
  const file = resolve(corpus);
  const stamp = stampOf(file);
  const before = await store.readState();
  const prev = before?.load;
  // the same file, unchanged, with the same model: go on after what the interrupted run wrote
  const skip =
    prev && !prev.complete && prev.corpus === file && prev.stamp === stamp && prev.model === version ? prev.done : 0;
  if (skip) o.onResume?.(skip);
  const model = EmbeddingModel.load(modelDir, { device: o.device });
  if (model.dimension !== d) {
    model.dispose();
    throw new Error(`${modelDir} embeds ${model.dimension}-d vectors, the store holds ${d}-d ones`);
  }
  let load: LoadState = {
    corpus: file,
    stamp,
    model: version,
    rows,
    done: skip,
    complete: false,
    updatedAt: new Date().toISOString(),
  };
  // a store no service has served yet records the loading model as the one to serve
  const base: StoreState = before ?? { model: version, modelDir: resolve(modelDir) };
  const record = (l: LoadState) => store.writeState({ ...base, load: l });
  await record(load);
  const t0 = performance.now();
  let at = 0;
  let writes = 0;
  try {
    for await (const docs of chunked(readIdTexts(corpus), CHUNK)) {
      at += docs.length;
      if (at <= skip) continue;
      const todo = docs.slice(Math.max(0, docs.length - (at - skip)));
      const batch = todo.map((x) => {
        const fields: Record<string, FieldValue> = {};
        for (const k of Object.keys(store.schema.fields)) {
          // own keys only: a row without a field named `constructor` has none
          const v = x.row && Object.hasOwn(x.row, k) ? x.row[k] : undefined;
          if (v !== undefined && v !== null) fields[k] = v as FieldValue;
        }
        return { id: x.id, text: x.text, fields };
      });
      await store.upsert(embedRows(model, batch, version, o));
      load = { ...load, done: at, updatedAt: new Date().toISOString() };
      await record(load);
      o.onProgress?.(at, (performance.now() - t0) / 1000);
      if (o.crashAfterWrites !== undefined && ++writes >= o.crashAfterWrites) process.kill(process.pid, "SIGKILL");
    }
    // one compacted table (LanceDB) or fresh statistics (PostgreSQL) before it serves
    await store.optimize({ final: true });
    await record({ ...load, complete: true, updatedAt: new Date().toISOString() });
  } finally {
    model.dispose();
  }
  return rows;
}
