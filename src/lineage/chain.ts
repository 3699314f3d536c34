/**
 * Lineages and compensation chains. A model's lineage is the list of its ancestors by id, found
 * through the parent recorded in each model's `lineage.json`: at the relative path recorded, or
 * else by id under the model roots. Compensators that map a model's queries into its parent's
 * space live beside it as `drift/<method>.safetensors`, so a query of model t reaches rows of
 * version s along t → t−1 → … → s, and the last step needs only the child's directory: a store of
 * the parent's rows can be served with the child without the parent at hand. Rows of a descendant
 * (after a rollback) or of a sibling are reached down the tree through the maps back of the
 * descendants' compensators (`loadReverse`).
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Compensator } from "../drift/compensator.js";
import { loadCompensator, loadReverse } from "../drift/fit.js";
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
 * store or index holds), or an error that says what to do. The path goes up the query model's
 * lineage to the nearest ancestor it shares with the target, applying each model's compensator
 * (child → parent), then down the target's lineage applying the maps back (parent → child: the
 * inverse, or the reverse fit, of the child's compensator) — a rollback searches rows a newer model
 * re-indexed this way. The target's directory is needed only when it is not an ancestor: it is one
 * this process remembers or one under `roots`.
 */
export function compensationChain(
  modelDir: string,
  target: string,
  mode: CompensationMode,
  roots: string[] = modelRoots(),
): (q: Tensor) => Tensor {
  const chain = lineageOf(modelDir, roots);
  const id = versionId(target);
  let up = chain.findIndex((e) => e.id === target || e.id === id);
  let down: LineageEntry[] = [];
  if (up < 0) {
    const targetDir = id === null ? null : findModel(id, roots);
    const theirs = targetDir ? lineageOf(targetDir, roots) : [];
    const j = theirs.findIndex((e) => chain.some((c) => c.id === e.id));
    if (j < 0) {
      const last = chain[chain.length - 1] as LineageEntry;
      const beyond =
        last.dir === null
          ? `; the lineage goes on beyond ${last.id}, whose directory was not found: pass --models ROOT (or set QDC_MODELS) to search for it`
          : "";
      const where =
        targetDir === null && id !== null && !chain.some((e) => e.dir === null)
          ? ` (nor is ${id} a descendant of one found here: its directory is not under the model roots)`
          : "";
      throw new Error(
        `the index holds vectors of ${target}, which is not in the lineage of ${modelDir} (${chain.map(describeEntry).join(" → ")})${where}${beyond}: ` +
          "search with a model descended from it, or re-index with this model",
      );
    }
    up = chain.findIndex((c) => c.id === (theirs[j] as LineageEntry).id);
    down = theirs.slice(0, j + 1).reverse(); // [common ancestor, …, target]
  }
  if ((up === 0 && down.length === 0) || mode === "none") return (q) => q;
  const steps: Compensator[] = [];
  try {
    for (let i = 0; i < up; i++) {
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
    for (let i = 1; i < down.length; i++) {
      const parent = down[i - 1] as LineageEntry;
      const child = down[i] as LineageEntry;
      const path = compensatorPath(child.dir as string, mode);
      if (!existsSync(path)) {
        throw new Error(
          `no ${mode} compensator for ${describeEntry(child)} → ${describeEntry(parent)} to turn around (${describeEntry(parent)}'s queries to ${describeEntry(child)}'s rows): fit one with \`qdc drift fit --old ${parent.dir ?? parent.id} --new ${child.dir} --queries … --method ${mode} --out ${path}\``,
        );
      }
      steps.push(loadReverse(path));
    }
  } catch (e) {
    for (const c of steps) c.dispose();
    throw e;
  }
  return (q) => tidy(() => steps.reduce((x, c) => c.apply(x), q));
}
