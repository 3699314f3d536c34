/**
 * One fine-tuning task: contrastive training of an embedding model on training rows, with optional
 * embedding distillation against the frozen starting model (the QDC recipe). AdamW with a
 * decay / no-decay split, linear warm-up and decay, gradient clipping and accumulation. Checkpoints
 * (weights, optimiser, schedule position, data position, random state) are written atomically
 * every N steps; `resume` continues from the last one and, on CPU in float32, ends with the same
 * weights as an uninterrupted run. Every step is logged to `<out>/train.log.jsonl`.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import cliProgress from "cli-progress";
import { type RowSource, RowStream, type StreamPosition, type TrainingRow } from "../data/pairs.js";
import { Rng } from "../data/rng.js";
import { EmbeddingModel } from "../models/embedding-model.js";
import {
  AdamW,
  allGather,
  allReduceGradients,
  barrier,
  cat,
  clipGradNorm,
  getRngState,
  keep,
  loadSafetensors,
  manualSeed,
  noGrad,
  saveSafetensors,
  setRngState,
  type Tensor,
  tensor,
  tidy,
} from "../tensor/index.js";
import { agreeAcrossRanks, joinGroupFromEnv } from "./distributed.js";
import { cosineDistillation, infoNCE } from "./losses.js";

interface CachedEmbedding {
  /** the embeddings as a leaf that collects the loss's gradient */
  emb: Tensor;
  /** recomputes each chunk with autograd and back-propagates its share of emb's gradient */
  replay: () => void;
}

/** GradCache's first pass: embeddings of `texts` in chunks without autograd, with each chunk's random state. */
function gradCacheEmbed(
  texts: string[],
  kind: "query" | "document",
  chunk: number,
  embed: (texts: string[], kind: "query" | "document") => Tensor,
): CachedEmbedding {
  const parts: { texts: string[]; rng: Uint8Array }[] = [];
  const embs: Tensor[] = [];
  for (let i = 0; i < texts.length; i += chunk) {
    const part = { texts: texts.slice(i, i + chunk), rng: getRngState() };
    parts.push(part);
    embs.push(noGrad(() => embed(part.texts, kind)));
  }
  const after = getRngState();
  const emb = cat(embs).requiresGrad_();
  return {
    emb,
    replay: () => {
      const grad = emb.grad;
      if (!grad) return;
      let offset = 0;
      for (const p of parts) {
        setRngState(p.rng); // the same dropout masks as the first pass
        tidy(() => {
          const e = embed(p.texts, kind);
          e.backward(grad.narrow(0, offset, p.texts.length));
        });
        offset += p.texts.length;
      }
      setRngState(after);
    },
  };
}

import { linearSchedule } from "./schedule.js";

export interface TrainOptions {
  /** training files (JSONL or JSONL.gz rows {query, document, negatives}), or a BEIR folder's split */
  data: RowSource;
  /** the starting model directory */
  init: string;
  /** more fields for the trained model's lineage record (the continual runner's task and run) */
  lineage?: Record<string, unknown>;
  /** the trained model directory (also holds train.log.jsonl and the checkpoint) */
  out: string;
  batchSize: number;
  /** hard negatives per query */
  negatives: number;
  lr: number;
  warmup: number;
  steps: number;
  weightDecay?: number;
  betas?: [number, number];
  eps?: number;
  /** distillation weights (0 turns a term off; both 0: no teacher) */
  kdQuery?: number;
  kdDoc?: number;
  logitScale?: number;
  /** learn the logit scale (as log-scale, starting from `logitScale`, no weight decay) */
  trainableScale?: boolean;
  /**
   * GradCache: embed at most this many texts per forward pass. Embeddings are computed without
   * autograd, the loss's gradient with respect to them is taken, then each chunk is recomputed with
   * autograd and back-propagated with its cached gradient: the batch's contrastive loss is exact
   * while activation memory is that of one chunk.
   */
  gradCacheChunk?: number;
  /**
   * "bf16": the encoder computes in bfloat16 with float32 master weights and float32 pooling and
   * losses; "auto" (default) is bf16 on CUDA and float32 on CPU.
   */
  precision?: "auto" | "bf16" | "fp32";
  bidirectional?: boolean;
  /** gradient-norm clipping (0: off) */
  clip?: number;
  /** micro-batches per step (gradient accumulation) */
  accumulation?: number;
  shuffle?: boolean;
  /** use the model's query/document prompts (false: texts are used as they are) */
  prefix?: boolean;
  seed?: number;
  maxLength?: number;
  checkpointEvery?: number;
  resume?: boolean;
  device?: string;
  /** progress bar on stderr */
  progress?: boolean;
  /** called with every step's log entry */
  onStep?: (entry: StepLog) => void;
  /** test hook: stop (throw) after this many steps of this run, as a crash would */
  crashAfter?: number;
}

export interface StepLog {
  step: number;
  lr: number;
  logit_scale: number;
  loss: number;
  infonce: number;
  kd_query: number;
  kd_doc: number;
  grad_norm: number;
  epoch: number;
  rows: number;
  seconds: number;
}

interface CheckpointState {
  step: number;
  position: StreamPosition;
  negativeRng: number;
  torchRng: string;
  /** data parallel: each rank's random state, by rank */
  torchRngRanks?: string[];
  options: Record<string, unknown>;
}

/** Parameters that get no weight decay: fewer than 2 dims of size > 1, or 'bias' in the name. */
const LOGIT_SCALE = "qdc.logit_scale.log";

export function noDecay(name: string, shape: readonly number[]): boolean {
  return shape.filter((d) => d !== 1).length < 2 || name.includes("bias");
}

function pickNegatives(row: TrainingRow, k: number, rng: Rng): string[] {
  if (k === 0) return [];
  if (row.negatives.length < k)
    throw new Error(`${row.source}: row has ${row.negatives.length} negatives, training asks for ${k}`);
  if (row.negatives.length === k) return row.negatives;
  return rng.sample(row.negatives.length, k).map((i) => row.negatives[i] as string);
}

function checkOptions(o: TrainOptions): void {
  const int = (name: string, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min) throw new RangeError(`${name} must be an integer >= ${min}, got ${v}`);
  };
  int("batchSize", o.batchSize, 1);
  int("negatives", o.negatives, 0);
  int("steps", o.steps, 1);
  int("warmup", o.warmup, 0);
  int("accumulation", o.accumulation ?? 1, 1);
  int("checkpointEvery", o.checkpointEvery ?? 1, 1);
  int("gradCacheChunk", o.gradCacheChunk ?? 1, 1);
  if (!((o.logitScale ?? 50) > 0)) throw new RangeError(`logitScale must be > 0, got ${o.logitScale}`);
  if (o.batchSize % (o.accumulation ?? 1) !== 0)
    throw new RangeError(`batchSize ${o.batchSize} is not divisible by accumulation ${o.accumulation}`);
  if (!(o.lr >= 0)) throw new RangeError(`lr must be >= 0, got ${o.lr}`);
}

/** The options that must match for a checkpoint to be resumed. */
/**
 * A checkpoint is replaced in two renames (the current one aside as `.old-PID`, the new one from
 * `.tmp-PID` into place); a crash between them leaves no checkpoint but both of those. The new
 * one, when whole, is put in place, else the old one.
 */
export function recoverCheckpoint(ckptDir: string): void {
  if (existsSync(ckptDir)) return;
  const parent = dirname(ckptDir);
  if (!existsSync(parent)) return;
  const name = basename(ckptDir);
  const whole = (d: string) =>
    ["state.json", "model.safetensors", "optimizer.safetensors"].every((f) => existsSync(join(parent, d, f)));
  const entries = readdirSync(parent);
  const pick =
    entries.find((e) => e.startsWith(`${name}.tmp-`) && whole(e)) ?? entries.find((e) => e.startsWith(`${name}.old-`));
  if (pick) renameSync(join(parent, pick), ckptDir);
}

function identity(o: TrainOptions): Record<string, unknown> {
  return {
    data: o.data,
    init: o.init,
    batchSize: o.batchSize,
    negatives: o.negatives,
    lr: o.lr,
    warmup: o.warmup,
    steps: o.steps,
    seed: o.seed ?? 0,
    shuffle: o.shuffle ?? true,
    accumulation: o.accumulation ?? 1,
    trainableScale: o.trainableScale ?? false,
  };
}

export async function train(o: TrainOptions): Promise<{ steps: number; resumedFrom: number }> {
  checkOptions(o);
  // data parallel (a rank of the group the environment describes): each rank embeds its share of
  // every micro-batch; the embeddings are gathered so the loss sees the whole global batch (every
  // document a negative for every query), and the gradients summed over the ranks; rank 0 alone
  // writes the log, checkpoints and the model. A rank's "cuda" is its local rank's GPU.
  const group = joinGroupFromEnv();
  const rank = group?.rank ?? 0;
  const world = group?.world ?? 1;
  const lead = rank === 0;
  const device = group && o.device === "cuda" ? `cuda:${group.localRank}` : (o.device ?? "cpu");
  const seed = o.seed ?? 0;
  const accumulation = o.accumulation ?? 1;
  const kdQ = o.kdQuery ?? 0;
  const kdD = o.kdDoc ?? 0;
  const scale = o.logitScale ?? 50;
  const clip = o.clip ?? 1.0;
  const prefix = o.prefix === false ? false : undefined;
  const precision = o.precision ?? "auto";
  const bf16 = precision === "bf16" || (precision === "auto" && device.startsWith("cuda"));
  if ((o.batchSize / accumulation) % world !== 0)
    throw new RangeError(
      `batchSize ${o.batchSize} / accumulation ${accumulation} = ${o.batchSize / accumulation} queries per micro-batch cannot be shared by ${world} ranks`,
    );
  /** This rank's rows with every other rank's in rank order: the global micro-batch (autograd through its own). */
  const gathered = (local: Tensor): Tensor => {
    if (world === 1) return local;
    const all = allGather(local);
    const n = local.size(0);
    const parts: Tensor[] = [];
    if (rank > 0) parts.push(all.narrow(0, 0, rank * n));
    parts.push(local);
    if (rank < world - 1) parts.push(all.narrow(0, (rank + 1) * n, (world - 1 - rank) * n));
    return cat(parts);
  };
  mkdirSync(o.out, { recursive: true });
  const ckptDir = join(o.out, "checkpoint");
  const logPath = join(o.out, "train.log.jsonl");

  // (each rank its own dropout stream; rank 0's is a single process's)
  manualSeed(seed + 7919 * rank);
  const student = EmbeddingModel.load(o.init, { device, requiresGrad: true });
  student.training = true;
  const teacher = kdQ > 0 || kdD > 0 ? EmbeddingModel.load(o.init, { device }) : null;
  const named = student.parameters();
  const decay = named.filter(([n, p]) => !noDecay(n, p.shape)).map(([, p]) => p);
  const plain = named.filter(([n, p]) => noDecay(n, p.shape)).map(([, p]) => p);
  // a learned logit scale lives as its logarithm (kept positive), outside the model
  const logScale = o.trainableScale ? keep(tensor([Math.log(scale)], { device }).requiresGrad_()) : null;
  if (logScale) {
    plain.push(logScale);
    named.push([LOGIT_SCALE, logScale]);
  }
  const opt = new AdamW(
    [
      { params: decay, weightDecay: o.weightDecay ?? 0.01 },
      { params: plain, weightDecay: 0 },
    ],
    { lr: o.lr, betas: o.betas ?? [0.9, 0.999], eps: o.eps ?? 1e-8 },
  );
  const stream = new RowStream(o.data, { shuffle: o.shuffle ?? true, seed });
  const negRng = new Rng(seed + 1);

  let start = 0;
  if (lead) recoverCheckpoint(ckptDir);
  if (world > 1) barrier();
  if (!o.resume && existsSync(join(ckptDir, "state.json"))) {
    const at = (JSON.parse(readFileSync(join(ckptDir, "state.json"), "utf8")) as CheckpointState).step;
    throw new Error(
      `${o.out} holds a checkpoint of step ${at}: pass --resume to go on from it, or remove ${ckptDir} to train from step 0`,
    );
  }
  if (o.resume && existsSync(ckptDir)) {
    for (const f of ["state.json", "model.safetensors", "optimizer.safetensors"])
      if (!existsSync(join(ckptDir, f)))
        throw new Error(
          `${ckptDir}: the checkpoint has no ${f} (a copy cut short?): restore it, or remove ${ckptDir} to train from step 0`,
        );
  }
  if (o.resume && existsSync(join(ckptDir, "state.json"))) {
    const state = JSON.parse(readFileSync(join(ckptDir, "state.json"), "utf8")) as CheckpointState;
    if (JSON.stringify(state.options) !== JSON.stringify(identity(o))) {
      throw new Error(
        `${ckptDir}: the checkpoint was made with other options (${JSON.stringify(state.options)}); remove it or rerun with those`,
      );
    }
    const weights = loadSafetensors(join(ckptDir, "model.safetensors"), { device });
    for (const [name, p] of named) {
      const w = weights.get(name);
      if (!w) throw new Error(`${ckptDir}/model.safetensors: missing tensor '${name}'`);
      p.copy_(w);
      w.dispose();
    }
    opt.load(join(ckptDir, "optimizer.safetensors"));
    await stream.seek(state.position);
    negRng.state = state.negativeRng;
    // every rank its own random state (checkpoints of one process: rank 0's)
    const rng = state.torchRngRanks?.[rank] ?? state.torchRng;
    setRngState(Uint8Array.from(Buffer.from(rng, "base64")));
    start = state.step;
    if (rank > 0 && !state.torchRngRanks) manualSeed(seed + 7919 * rank + start);
    // drop log lines of steps that ran after the checkpoint and will run again
    if (lead && existsSync(logPath)) {
      const kept = readFileSync(logPath, "utf8")
        .split("\n")
        .filter((l) => l.trim() !== "" && (JSON.parse(l) as StepLog).step < start);
      writeFileSync(logPath, kept.map((l) => `${l}\n`).join(""));
    }
  } else if (lead) {
    rmSync(logPath, { force: true });
  }
  // every rank has read what it needs before rank 0 writes again, and starts where the others do
  if (world > 1) {
    barrier();
    const sum = noGrad(() => named.reduce((a, [, p]) => a + tidy(() => p.to({ dtype: "float64" }).sum().item()), 0));
    agreeAcrossRanks([start, stream.position.rows, sum], "where training starts (step, rows read, sum of the weights)");
  }

  /** every rank's random state (a collective: all ranks call it at a checkpoint) */
  const rngOfRanks = (): string[] | undefined => {
    if (world === 1) return undefined;
    const all = tidy(() => allGather(tensor(getRngState(), { dtype: "uint8" })).data()) as Uint8Array;
    const n = all.length / world;
    return Array.from({ length: world }, (_, r) => Buffer.from(all.subarray(r * n, (r + 1) * n)).toString("base64"));
  };
  const saveCheckpoint = (step: number, rngs?: string[]) => {
    const tmp = `${ckptDir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    saveSafetensors(join(tmp, "model.safetensors"), new Map(named));
    opt.save(join(tmp, "optimizer.safetensors"));
    const state: CheckpointState = {
      step,
      position: { ...stream.position },
      negativeRng: negRng.state,
      torchRng: Buffer.from(getRngState()).toString("base64"),
      ...(rngs ? { torchRngRanks: rngs } : {}),
      options: identity(o),
    };
    writeFileSync(join(tmp, "state.json"), JSON.stringify(state, null, 1));
    const old = `${ckptDir}.old-${process.pid}`;
    if (existsSync(ckptDir)) renameSync(ckptDir, old);
    renameSync(tmp, ckptDir);
    rmSync(old, { recursive: true, force: true });
  };

  const bar =
    o.progress === true && lead
      ? new cliProgress.SingleBar(
          {
            format: "train {bar} {value}/{total} steps | {rate} steps/s | ETA {eta_formatted} | loss {loss}",
            stream: process.stderr,
          },
          cliProgress.Presets.shades_classic,
        )
      : null;
  bar?.start(o.steps, start, { rate: "0", loss: "-" });
  const t0 = Date.now();
  // by default about ten checkpoints a run (at least 50 steps apart, at most 500), so a killed run
  // loses a tenth of its steps at most; a run of ≤ 50 steps keeps only its final state
  const every = o.checkpointEvery ?? Math.min(500, Math.max(50, Math.ceil(o.steps / 10)));
  let ran = 0;
  try {
    for (let step = start; step < o.steps; step++) {
      const lr = linearSchedule(step, o.lr, o.warmup, o.steps);
      opt.setLr(lr);
      const rows = await stream.next(o.batchSize);
      const per = o.batchSize / accumulation;
      const parts = { loss: 0, infonce: 0, kd_query: 0, kd_doc: 0 };
      const usedScale = logScale ? Math.exp(logScale.item()) : scale;
      opt.zeroGrad();
      for (let a = 0; a < accumulation; a++) {
        const micro = rows.slice(a * per, (a + 1) * per);
        // negatives are drawn for the whole micro-batch on every rank (the same draws), then shared
        const groups = micro.map((r) => [r.document, ...pickNegatives(r, o.negatives, negRng)]);
        const share = per / world;
        const queries = micro.slice(rank * share, (rank + 1) * share).map((r) => r.query);
        const docs = groups.slice(rank * share, (rank + 1) * share).flat();
        tidy(() => {
          const cast = bf16 ? student.castParams("bfloat16") : undefined;
          const embed = (texts: string[], kind: "query" | "document") =>
            student.embedTexts(texts, { kind, prefix, maxLength: o.maxLength, params: cast });
          const chunk = o.gradCacheChunk;
          const cached = chunk
            ? [gradCacheEmbed(queries, "query", chunk, embed), gradCacheEmbed(docs, "document", chunk, embed)]
            : null;
          const qe = gathered(cached ? (cached[0] as CachedEmbedding).emb : embed(queries, "query"));
          const de = gathered(cached ? (cached[1] as CachedEmbedding).emb : embed(docs, "document"));
          const con = infoNCE(qe, de, { scale: logScale ? logScale.exp() : scale, bidirectional: o.bidirectional });
          let total: Tensor = con;
          let kq = 0;
          let kd = 0;
          if (teacher) {
            const [qo, dob] = noGrad(() => [
              gathered(teacher.embedTexts(queries, { kind: "query", prefix, maxLength: o.maxLength })),
              gathered(teacher.embedTexts(docs, { kind: "document", prefix, maxLength: o.maxLength })),
            ]);
            const lq = cosineDistillation(qe, qo as Tensor);
            const ld = cosineDistillation(de, dob as Tensor);
            total = total.add(lq.mul(kdQ)).add(ld.mul(kdD));
            kq = lq.item();
            kd = ld.item();
          }
          total.div(accumulation).backward();
          if (cached) for (const c of cached) c.replay();
          parts.loss += total.item() / accumulation;
          parts.infonce += con.item() / accumulation;
          parts.kd_query += kq / accumulation;
          parts.kd_doc += kd / accumulation;
        });
      }
      // the loss is the same on every rank and its gradient reaches each rank's parameters only
      // through that rank's embeddings: the sum over the ranks is the whole batch's gradient (a
      // learned logit scale gets its whole gradient on every rank already)
      if (world > 1) allReduceGradients(student.parameters().map(([, p]) => p));
      const gradNorm =
        clip > 0
          ? clipGradNorm(
              named.map(([, p]) => p),
              clip,
            )
          : Number.NaN;
      opt.step();
      const entry: StepLog = {
        step,
        lr,
        logit_scale: usedScale,
        ...parts,
        grad_norm: gradNorm,
        epoch: stream.position.epoch,
        rows: stream.position.rows,
        seconds: (Date.now() - t0) / 1000,
      };
      if (lead) writeFileSync(logPath, `${JSON.stringify(entry)}\n`, { flag: "a" });
      ran++;
      bar?.update(step + 1, {
        rate: (ran / Math.max(1e-3, (Date.now() - t0) / 1000)).toFixed(2),
        loss: parts.loss.toFixed(4),
      });
      if ((step + 1) % every === 0 || step + 1 === o.steps) {
        const rngs = rngOfRanks();
        if (lead) saveCheckpoint(step + 1, rngs);
      }
      o.onStep?.(entry);
      if (o.crashAfter !== undefined && ran >= o.crashAfter && step + 1 < o.steps)
        throw new Error(`simulated crash after step ${step}`);
    }
  } finally {
    bar?.stop();
  }
  student.training = false;
  // the model with its lineage: derived from `init` (what its compensators map back to)
  if (lead) student.save(o.out, { parent: o.init, lineage: o.lineage });
  teacher?.dispose();
  // no rank goes on (to a next task that starts from this model) before it is written
  if (world > 1) barrier();
  return { steps: o.steps, resumedFrom: start };
}
