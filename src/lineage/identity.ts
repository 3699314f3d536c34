/**
 * A model version is an id derived from its content: the first 16 hex digits of a SHA-256 over
 * the files that decide its embeddings (config, weights, tokenizer, pooling and prompt settings),
 * each with its name and size. The same weights give the same id on every machine and under any
 * path, so a run folder can be moved, copied or served elsewhere and the stores it built still
 * name their rows' model.
 *
 * Hashing reads every weight byte (about 1 s per 400 MB), so the id is cached: in memory, and in
 * the model's `lineage.json` with the size and modification time of every hashed file — a file
 * written since (weights copied over) makes the record stale and the id is computed again.
 */
import { createHash } from "node:crypto";
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { join, resolve } from "node:path";

/** A model id: 16 lowercase hex digits. */
export const isModelId = (s: string): boolean => /^[0-9a-f]{16}$/.test(s);

/** Files beside the weights that change what a model embeds (those present are hashed). */
const SETTINGS = [
  "config.json",
  "tokenizer.json",
  "vocab.txt",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "config_sentence_transformers.json",
  "modules.json",
  "1_Pooling/config.json",
];

/** The files whose content is a model's identity, relative to its directory, in hashing order. */
export function identityFiles(dir: string): string[] {
  if (!existsSync(dir)) throw new Error(`${dir}: no such model directory`);
  if (!existsSync(join(dir, "config.json")))
    throw new Error(`${dir}: no config.json (expected a Hugging Face model directory)`);
  const files = SETTINGS.filter((f) => existsSync(join(dir, f)));
  const index = join(dir, "model.safetensors.index.json");
  if (existsSync(index)) {
    let map: Record<string, string>;
    try {
      map = (JSON.parse(readFileSync(index, "utf8")) as { weight_map: Record<string, string> }).weight_map;
    } catch (e) {
      throw new Error(`${index}: not a safetensors index (${(e as Error).message})`);
    }
    files.push("model.safetensors.index.json", ...[...new Set(Object.values(map))].sort());
  } else if (existsSync(join(dir, "model.safetensors"))) files.push("model.safetensors");
  else throw new Error(`${dir}: no model.safetensors (or model.safetensors.index.json) to identify the model by`);
  return files;
}

/** size:mtime of each file, as recorded beside a cached id */
export type FileStamps = Record<string, string>;

export function stampsOf(dir: string, files: string[]): FileStamps {
  const out: FileStamps = {};
  for (const f of files) {
    const st = statSync(join(dir, f));
    out[f] = `${st.size}:${Math.round(st.mtimeMs)}`;
  }
  return out;
}

/** The content id of the model in `dir`, computed from its files (no cache). */
export function hashModel(dir: string): string {
  const h = createHash("sha256");
  const buf = Buffer.allocUnsafe(1 << 22);
  for (const f of identityFiles(dir)) {
    const path = join(dir, f);
    h.update(`${f}\0${statSync(path).size}\0`);
    const fd = openSync(path, "r");
    try {
      for (let n = readSync(fd, buf); n > 0; n = readSync(fd, buf)) h.update(buf.subarray(0, n));
    } finally {
      closeSync(fd);
    }
  }
  return h.digest("hex").slice(0, 16);
}

const memo = new Map<string, { stamps: string; id: string }>();

/**
 * The id of the model in `dir`: from memory or from the id `recorded` with its file stamps when
 * every hashed file is unchanged, else hashed anew (always with `fresh`: files just written may
 * keep their size and, within a millisecond, their stamp).
 */
export function contentId(dir: string, recorded?: { id?: unknown; files?: unknown }, fresh = false): string {
  const abs = resolve(dir);
  const files = identityFiles(abs);
  const stamps = stampsOf(abs, files);
  const key = JSON.stringify(stamps);
  if (fresh) {
    const id = hashModel(abs);
    memo.set(abs, { stamps: key, id });
    return id;
  }
  const m = memo.get(abs);
  if (m && m.stamps === key) return m.id;
  let id: string | undefined;
  if (
    typeof recorded?.id === "string" &&
    isModelId(recorded.id) &&
    recorded.files &&
    JSON.stringify(recorded.files) === key
  )
    id = recorded.id;
  id ??= hashModel(abs);
  memo.set(abs, { stamps: key, id });
  return id;
}
