/**
 * The continual-retrieval benchmark's run file (YAML, validated with zod; paths relative to the
 * file). Four ship with qdc: configs/tiny.yaml (the main job), cpu.yaml, gpu.yaml and cdr.yaml.
 */
import { existsSync, readdirSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { z } from "zod";
import { readYamlConfig } from "../data/yaml-config.js";

const OfflineData = z
  .object({
    kind: z.literal("offline"),
    /** where the built benchmark folder goes */
    dir: z.string(),
    tasks: z.array(z.enum(["debian", "wordnet", "foldoc", "man", "python"])).nonempty(),
    train_pairs: z.number().int().positive(),
    test_queries: z.number().int().positive(),
    corpus: z.number().int().positive(),
    general_pairs: z.number().int().positive(),
    max_words: z.number().int().positive().default(128),
  })
  .strict();

const BeirTask = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9._-]+$/),
    /** training rows (contrastors-style JSONL/JSONL.gz: query, document, negatives) */
    train: z.array(z.string()).nonempty(),
    /** BEIR folder for evaluation */
    eval: z.string(),
    split: z.string().default("test"),
  })
  .strict();

const BeirData = z.object({ kind: z.literal("beir"), tasks: z.array(BeirTask).nonempty() }).strict();

const Pretrain = z
  .object({
    vocab: z.number().int().min(100),
    hidden: z.number().int().positive(),
    layers: z.number().int().positive(),
    heads: z.number().int().positive(),
    intermediate: z.number().int().positive(),
    max_positions: z.number().int().positive().default(512),
    /** hidden and attention dropout of the new model (BERT's 0.1 by default) */
    dropout: z.number().min(0).max(1).default(0.1),
    steps: z.number().int().positive(),
    batch_size: z.number().int().positive(),
    lr: z.number().positive(),
    warmup: z.number().int().nonnegative().default(0),
  })
  .strict();

const Train = z
  .object({
    steps: z.number().int().positive(),
    batch_size: z.number().int().positive(),
    lr: z.number().positive(),
    warmup: z.number().int().nonnegative().default(0),
    negatives: z.number().int().nonnegative().default(0),
    kd_query: z.number().nonnegative().default(1),
    kd_doc: z.number().nonnegative().default(1),
    precision: z.enum(["auto", "bf16", "fp32"]).default("auto"),
    grad_cache: z.number().int().positive().optional(),
  })
  .strict();

export const BenchmarkConfig = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9._-]+$/),
    out: z.string(),
    device: z.string().default("cpu"),
    /** the data's seed (its split and samples), and the models' where `seeds` is not given */
    seed: z.number().int().nonnegative().default(0),
    /**
     * training seeds: the stages in `per_seed` run once per seed (in <out>/seed-<s>), the rest once
     * (with the first seed); results are reported as mean ± std over seeds with paired comparisons
     */
    seeds: z.array(z.number().int().nonnegative()).nonempty().optional(),
    /** what is repeated per seed: the fine-tuning chains and their evaluation always, base and joint if listed */
    per_seed: z
      .array(z.enum(["base", "train", "joint"]))
      .default(["base", "train", "joint"])
      .refine((l) => l.includes("train"), { message: "per_seed must include train (the chains the seeds compare)" }),
    /** tokens per text everywhere (training, indexing, queries) */
    max_length: z.number().int().positive().default(128),
    /** texts per forward pass when embedding */
    batch_size: z.number().int().positive().default(64),
    data: z.discriminatedUnion("kind", [OfflineData, BeirData]),
    base: z.union([z.object({ init: z.string() }).strict(), z.object({ pretrain: Pretrain }).strict()]),
    /** hard negatives per training pair mined with the base model (0: keep the data's own) */
    mine_negatives: z.number().int().nonnegative().default(0),
    train: Train,
    /** joint training (the upper bound) after every task, after the last only, or not at all */
    joint: z.enum(["every", "final", "none"]).default("final"),
    /** training queries per step to fit drift compensators on */
    drift_queries: z.number().int().positive().default(2000),
    /**
     * re-index curves after the last task: nDCG of each old task with a fraction of its corpus
     * re-embedded by the final model (the rest compensated), for three orders; `traffic` training
     * queries simulate the service's retrieval counts, `sample` documents estimate drift
     */
    reindex_curves: z
      .union([
        z
          .object({
            fractions: z
              .array(z.number().min(0).max(1))
              .default([0, 0.05, 0.1, 0.25, 0.5, 1])
              .refine(
                (f) => f[0] === 0 && f[f.length - 1] === 1 && f.every((v, i) => i === 0 || v > (f[i - 1] as number)),
                {
                  message: "fractions must rise from 0 to 1 (no re-embedding … a full re-index)",
                },
              ),
            traffic: z.number().int().positive().default(1000),
            sample: z.number().int().positive().default(1000),
          })
          .strict(),
        z.literal(false),
      ])
      .default({ fractions: [0, 0.05, 0.1, 0.25, 0.5, 1], traffic: 1000, sample: 1000 }),
    eval: z
      .object({
        measure: z.string().default("ndcg_cut.10"),
        extra: z.array(z.string()).default(["recall.100", "recip_rank.10"]),
        k: z.number().int().positive().default(100),
      })
      .strict()
      .default({ measure: "ndcg_cut.10", extra: ["recall.100", "recip_rank.10"], k: 100 }),
  })
  .strict();
export type BenchmarkConfig = z.infer<typeof BenchmarkConfig>;

/** Reads a run file; `name` may also be one of the shipped configs (tiny, cpu, gpu, cdr). */
export function readBenchmarkConfig(pathOrName: string, overrides: { out?: string } = {}): BenchmarkConfig {
  const configs = new URL("../../../configs/", import.meta.url).pathname;
  const shipped = resolve(configs, `${pathOrName}.yaml`);
  const path = /^[a-z0-9-]+$/.test(pathOrName) ? shipped : pathOrName;
  if (!existsSync(path)) {
    const names = readdirSync(configs)
      .filter((f) => f.endsWith(".yaml"))
      .map((f) => f.slice(0, -5))
      .sort();
    throw new Error(
      path === shipped
        ? `no shipped config '${pathOrName}' (shipped: ${names.join(", ")}); or give the path of a YAML run file`
        : `${path}: no such config file (shipped configs: ${names.join(", ")})`,
    );
  }
  const c = readYamlConfig(path, BenchmarkConfig);
  const base = dirname(resolve(path));
  // shipped configs resolve their data and run folders against the working directory
  const rel = path === shipped ? process.cwd() : base;
  const abs = (p: string) => (isAbsolute(p) ? p : join(rel, p));
  const data =
    c.data.kind === "offline"
      ? { ...c.data, dir: abs(c.data.dir) }
      : { ...c.data, tasks: c.data.tasks.map((t) => ({ ...t, train: t.train.map(abs), eval: abs(t.eval) })) };
  const baseModel = "init" in c.base ? { init: abs(c.base.init) } : c.base;
  return { ...c, out: abs(overrides.out ?? c.out), data, base: baseModel };
}
