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
import { existsSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Compensator } from "../drift/compensator.js";
import { loadCompensator, loadReverse } from "../drift/fit.js";
import { readConfig } from "../models/config.js";
import { type Tensor, tidy } from "../tensor/index.js";
import { isModelId } from "./identity.js";
import type { CompensationMode, CompensatorMethod, FitMethod } from "./methods.js";
import { modelId, readLineage } from "./record.js";
import { findModel, holdsModel, modelRoots } from "./registry.js";

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
    const found = at && holdsModel(at, parent.id) ? at : findModel(parent.id, roots);
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
 * Where a compensator from the model in `modelDir` into the space of `targetId`, a model outside its
 * lineage (another family, another dimension), lives: `drift/to-<id>/<method>.safetensors`.
 */
export function edgePath(modelDir: string, targetId: string, method: CompensatorMethod | FitMethod): string {
  return join(modelDir, "drift", `to-${targetId}`, `${method}.safetensors`);
}

/** A fitted map of queries from one version's space into another's. */
interface Edge {
  from: string;
  to: string;
  file: string;
  /** the map back of `file` (the file maps `to` → `from`) */
  reverse: boolean;
}

/** The compensators that live in `dir` (of model `id`): to its parent and to models outside its lineage. */
function edgesOf(id: string, dir: string, parent: string | undefined, mode: string): Edge[] {
  const out: Edge[] = [];
  const own = join(dir, "drift", `${mode}.safetensors`);
  if (parent && existsSync(own)) out.push({ from: id, to: parent, file: own, reverse: false });
  let entries: string[] = [];
  try {
    entries = readdirSync(join(dir, "drift"));
  } catch {
    return out;
  }
  for (const e of entries) {
    const m = /^to-([0-9a-f]{16})$/.exec(e);
    const file = join(dir, "drift", e, `${mode}.safetensors`);
    if (m && existsSync(file)) out.push({ from: id, to: m[1] as string, file, reverse: false });
  }
  return out;
}

/**
 * A function mapping queries of the model in `modelDir` into the space of `target` (a version a
 * store or index holds), or an error that says what to do. Versions are the nodes of a graph whose
 * edges are fitted compensators: each model's map into its parent's space (`drift/<mode>`), its
 * maps into unrelated models' spaces (`drift/to-<id>/<mode>`: another family or dimension), and
 * the maps back of all of them (the inverse, or the reverse fit) — so a rollback reaches rows a
 * newer model re-indexed, and a sibling its sibling's. The fewest maps are composed, forward ones
 * preferred. Models are found along the lineages, among those this process remembers, and under
 * `roots`.
 */
export function compensationChain(
  modelDir: string,
  target: string,
  mode: CompensationMode,
  roots: string[] = modelRoots(),
): (q: Tensor) => Tensor {
  const chain = lineageOf(modelDir, roots);
  const start = (chain[0] as LineageEntry).id;
  const id = versionId(target);
  if (id === start || mode === "none") return (q) => q;
  // the models known: the query model's lineage, the target's, and those its maps lead to
  const dirs = new Map<string, string | null>();
  const parents = new Map<string, string>();
  const add = (entries: LineageEntry[]) =>
    entries.forEach((e, i) => {
      if (!dirs.get(e.id)) dirs.set(e.id, e.dir);
      const p = entries[i + 1];
      if (p && e.dir) parents.set(e.id, p.id);
    });
  add(chain);
  const targetDir = id === null || dirs.has(id) ? null : findModel(id, roots);
  if (targetDir) add(lineageOf(targetDir, roots));
  const edges: Edge[] = [];
  const expanded = new Set<string>();
  for (let grew = true; grew && dirs.size < 256; ) {
    grew = false;
    for (const [node, dir] of [...dirs]) {
      if (!dir || expanded.has(node)) continue;
      expanded.add(node);
      for (const e of edgesOf(node, dir, parents.get(node), mode)) {
        edges.push(e, { from: e.to, to: e.from, file: e.file, reverse: true });
        if (!dirs.has(e.to)) {
          const found = findModel(e.to, roots);
          add(found ? lineageOf(found, roots) : [{ id: e.to, dir: null }]);
          grew = true;
        }
      }
    }
  }
  // breadth first from the query model, forward maps before maps back at each step
  const via = new Map<string, Edge | null>([[start, null]]);
  for (let frontier = [start]; frontier.length && id !== null && !via.has(id); ) {
    const next: string[] = [];
    for (const reverse of [false, true])
      for (const node of frontier)
        for (const e of edges)
          if (e.from === node && e.reverse === reverse && !via.has(e.to)) {
            via.set(e.to, e);
            next.push(e.to);
          }
    frontier = next;
  }
  if (id === null || !via.has(id)) throw noPath(modelDir, target, id, mode, chain, targetDir);
  const path: Edge[] = [];
  for (let at = id; at !== start; ) {
    const e = via.get(at) as Edge;
    path.unshift(e);
    at = e.from;
  }
  const steps: Compensator[] = [];
  try {
    for (const e of path) steps.push(e.reverse ? loadReverse(e.file) : loadCompensator(e.file).compensator);
  } catch (e) {
    for (const c of steps) c.dispose();
    throw e;
  }
  return (q) => tidy(() => steps.reduce((x, c) => c.apply(x), q));
}

/** Why `target` cannot be reached from `modelDir`, with the command that would fit the missing map. */
function noPath(
  modelDir: string,
  target: string,
  id: string | null,
  mode: CompensationMode,
  chain: LineageEntry[],
  targetDir: string | null,
): Error {
  const at = chain.findIndex((e) => e.id === id);
  if (at > 0) {
    // an ancestor: the first compensator missing along the lineage
    for (let i = 0; i < at; i++) {
      const e = chain[i] as LineageEntry;
      const parent = chain[i + 1] as LineageEntry;
      const path = compensatorPath(e.dir as string, mode as FitMethod);
      if (!existsSync(path))
        return new Error(
          `no ${mode} compensator for ${describeEntry(e)} → ${describeEntry(parent)}: fit one with \`qdc drift fit --old ${parent.dir ?? parent.id} --new ${e.dir} --queries … --method ${mode} --out ${path}\``,
        );
    }
  }
  const last = chain[chain.length - 1] as LineageEntry;
  const beyond =
    last.dir === null
      ? `; the lineage goes on beyond ${last.id}, whose directory was not found: pass --models ROOT (or set QDC_MODELS) to search for it`
      : "";
  const where =
    targetDir === null && id !== null && !chain.some((e) => e.dir === null) && at < 0
      ? ` (nor is ${id} reached by a fitted map from a model found here: its directory is not under the model roots)`
      : "";
  // a mean or kernel map needs one dimension on both sides
  const dimOf = (d: string) => {
    try {
      return readConfig(join(d, "config.json")).hiddenSize;
    } catch {
      return undefined;
    }
  };
  const targetDim = targetDir === null ? undefined : dimOf(targetDir);
  const across = targetDim !== undefined && targetDim !== dimOf(modelDir);
  const method = across && (mode === "mean" || mode === "kernel") ? "affine" : mode;
  const fit = `qdc drift fit --old ${targetDir ?? `${id ?? target} --models ROOT`} --new ${modelDir} --queries … --method ${method}`;
  const then = method !== mode ? `, then search with --compensate ${method}` : "";
  // maps into its space fitted with other methods
  const others: string[] = [];
  try {
    if (id)
      for (const f of readdirSync(join(modelDir, "drift", `to-${id}`)))
        if (f.endsWith(".safetensors") && !f.endsWith(".reverse.safetensors"))
          others.push(f.replace(/\.safetensors$/, ""));
  } catch {
    // none fitted
  }
  const fitted = others.length
    ? `; maps into its space are fitted with ${others.join(", ")}: search with --compensate ${others[0]}`
    : "";
  return new Error(
    `the index holds vectors of ${target}, which is not in the lineage of ${modelDir} (${chain.map(describeEntry).join(" → ")})${where}${beyond}, and no path of ${mode} compensators leads there${fitted}: ` +
      `search with a model descended from it, re-index with this model, or fit a map into its space (\`${fit}\`${then})`,
  );
}
