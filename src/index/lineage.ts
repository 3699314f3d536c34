/**
 * Model lineage and compensation chains. A trained model directory records its parent in
 * `lineage.json` ({ "parent": DIR, ... }, written by the continual runner); compensators that map
 * a model's queries into its parent's space live beside it as `drift/<method>.safetensors`. A query
 * from model t for an index built by version s is compensated along t → t−1 → … → s.
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Compensator } from "../drift/compensator.js";
import { loadCompensator } from "../drift/fit.js";
import { type Tensor, tidy } from "../tensor/index.js";

export type CompensationMode = "none" | "mean" | "kernel" | "procrustes" | "affine" | "mlp" | "auto";

/** The model directories from `dir` up to the root: [dir, parent, grandparent, …] (resolved paths). */
export function lineageOf(dir: string): string[] {
  const chain: string[] = [];
  let cur: string | null = resolve(dir);
  while (cur && !chain.includes(cur)) {
    chain.push(cur);
    const file = join(cur, "lineage.json");
    if (!existsSync(file)) break;
    let record: { parent?: unknown };
    try {
      record = JSON.parse(readFileSync(file, "utf8")) as { parent?: unknown };
    } catch (e) {
      throw new Error(
        `${file}: not a readable lineage record (${(e as Error).message}); it holds the model's parent as {"parent": DIR}`,
      );
    }
    const parent = record?.parent;
    cur = typeof parent === "string" ? resolve(cur, parent) : null;
  }
  return chain;
}

export function compensatorPath(modelDir: string, method: Exclude<CompensationMode, "none">): string {
  return join(modelDir, "drift", `${method}.safetensors`);
}

/**
 * A function mapping queries of `modelDir` into the space of `indexVersion` (a model directory),
 * or an error that says what to do.
 */
export function compensationChain(
  modelDir: string,
  indexVersion: string,
  mode: CompensationMode,
): (q: Tensor) => Tensor {
  const chain = lineageOf(modelDir);
  const target = resolve(indexVersion);
  const at = chain.indexOf(target);
  if (at < 0) {
    throw new Error(
      `the index holds vectors of ${target}, which is not in the lineage of ${resolve(modelDir)} (${chain.join(" → ")}): ` +
        "search with a model descended from it, or re-index with this model",
    );
  }
  if (at === 0 || mode === "none") return (q) => q;
  const steps: Compensator[] = [];
  for (const dir of chain.slice(0, at)) {
    const path = compensatorPath(dir, mode);
    if (!existsSync(path)) {
      const parent = chain[chain.indexOf(dir) + 1];
      throw new Error(
        `no ${mode} compensator for ${dir} → ${parent}: fit one with \`qdc drift fit --old ${parent} --new ${dir} --queries … --method ${mode} --out ${path}\``,
      );
    }
    steps.push(loadCompensator(path).compensator);
  }
  return (q) => tidy(() => steps.reduce((x, c) => c.apply(x), q));
}
