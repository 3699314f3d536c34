/**
 * The continual runner: a YAML file lists tasks in order; each task fine-tunes the previous task's
 * model (the first starts from `init`) and writes `<out>/<run>/<task>/` (a model directory with
 * train.log.jsonl and `lineage.json` naming its parent). Rerunning skips finished tasks and
 * resumes the interrupted one from its checkpoint.
 *
 *   run: demo
 *   out: runs                 # default "runs"
 *   init: models/base
 *   defaults: { batch_size: 32, negatives: 7, lr: 2e-5, warmup: 100, kd: true }
 *   drift: { methods: [mean, auto], queries: 2000 }   # compensators fitted after each task
 *   tasks:
 *     - name: msmarco
 *       data: [data/msmarco-0.jsonl.gz, data/msmarco-1.jsonl.gz]   # or beir: {dir: data/nq, split: train}
 *       steps: 1000                                                  # or epochs: 1
 */

import { existsSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { z } from "zod";
import { type RowSource, RowStream } from "../data/pairs.js";
import { readYamlConfig } from "../data/yaml-config.js";
import { FIT_METHODS } from "../lineage/methods.js";
import { barrier } from "../tensor/index.js";
import { agreeAcrossRanks, joinGroupFromEnv } from "./distributed.js";
import { type TrainOptions, train } from "./trainer.js";

const TaskSettings = z
  .object({
    batch_size: z.number().int().positive(),
    negatives: z.number().int().nonnegative(),
    lr: z.number().nonnegative(),
    warmup: z.number().int().nonnegative(),
    weight_decay: z.number().nonnegative(),
    kd: z.boolean(),
    kd_query: z.number().nonnegative(),
    kd_doc: z.number().nonnegative(),
    logit_scale: z.number().positive(),
    trainable_scale: z.boolean(),
    grad_cache: z.number().int().positive(),
    precision: z.enum(["auto", "bf16", "fp32"]),
    bidirectional: z.boolean(),
    clip: z.number().nonnegative(),
    accumulation: z.number().int().positive(),
    shuffle: z.boolean(),
    prefix: z.boolean(),
    seed: z.number().int().nonnegative(),
    max_length: z.number().int().positive(),
    checkpoint_every: z.number().int().positive(),
  })
  .partial()
  .strict();

const Task = TaskSettings.extend({
  name: z.string().regex(/^[A-Za-z0-9._-]+$/, "task names are file names: letters, digits, . _ -"),
  data: z.array(z.string()).nonempty().optional(),
  beir: z
    .object({ dir: z.string(), split: z.string().default("train") })
    .strict()
    .optional(),
  steps: z.number().int().positive().optional(),
  epochs: z.number().positive().optional(),
})
  .strict()
  .refine((t) => (t.data ? 1 : 0) + (t.beir ? 1 : 0) === 1, { message: "give exactly one of 'data' and 'beir'" })
  .refine((t) => (t.steps ? 1 : 0) + (t.epochs ? 1 : 0) === 1, { message: "give exactly one of 'steps' and 'epochs'" });

export const RunConfig = z
  .object({
    run: z.string().regex(/^[A-Za-z0-9._-]+$/),
    out: z.string().default("runs"),
    init: z.string(),
    device: z.string().default("cpu"),
    defaults: TaskSettings.default({}),
    /** compensators fitted after each task on its training queries (false: none) */
    drift: z
      .union([
        z.literal(false),
        z
          .object({
            methods: z.array(z.enum(FIT_METHODS)).nonempty(),
            queries: z.number().int().positive().default(2000),
          })
          .strict(),
      ])
      .default({ methods: ["mean"], queries: 2000 }),
    tasks: z.array(Task).nonempty(),
  })
  .strict()
  .refine((c) => new Set(c.tasks.map((t) => t.name)).size === c.tasks.length, { message: "task names must be unique" });
export type RunConfig = z.infer<typeof RunConfig>;

/** Reads and validates a run file; paths in it are relative to the file. */
export function readRunConfig(path: string): RunConfig {
  const c = readYamlConfig(path, RunConfig);
  const base = dirname(resolve(path));
  const abs = (p: string) => (isAbsolute(p) ? p : join(base, p));
  return {
    ...c,
    out: abs(c.out),
    init: abs(c.init),
    tasks: c.tasks.map((t) => ({
      ...t,
      data: t.data?.map(abs) as typeof t.data,
      beir: t.beir ? { ...t.beir, dir: abs(t.beir.dir) } : undefined,
    })),
  } as RunConfig;
}

/** What a finished task hands to `afterTask` (e.g. to fit drift compensators). */
export interface FinishedTask {
  index: number;
  name: string;
  parent: string;
  dir: string;
  data: RowSource;
}

export async function runContinual(
  config: RunConfig,
  opts: {
    progress?: boolean;
    log?: (msg: string) => void;
    /** called after each task, also for tasks finished earlier (so it must be idempotent) */
    afterTask?: (t: FinishedTask) => Promise<void>;
  } = {},
): Promise<string[]> {
  const log = opts.log ?? ((m: string) => console.error(m));
  // data parallel (the ranks of a group run this together): rank 0 does the after-task work, the
  // others wait for it before the next task starts from its files
  const group = joinGroupFromEnv();
  const after = async (t: FinishedTask) => {
    if ((group?.rank ?? 0) === 0) await opts.afterTask?.(t);
    if (group) barrier();
  };
  const dirs: string[] = [];
  let parent = config.init;
  for (const [index, task] of config.tasks.entries()) {
    const s = { ...config.defaults, ...task };
    const out = join(config.out, config.run, task.name);
    const lineagePath = join(out, "lineage.json");
    const data: RowSource = task.data ?? {
      beir: (task.beir as { dir: string }).dir,
      split: (task.beir as { split: string }).split,
    };
    const done = existsSync(lineagePath);
    agreeAcrossRanks([done ? 1 : 0], `whether task ${task.name} is done (${lineagePath})`);
    if (done) {
      log(`task ${index + 1}/${config.tasks.length} ${task.name}: done earlier, skipped`);
      await after({ index, name: task.name, parent, dir: out, data });
      dirs.push(out);
      parent = out;
      continue;
    }
    const batchSize = s.batch_size ?? 32;
    let steps = task.steps ?? 0;
    if (!steps)
      steps = Math.max(1, Math.ceil(((await new RowStream(data).count()) * (task.epochs as number)) / batchSize));
    const kd = s.kd ?? false;
    const options: TrainOptions = {
      data,
      init: parent,
      out,
      batchSize,
      negatives: s.negatives ?? 0,
      lr: s.lr ?? 2e-5,
      warmup: s.warmup ?? 0,
      steps,
      weightDecay: s.weight_decay,
      kdQuery: kd ? (s.kd_query ?? 1) : 0,
      kdDoc: kd ? (s.kd_doc ?? 1) : 0,
      logitScale: s.logit_scale,
      trainableScale: s.trainable_scale,
      gradCacheChunk: s.grad_cache,
      precision: s.precision,
      bidirectional: s.bidirectional,
      clip: s.clip,
      accumulation: s.accumulation,
      shuffle: s.shuffle,
      prefix: s.prefix,
      seed: s.seed,
      maxLength: s.max_length,
      checkpointEvery: s.checkpoint_every,
      resume: true,
      device: config.device,
      progress: opts.progress,
    };
    log(`task ${index + 1}/${config.tasks.length} ${task.name}: ${steps} steps from ${parent}`);
    // the trained model is saved with its lineage record (its presence marks the task done)
    await train({ ...options, lineage: { task: task.name, index, run: config.run } });
    await after({ index, name: task.name, parent, dir: out, data });
    dirs.push(out);
    parent = out;
  }
  return dirs;
}
