/**
 * Finding a model by id: model roots (`--models DIR`, or the `QDC_MODELS` environment variable,
 * directories separated by ':') are searched recursively for model directories, whose ids are
 * read from their lineage records (or computed). What a root holds is cached per process and
 * looked at again when an id is not found in it.
 */
import { existsSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { isModelId } from "./identity.js";
import { modelId } from "./record.js";

/** Directories never searched for models (caches, dependencies, training checkpoints). */
const SKIP = new Set(["node_modules", ".git", "checkpoint", "drift", "1_Pooling"]);
const MAX_DEPTH = 8;

/** The model roots: those given, then those of `QDC_MODELS`. */
export function modelRoots(given: string[] = []): string[] {
  const env = (process.env.QDC_MODELS ?? "").split(":").filter(Boolean);
  return [...new Set([...given, ...env].map((r) => resolve(r)))];
}

const isModelDir = (dir: string) =>
  existsSync(join(dir, "config.json")) &&
  (existsSync(join(dir, "model.safetensors")) || existsSync(join(dir, "model.safetensors.index.json")));

/** Every model directory under `root` (depth-first, in name order). */
export function modelDirs(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string, depth: number) => {
    if (isModelDir(dir)) out.push(dir);
    if (depth >= MAX_DEPTH) return;
    let entries: import("node:fs").Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return; // unreadable: nothing found there
    }
    for (const e of entries.sort((a, b) => a.name.localeCompare(b.name)))
      if (e.isDirectory() && !SKIP.has(e.name) && !e.name.startsWith(".")) walk(join(dir, e.name), depth + 1);
  };
  walk(resolve(root), 0);
  return out;
}

const scanned = new Map<string, Map<string, string>>();
/** models this process has been shown (served, upgraded from): found without a root */
const remembered = new Map<string, string>();

/** Makes the model in `dir` findable by id in this process (e.g. the model an upgrade replaced). */
export function rememberModel(dir: string): string {
  const id = modelId(dir);
  remembered.set(id, resolve(dir));
  return id;
}

function scan(root: string): Map<string, string> {
  const ids = new Map<string, string>();
  for (const dir of modelDirs(root)) {
    try {
      const id = modelId(dir);
      if (!ids.has(id)) ids.set(id, dir);
    } catch {
      // a directory that is not a loadable model is not one to find
    }
  }
  scanned.set(root, ids);
  return ids;
}

/** `dir` still holds model `id` (false when it is gone, changed, or no model any more). */
export function holdsModel(dir: string | undefined, id: string): dir is string {
  if (!dir || !existsSync(dir)) return false;
  try {
    return modelId(dir) === id;
  } catch {
    return false;
  }
}

/** The directory of model `id`: one this process remembers, or one under `roots`; else null. */
export function findModel(id: string, roots: string[]): string | null {
  const known = remembered.get(id);
  if (holdsModel(known, id)) return known;
  for (const root of roots) {
    const dir = scanned.get(root)?.get(id);
    if (holdsModel(dir, id)) return dir;
  }
  for (const root of roots) {
    const dir = scan(root).get(id);
    if (dir) return dir;
  }
  return null;
}

/**
 * The directory of a model named by `ref`: a directory as it is; an id at the `hint` path when that
 * holds it, else found (remembered, or under `roots`); an error saying where it was looked for
 * otherwise.
 */
export function locateModel(ref: string, roots: string[], hint?: string): string {
  if (!isModelId(ref)) return resolve(ref);
  if (holdsModel(hint, ref)) return resolve(hint);
  const found = findModel(ref, roots);
  if (found) return found;
  throw new Error(
    `model ${ref} not found${hint ? ` (it was at ${hint})` : ""} ${roots.length ? `under ${roots.join(", ")}` : "and no model roots are given"}: pass --models ROOT (or set QDC_MODELS) to the folder that holds it, or give its directory`,
  );
}
