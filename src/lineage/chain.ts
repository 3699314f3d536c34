/**
 * Lineages and compensation chains. A model's lineage is the list of its ancestors by id, found
 * through the parent recorded in each model's `lineage.json`: at the relative path recorded, or
 * else by id under the model roots. Compensators that map a model's queries into its parent's
 * space live beside it as `drift/<method>.safetensors`, so a query of model t reaches rows of
 * version s along t → t−1 → … → s, and the last step needs only the child's directory: a store of
 * the parent's rows can be served with the child without the parent at hand.
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Compensator } from "../drift/compensator.js";
import { loadCompensator } from "../drift/fit.js";
import { type Tensor, tidy } from "../tensor/index.js";
import { isModelId } from "./identity.js";
import type { CompensationMode, CompensatorMethod, FitMethod } from "./methods.js";
import { modelId, readLineage } from "./record.js";
import { findModel, modelRoots } from "./registry.js";

export interface LineageEntry {
  /** the model's content id */
  id: string;
  /** its directory; null for an ancestor recorded by id whose directory was not found */
  dir: string | null;
}

/** A version as messages show it: the id with its directory, or a path version as it is. */
export const describeEntry = (e: LineageEntry) => (e.dir ? `${e.id} (${e.dir})` : `${e.id} (not found)`);

/**
 * The lineage of the model in `dir`: [itself, parent, grandparent, …]. An ancestor whose directory
 * is neither at its recorded path nor under `roots` ends the list, as an entry without a directory.
 */
export function lineageOf(dir: string, roots: string[] = modelRoots()): LineageEntry[] {
  const chain: LineageEntry[] = [];
  let cur: string | null = resolve(dir);
  while (cur) {
    const id = modelId(cur);
    if (chain.some((e) => e.id === id)) break; // a cycle of records
    chain.push({ id, dir: cur });
    const parent = readLineage(cur)?.parent;
    if (!parent) break;
    if (typeof parent === "string") {
      // a record of an earlier release: the parent's path
      const p = resolve(cur, parent);
      cur = existsSync(p) ? p : null;
      continue;
    }
    if (typeof parent !== "object" || typeof parent.id !== "string")
      throw new Error(`${join(cur, "lineage.json")}: "parent" must be {"id": ID, "path": DIR} or null`);
    const at = typeof parent.path === "string" ? resolve(cur, parent.path) : null;
    const found = at && existsSync(at) && safeId(at) === parent.id ? at : findModel(parent.id, roots);
    if (!found) {
      chain.push({ id: parent.id, dir: null });
      break;
    }
    cur = found;
  }
  return chain;
}

function safeId(dir: string): string | null {
  try {
    return modelId(dir);
  } catch {
    return null;
  }
}

/**
 * The id a store or index version names: an id as it is; a path version (of earlier releases) as
 * the id of the model found there, or null when it is gone.
 */
export function versionId(version: string): string | null {
  if (isModelId(version)) return version;
  return existsSync(version) ? safeId(version) : null;
}

/** The version a model directory gives the rows it embeds. */
export const versionOf = (dir: string): string => modelId(dir);

export function compensatorPath(modelDir: string, method: CompensatorMethod | FitMethod): string {
  return join(modelDir, "drift", `${method}.safetensors`);
}

/**
 * A function mapping queries of the model in `modelDir` into the space of `target` (a version a
 * store or index holds), or an error that says what to do.
 */
export function compensationChain(
  modelDir: string,
  target: string,
  mode: CompensationMode,
  roots: string[] = modelRoots(),
): (q: Tensor) => Tensor {
  const chain = lineageOf(modelDir, roots);
  const id = versionId(target);
  const at = chain.findIndex((e) => e.id === target || e.id === id);
  if (at < 0) {
    const last = chain[chain.length - 1] as LineageEntry;
    const beyond =
      last.dir === null
        ? `; the lineage goes on beyond ${last.id}, whose directory was not found: pass --models ROOT (or set QDC_MODELS) to search for it`
        : "";
    throw new Error(
      `the index holds vectors of ${target}, which is not in the lineage of ${modelDir} (${chain.map(describeEntry).join(" → ")})${beyond}: ` +
        "search with a model descended from it, or re-index with this model",
    );
  }
  if (at === 0 || mode === "none") return (q) => q;
  const steps: Compensator[] = [];
  for (let i = 0; i < at; i++) {
    const e = chain[i] as LineageEntry;
    const parent = chain[i + 1] as LineageEntry;
    const path = compensatorPath(e.dir as string, mode);
    if (!existsSync(path)) {
      throw new Error(
        `no ${mode} compensator for ${describeEntry(e)} → ${describeEntry(parent)}: fit one with \`qdc drift fit --old ${parent.dir ?? parent.id} --new ${e.dir} --queries … --method ${mode} --out ${path}\``,
      );
    }
    steps.push(loadCompensator(path).compensator);
  }
  return (q) => tidy(() => steps.reduce((x, c) => c.apply(x), q));
}
