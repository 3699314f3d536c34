/**
 * The continual dense-retrieval benchmark (the QDC paper's protocol, made explicit). Tasks arrive
 * in order; when task t arrives the model is trained on it (f_t) and task t's corpus is indexed
 * once with f_t. After each task T every seen task j ≤ T is evaluated with f_T's queries in these
 * settings:
 *
 *   zero_shot        the base model on both sides
 *   ft_reindex       fine-tuned chain, corpus re-embedded with f_T (the costly ideal)
 *   ft_no_reindex    fine-tuned chain, f_T queries against f_j's index, no compensation
 *   ft_qdc           … with the mean drift compensated along f_T → … → f_j
 *   kd_reindex       fine-tuned with embedding distillation, corpus re-embedded with f_T
 *   kd_no_reindex    fine-tuned with embedding distillation, f_j's index, no compensation
 *   kd_qdc           … with mean drift compensation
 *   kd_auto          … with the compensator `auto` picked per step (held-out retrieval)
 *   joint            trained on tasks 1..T together, re-indexed (upper bound)
 *
 * With `seeds`, the chains (and base and joint models where `per_seed` says so) are trained and
 * evaluated once per seed, in <out>/seed-<s>; the report gives mean ± std over seeds and paired
 * comparisons over the old tasks' queries (src/eval/stats.ts). After the last task, each old task is
 * also searched with a growing fraction of its corpus re-embedded (src/eval/reindex-curves.ts).
 *
 * Every stage is resumable: trained models, indexes and evaluated cells are kept under the run
 * folder and reused; each stage's wall time and device are recorded. Texts get the models' own
 * query/document prompts (none for the BERT base models pre-trained here; nomic's for NomicBERT).
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import cliProgress from "cli-progress";
import { machineName } from "../bench/common.js";
import { buildBenchmark } from "../corpora/build.js";
import { readQrels } from "../data/beir.js";
import { RowStream } from "../data/pairs.js";
import { readAllIdTexts } from "../data/texts.js";
import { readCompensatorInfo } from "../drift/compensator.js";
import { driftAfterTask } from "../drift/task-drift.js";
import { ExactIndex } from "../index/exact-index.js";
import { type CompensationMode, versionOf } from "../lineage/index.js";
import { bertConfig } from "../models/config.js";
import { EmbeddingModel } from "../models/embedding-model.js";
import { Tokenizer } from "../models/tokenizer.js";
import { buildWordPieceVocab, writeWordPieceVocab } from "../models/wordpiece-vocab.js";
import { CALIBRATION_ROWS } from "../retrieval/calibration.js";
import { QueryRouter } from "../retrieval/router.js";
import { cosineSimilarity, getNumThreads, type Tensor, tidy } from "../tensor/index.js";
import { runContinual } from "../train/continual.js";
import { type TrainOptions, train } from "../train/trainer.js";
import type { BenchmarkConfig } from "./config.js";
import { evaluate, type Measure, measureLabel, parseMeasures, type Qrels } from "./metrics.js";
import { type CurveRecord, MERGES, type Merge, REINDEX_ORDERS, taskCurves } from "./reindex-curves.js";
import { type BenchmarkReport, SETTINGS, type SettingKey, type StepRecord, summarise, writeReport } from "./report.js";
import { runFromHits } from "./trec.js";

export interface TaskData {
  name: string;
  train: string[];
  eval: string;
  split: string;
}

export interface Cell {
  /** the training seed */
  seed: number;
  setting: SettingKey;
  /** after training on task T (1-based) */
  T: number;
  /** evaluated on task j (1-based, j ≤ T) */
  j: number;
  scores: Record<string, number>;
  queryModel: string;
  indexModel: string;
  compensation: string;
  /** results per query the measures were computed on */
  k?: number;
  /** after the last task: the primary measure per test query (for paired comparisons) */
  perQuery?: Record<string, number>;
}

interface StageTime {
  stage: string;
  seconds: number;
  device: string;
}

export interface RunOptions {
  log?: (msg: string) => void;
  progress?: boolean;
}

/** Runs (or resumes) the whole benchmark and returns its report; writes results.{json,md} and figure.svg. */
export async function runBenchmark(c: BenchmarkConfig, opts: RunOptions = {}): Promise<BenchmarkReport> {
  const log = opts.log ?? ((m: string) => console.error(m));
  mkdirSync(c.out, { recursive: true });
  const events = join(c.out, "bench.log.jsonl");
  const stages: StageTime[] = [];
  const stage = async <T>(name: string, fn: () => Promise<T> | T): Promise<T> => {
    const t0 = performance.now();
    log(`[${c.name}] ${name} …`);
    const r = await fn();
    const seconds = (performance.now() - t0) / 1000;
    stages.push({ stage: name, seconds, device: c.device });
    appendFileSync(
      events,
      `${JSON.stringify({ event: "stage", stage: name, seconds, device: c.device, at: new Date().toISOString() })}\n`,
    );
    log(`[${c.name}] ${name}: ${seconds.toFixed(1)} s`);
    return r;
  };

  // 1. data (one split for every seed)
  const tasks = await stage("data", () => prepareData(c, log));
  const seeds = c.seeds ?? [c.seed];
  // with `seeds` in the config (even one) each seed has its folder, so a one-seed rerun (--seeds 0) reuses seed-0
  const multi = c.seeds !== undefined;
  const perSeed = new Set(c.per_seed);
  const first = seeds[0] as number;
  /** a stage's configuration for seed `s`: its own seed and folder where the stage is per seed */
  const scoped = (s: number, scope: "base" | "train" | "joint") => {
    const own = perSeed.has(scope);
    return {
      c: { ...c, seed: own ? s : first, out: multi && own ? join(c.out, `seed-${s}`) : c.out },
      tag: multi && own ? ` (seed ${s})` : "",
      runs: own || s === first,
    };
  };
  const bases = new Map<string, { base: string; train: string[][] }>();
  const cells: Cell[] = [];
  const curves: CurveRecord[] = [];
  const steps: StepRecord[] = [];
  for (const s of seeds) {
    // 2. base model, 3. hard negatives mined with it
    const b = scoped(s, "base");
    let prepared = bases.get(b.c.out);
    if (!prepared) {
      const base = await stage(`base model${b.tag}`, () => prepareBase(b.c, tasks, opts));
      const train = await stage(`mine negatives${b.tag}`, () => mineNegatives(b.c, tasks, base));
      prepared = { base, train };
      bases.set(b.c.out, prepared);
    }
    const { base } = prepared;
    const withTrain = tasks.map((t, i) => ({ ...t, train: prepared.train[i] as string[] }));
    // 4. fine-tuning chains, with their drift compensators
    const t = scoped(s, "train");
    const ft = await stage(`train FT${t.tag}`, () => trainChain(t.c, withTrain, base, "ft", false, ["mean"], opts));
    const kd = await stage(`train FT+KD${t.tag}`, () =>
      trainChain(t.c, withTrain, base, "kd", true, ["mean", "auto"], opts),
    );
    // 5. joint training (upper bound): per seed, or with the first seed only
    const jc = scoped(s, "joint");
    const joint = jc.runs
      ? await stage(`train joint${jc.tag}`, () => trainJoint(jc.c, withTrain, base, opts))
      : new Map<number, string>();
    // 6. indexes and evaluation, 7. re-index curves of the old tasks
    const bench = await Workbench.open(t.c, withTrain, events);
    try {
      // settings whose models are shared by every seed are evaluated with the first seed only
      const models = {
        base,
        ft,
        kd,
        joint,
        shared: s !== first && !perSeed.has("base") ? (["zero_shot"] as SettingKey[]) : [],
      };
      cells.push(
        ...(await stage(`index + evaluate${t.tag}`, () =>
          bench.cells(models, s, { log, progress: opts.progress === true }),
        )),
      );
      const rc = c.reindex_curves;
      if (rc && tasks.length > 1)
        curves.push(...(await stage(`re-index curves${t.tag}`, () => bench.curves(models, s, rc, log))));
      steps.push(...(await stage(`drift per step${t.tag}`, () => bench.steps(models, s))));
    } finally {
      bench.close();
    }
  }
  const report = summarise({
    name: c.name,
    device: c.device,
    threads: getNumThreads(),
    machine: machineName(c.device),
    tasks: tasks.map((t) => t.name),
    measure: measureLabel(parseMeasures(c.eval.measure)[0] as ReturnType<typeof parseMeasures>[number]),
    seeds,
    cells,
    curves,
    steps,
    stages: stageTotals(events, stages),
  });
  writeReport(c.out, report);
  return report;
}

/**
 * Wall time per stage summed over every invocation on this run folder (bench.log.jsonl), so a run
 * resumed after a crash or extended later reports all the time it took, not only the last part.
 */
function stageTotals(events: string, current: StageTime[]): StageTime[] {
  const totals = new Map<string, StageTime>();
  for (const line of readFileSync(events, "utf8").split("\n")) {
    if (!line.trim()) continue;
    try {
      const e = JSON.parse(line) as { event?: string; stage: string; seconds: number; device: string };
      if (e.event !== "stage") continue;
      const t = totals.get(e.stage);
      totals.set(e.stage, {
        stage: e.stage,
        seconds: (t?.seconds ?? 0) + e.seconds,
        device: t && t.device !== e.device ? `${t.device}, ${e.device}` : e.device,
      });
    } catch {
      // a line cut short by a crash
    }
  }
  return current.map((c) => totals.get(c.stage) ?? c);
}

/** The benchmark's tasks: BEIR folders as given, or the offline data built (once) from Debian packages. */
export async function prepareData(c: BenchmarkConfig, log: (m: string) => void): Promise<TaskData[]> {
  if (c.data.kind === "beir") {
    for (const t of c.data.tasks) {
      for (const f of t.train) if (!existsSync(f)) throw new Error(`task ${t.name}: training file ${f} is missing`);
      if (!existsSync(join(t.eval, "corpus.jsonl")))
        throw new Error(`task ${t.name}: ${t.eval} is not a BEIR folder (no corpus.jsonl)`);
    }
    return c.data.tasks.map((t) => ({ name: t.name, train: t.train, eval: t.eval, split: t.split }));
  }
  const d = c.data;
  const r = await buildBenchmark(
    {
      out: d.dir,
      tasks: d.tasks,
      trainPairs: d.train_pairs,
      testQueries: d.test_queries,
      corpusSize: d.corpus,
      generalPairs: d.general_pairs,
      maxWords: d.max_words,
      seed: c.seed,
    },
    log,
  );
  if (!r.built) log(`data: ${d.dir} already built with these options`);
  return d.tasks.map((name) => ({
    name,
    train: [join(d.dir, name, "train.jsonl")],
    eval: join(d.dir, name),
    split: "test",
  }));
}

const DONE = "done.json";

/** The base model: `base.init`, or one pre-trained (once, resumably) on the general corpus into `<out>/base`. */
export async function prepareBase(c: BenchmarkConfig, tasks: TaskData[], opts: RunOptions): Promise<string> {
  if ("init" in c.base) {
    if (!existsSync(join(c.base.init, "config.json")))
      throw new Error(`base.init ${c.base.init}: no config.json (not a model directory)`);
    return c.base.init;
  }
  const p = c.base.pretrain;
  const dir = join(c.out, "base");
  if (trained(dir, p.steps)) return dir;
  if (c.data.kind !== "offline")
    throw new Error("base.pretrain needs offline data (its general corpus); give base.init for BEIR data");
  const general = join(c.data.dir, "general", "train.jsonl");
  const init = join(c.out, "base-init");
  if (!existsSync(join(init, "config.json"))) {
    // the vocabulary comes from the training text only (general corpus and the tasks' training pairs)
    const texts: string[] = [];
    for (const f of [general, ...tasks.flatMap((t) => t.train)]) {
      for (const line of readFileSync(f, "utf8").split("\n")) {
        if (!line) continue;
        const r = JSON.parse(line) as { query: string; document: string };
        texts.push(r.query, r.document);
      }
    }
    const tmp = `${init}.tmp`;
    rmSync(tmp, { recursive: true, force: true });
    writeWordPieceVocab(tmp, buildWordPieceVocab(texts, p.vocab), c.max_length);
    const model = EmbeddingModel.create(
      bertConfig({
        vocabSize: p.vocab,
        hiddenSize: p.hidden,
        numLayers: p.layers,
        numHeads: p.heads,
        intermediateSize: p.intermediate,
        maxPositions: p.max_positions,
        dropout: p.dropout,
      }),
      Tokenizer.fromDir(tmp),
      { seed: c.seed },
    );
    model.save(tmp);
    model.dispose();
    rmSync(init, { recursive: true, force: true });
    renameSync(tmp, init);
  }
  await trainOnce(c, opts, {
    data: [general],
    init,
    out: dir,
    batchSize: p.batch_size,
    negatives: 0,
    lr: p.lr,
    warmup: p.warmup,
    steps: p.steps,
  });
  return dir;
}

/** Rows with `n` hard negatives per pair: the base model's best-ranked other training documents. */
async function mineNegatives(c: BenchmarkConfig, tasks: TaskData[], base: string): Promise<string[][]> {
  const n = c.mine_negatives;
  if (!n) return tasks.map((t) => t.train);
  const out: string[][] = [];
  const model = EmbeddingModel.load(base, { device: c.device });
  try {
    for (const t of tasks) {
      const file = join(c.out, "mined", `${t.name}.jsonl`);
      out.push([file]);
      if (existsSync(file)) continue;
      const stream = new RowStream(t.train, { shuffle: false });
      const rows = await stream.next(await stream.count());
      const docs = [...new Set(rows.map((r) => r.document))];
      const enc = { batchSize: c.batch_size, maxLength: c.max_length };
      const negatives = tidy(() => {
        const q = model.encode(
          rows.map((r) => r.query),
          { ...enc, kind: "query" },
        );
        const d = model.encode(docs, { ...enc, kind: "document" });
        // one more than needed per row: the positive may be among the best
        return q
          .matmul(d.T)
          .topk(Math.min(n + 1, docs.length), 1)
          .indices.toArray();
      });
      const k = Math.min(n + 1, docs.length);
      const lines = rows.map((r, i) => {
        const picked = negatives
          .slice(i * k, (i + 1) * k)
          .map((j) => docs[j] as string)
          .filter((d) => d !== r.document)
          .slice(0, n);
        return JSON.stringify({ query: r.query, document: r.document, negatives: picked });
      });
      mkdirSync(join(c.out, "mined"), { recursive: true });
      writeFileSync(`${file}.tmp`, `${lines.join("\n")}\n`);
      renameSync(`${file}.tmp`, file);
    }
  } finally {
    model.dispose();
  }
  return out;
}

async function trainChain(
  c: BenchmarkConfig,
  tasks: TaskData[],
  base: string,
  run: string,
  kd: boolean,
  drift: ("mean" | "auto")[],
  opts: RunOptions,
): Promise<string[]> {
  const log = opts.log ?? ((m: string) => console.error(m));
  const driftSettings = { methods: drift, queries: c.drift_queries };
  return runContinual(
    {
      run,
      out: c.out,
      init: base,
      device: c.device,
      drift: driftSettings,
      defaults: {
        batch_size: c.train.batch_size,
        lr: c.train.lr,
        warmup: c.train.warmup,
        negatives: c.train.negatives,
        kd,
        kd_query: c.train.kd_query,
        kd_doc: c.train.kd_doc,
        precision: c.train.precision,
        grad_cache: c.train.grad_cache,
        max_length: c.max_length,
        prefix: true,
        seed: c.seed,
      },
      tasks: tasks.map((t) => ({ name: t.name, data: t.train, steps: c.train.steps })) as never,
    },
    {
      progress: opts.progress,
      log,
      afterTask: driftAfterTask(driftSettings, { device: c.device, log }),
    },
  );
}

/** Joint models: trained from the base on the union of tasks 1..T (T steps per task's worth). */
async function trainJoint(
  c: BenchmarkConfig,
  tasks: TaskData[],
  base: string,
  opts: RunOptions,
): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  const Ts = c.joint === "none" ? [] : c.joint === "final" ? [tasks.length] : tasks.map((_, i) => i + 1);
  for (const T of Ts) {
    const dir = join(c.out, "joint", `T${T}`);
    out.set(T, dir);
    if (trained(dir, c.train.steps * T)) continue;
    await trainOnce(c, opts, {
      data: tasks.slice(0, T).flatMap((t) => t.train),
      init: base,
      out: dir,
      batchSize: c.train.batch_size,
      negatives: c.train.negatives,
      lr: c.train.lr,
      warmup: c.train.warmup,
      steps: c.train.steps * T,
      gradCacheChunk: c.train.grad_cache,
    });
  }
  return out;
}

/**
 * Whether a model of the run folder is finished (done.json), for the steps asked: one finished with
 * other steps (the config changed since) is an error rather than silently reused.
 */
function trained(dir: string, steps: number): boolean {
  const file = join(dir, DONE);
  if (!existsSync(file)) return false;
  const done = JSON.parse(readFileSync(file, "utf8")) as { steps?: number };
  if (done.steps !== undefined && done.steps !== steps)
    throw new Error(
      `${dir} was trained with ${done.steps} steps and the config now asks for ${steps}: give the run another --out (or delete ${dir})`,
    );
  return true;
}

/** One training run with the benchmark's shared settings (resumable), marked done when finished. */
async function trainOnce(
  c: BenchmarkConfig,
  opts: RunOptions,
  o: Pick<
    TrainOptions,
    "data" | "init" | "out" | "batchSize" | "negatives" | "lr" | "warmup" | "steps" | "gradCacheChunk"
  >,
): Promise<void> {
  await train({
    ...o,
    maxLength: c.max_length,
    prefix: true,
    seed: c.seed,
    resume: true,
    device: c.device,
    precision: c.train.precision,
    progress: opts.progress,
  });
  writeFileSync(join(o.out, DONE), `${JSON.stringify({ steps: o.steps, finishedAt: new Date().toISOString() })}\n`);
}

interface Models {
  base: string;
  ft: string[];
  kd: string[];
  joint: Map<number, string>;
  /** settings not evaluated here: their models are shared with (and evaluated by) the first seed */
  shared?: SettingKey[];
}

interface EvalTask {
  name: string;
  corpus: { id: string; text: string }[];
  queries: { id: string; text: string }[];
  qrels: Qrels;
}

/** The (query model, index model, compensation) of a setting's cell, or null where it has none. */
function plan(setting: SettingKey, T: number, j: number, m: Models): [string, string, CompensationMode] | null {
  if (m.shared?.includes(setting)) return null;
  const ft = (i: number) => m.ft[i - 1] as string;
  const kd = (i: number) => m.kd[i - 1] as string;
  switch (setting) {
    case "zero_shot":
      return [m.base, m.base, "none"];
    case "ft_reindex":
      return [ft(T), ft(T), "none"];
    case "ft_no_reindex":
      return [ft(T), ft(j), "none"];
    case "ft_qdc":
      return [ft(T), ft(j), "mean"];
    case "kd_reindex":
      return [kd(T), kd(T), "none"];
    case "kd_no_reindex":
      return [kd(T), kd(j), "none"];
    case "kd_qdc":
      return [kd(T), kd(j), "mean"];
    case "kd_auto":
      return [kd(T), kd(j), "auto"];
    case "joint": {
      const dir = m.joint.get(T);
      return dir ? [dir, dir, "none"] : null;
    }
  }
}

/** Reads a JSONL file of records, skipping a last line cut short by a crash (that record is computed again). */
function readRecords<T>(file: string): T[] {
  if (!existsSync(file)) return [];
  const out: T[] = [];
  for (const line of readFileSync(file, "utf8").split("\n")) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as T);
    } catch {
      // a line cut short by a crash
    }
  }
  return out;
}

/**
 * One seed's evaluation: the tasks' test data, each model's query embeddings and each (model,
 * task) index (built once, kept under the run folder), for the cells and the re-index curves.
 */
class Workbench {
  readonly #queries = new Map<string, Tensor>();

  private constructor(
    private readonly c: BenchmarkConfig,
    private readonly tasks: TaskData[],
    private readonly evalTasks: EvalTask[],
    private readonly events: string,
  ) {}

  static async open(c: BenchmarkConfig, tasks: TaskData[], events: string): Promise<Workbench> {
    const evalTasks: EvalTask[] = [];
    for (const t of tasks) {
      const qrels = await readQrels(join(t.eval, "qrels", `${t.split}.tsv`));
      evalTasks.push({
        name: t.name,
        corpus: await readAllIdTexts(join(t.eval, "corpus.jsonl")),
        queries: (await readAllIdTexts(join(t.eval, "queries.jsonl"))).filter((q) => qrels.has(q.id)),
        qrels,
      });
    }
    mkdirSync(c.out, { recursive: true });
    return new Workbench(c, tasks, evalTasks, events);
  }

  #task(j: number): EvalTask {
    return this.evalTasks[j - 1] as EvalTask;
  }

  #encode(modelDir: string, texts: string[], kind: "query" | "document"): Tensor {
    const model = EmbeddingModel.load(modelDir, { device: this.c.device });
    try {
      return model.encode(texts, { kind, batchSize: this.c.batch_size, maxLength: this.c.max_length, progress: false });
    } finally {
      model.dispose();
    }
  }

  /** Task j's test queries embedded by a model (kept until close). */
  queries(modelDir: string, j: number): Tensor {
    const key = `${modelDir}#${j}`;
    let e = this.#queries.get(key);
    if (!e) {
      e = this.#encode(
        modelDir,
        this.#task(j).queries.map((q) => q.text),
        "query",
      );
      this.#queries.set(key, e);
    }
    return e;
  }

  /** Task j's corpus indexed by a model (built once under <out>/indexes). */
  index(modelDir: string, j: number): ExactIndex {
    const c = this.c;
    const t = this.#task(j);
    const key =
      resolve(modelDir)
        .slice(resolve(c.out).length + 1)
        .replace(/[/\\]/g, "_") || "external";
    const rel = resolve(modelDir).startsWith(`${resolve(c.out)}/`) ? key : `ext-${versionOf(modelDir)}`;
    const dir = join(c.out, "indexes", `${rel}-${t.name}`);
    if (existsSync(join(dir, "manifest.json"))) return ExactIndex.open(dir);
    const tmp = `${dir}.tmp`;
    rmSync(tmp, { recursive: true, force: true });
    const emb = this.#encode(
      modelDir,
      t.corpus.map((d) => d.text),
      "document",
    );
    const idx = ExactIndex.create(tmp, emb.size(1));
    idx.addShard(
      emb,
      t.corpus.map((d) => d.id),
      versionOf(modelDir),
      resolve(modelDir),
    );
    emb.dispose();
    renameSync(tmp, dir);
    return ExactIndex.open(dir);
  }

  /**
   * Indexes and evaluates every cell not yet in cells.jsonl. Each evaluated cell goes to cells.jsonl
   * and, with its task names and time, to the JSONL event log; the terminal shows a progress bar
   * (or, without one, a line per task T).
   */
  async cells(models: Models, seed: number, out: { log: (m: string) => void; progress: boolean }): Promise<Cell[]> {
    const c = this.c;
    const cellsFile = join(c.out, "cells.jsonl");
    const n = this.tasks.length;
    const done = new Map<string, Cell>();
    for (const cell of readRecords<Cell>(cellsFile)) {
      // cells of the last row recorded before per-query scores were kept are evaluated again
      if (cell.T === n && !cell.perQuery) continue;
      done.set(`${cell.setting}/${cell.T}/${cell.j}`, { ...cell, seed });
    }
    const measures = [c.eval.measure, ...c.eval.extra].flatMap(parseMeasures);
    const primary = measureLabel(measures[0] as Measure);
    const cells: Cell[] = [];
    let total = 0;
    for (let T = 1; T <= n; T++)
      for (let j = 1; j <= T; j++) for (const setting of SETTINGS) if (plan(setting, T, j, models)) total++;
    const bar = out.progress
      ? new cliProgress.SingleBar(
          {
            format: "evaluate {bar} {value}/{total} cells | ETA {eta_formatted} | {cell}",
            stream: process.stderr,
          },
          cliProgress.Presets.shades_classic,
        )
      : null;
    bar?.start(total, 0, { cell: "" });
    try {
      for (let T = 1; T <= n; T++) {
        let evaluated = 0;
        for (let j = 1; j <= T; j++) {
          for (const setting of SETTINGS) {
            const p = plan(setting, T, j, models);
            if (!p) continue;
            const [queryModel, indexModel, mode] = p;
            // a recorded cell is reused only for the same models and compensation (and k)
            const prev = done.get(`${setting}/${T}/${j}`);
            if (
              prev &&
              prev.queryModel === queryModel &&
              prev.indexModel === indexModel &&
              prev.compensation === mode &&
              (prev.k ?? c.eval.k) === c.eval.k
            ) {
              cells.push(prev);
              bar?.increment(1, { cell: "" });
              continue;
            }
            const t = this.#task(j);
            bar?.update({ cell: `${setting} after ${this.tasks[T - 1]?.name} on ${t.name}` });
            const idx = this.index(indexModel, j);
            const q = this.queries(queryModel, j);
            // the index holds one version: the query model's own (native) or an ancestor (compensated)
            const router = new QueryRouter(queryModel, mode);
            const hits = idx.search(q, c.eval.k, { transform: (v) => router.chain(v)(q) });
            idx.close();
            const e = evaluate(
              t.qrels,
              runFromHits(
                t.queries.map((x) => x.id),
                hits,
              ),
              measures,
            );
            const cell: Cell = {
              seed,
              setting,
              T,
              j,
              scores: e.mean,
              queryModel,
              indexModel,
              compensation: mode,
              k: c.eval.k,
            };
            if (T === n)
              cell.perQuery = Object.fromEntries([...e.perQuery].map(([qid, row]) => [qid, row[primary] as number]));
            appendFileSync(cellsFile, `${JSON.stringify(cell)}\n`);
            appendFileSync(
              this.events,
              `${JSON.stringify({ event: "eval", seed, setting, after: this.tasks[T - 1]?.name, on: t.name, T, j, queries: e.queries, scores: e.mean, at: new Date().toISOString() })}\n`,
            );
            cells.push(cell);
            evaluated++;
            bar?.increment(1);
          }
        }
        if (!bar && evaluated)
          out.log(`[${c.name}] evaluated ${evaluated} cells after ${this.tasks[T - 1]?.name} (${this.events})`);
      }
    } finally {
      bar?.stop();
    }
    return cells;
  }

  /**
   * After the last task, each old task j with a growing fraction of its corpus re-embedded by the
   * final model of a chain, the rest reached through the chain's compensation (FT: mean, FT+KD:
   * auto): three orders (src/eval/reindex-curves.ts). Traffic and the drift sample are the task's
   * training queries and their documents (never its test queries). Kept in curves.jsonl.
   */
  async curves(
    models: Models,
    seed: number,
    rc: { fractions: number[]; traffic: number; sample: number },
    log: (m: string) => void,
  ): Promise<CurveRecord[]> {
    const c = this.c;
    const file = join(c.out, "curves.jsonl");
    const n = this.tasks.length;
    const params = (chain: string, j: number, dirs: string[]) =>
      JSON.stringify({
        fractions: rc.fractions,
        traffic: rc.traffic,
        sample: rc.sample,
        k: c.eval.k,
        calibrationRows: CALIBRATION_ROWS,
        old: versionOf(dirs[j - 1] as string),
        final: versionOf(dirs[n - 1] as string),
        chain,
      });
    const records = readRecords<CurveRecord>(file);
    const measure = parseMeasures(c.eval.measure)[0] as Measure;
    const out: CurveRecord[] = [];
    for (const [chain, dirs, mode] of [
      ["ft", models.ft, "mean"],
      ["kd", models.kd, "auto"],
    ] as const) {
      const final = dirs[n - 1] as string;
      for (let j = 1; j < n; j++) {
        const fingerprint = params(chain, j, dirs);
        // the latest record of each curve computed with these parameters and models
        const kept = records.filter((r) => r.chain === chain && r.j === j && r.params === fingerprint).reverse();
        const have = MERGES.flatMap((merge) =>
          REINDEX_ORDERS.map((order) => kept.find((r) => r.order === order && r.merge === merge)),
        );
        if (have.every((r) => r)) {
          out.push(...(have as CurveRecord[]).map((r) => ({ ...r, seed })));
          continue;
        }
        const t = this.#task(j);
        const old = dirs[j - 1] as string;
        const rows = await new RowStream(this.tasks[j - 1]?.train as string[], { shuffle: true, seed }).next(
          Math.max(rc.traffic, rc.sample),
        );
        const docs = [...new Set(rows.slice(0, rc.sample).map((r) => r.document))];
        const held: { dispose(): void }[] = [];
        const hold = <T extends { dispose(): void }>(x: T): T => {
          held.push(x);
          return x;
        };
        try {
          const traffic = hold(
            this.#encode(
              final,
              rows.slice(0, rc.traffic).map((r) => r.query),
              "query",
            ),
          );
          const sampleOld = hold(this.#encode(old, docs, "document"));
          const sampleNew = hold(this.#encode(final, docs, "document"));
          const oldIndex = this.index(old, j);
          held.push({ dispose: () => oldIndex.close() });
          const newIndex = this.index(final, j);
          held.push({ dispose: () => newIndex.close() });
          const curves = taskCurves({
            oldIndex,
            newIndex,
            oldVersion: versionOf(old),
            router: new QueryRouter(final, mode),
            queries: this.queries(final, j),
            queryIds: t.queries.map((q) => q.id),
            qrels: t.qrels,
            measure,
            k: c.eval.k,
            fractions: rc.fractions,
            traffic,
            sampleOld,
            sampleNew,
            seed: seed * 1000 + j,
          });
          for (const merge of MERGES)
            for (const order of REINDEX_ORDERS) {
              const r: CurveRecord = {
                seed,
                chain,
                compensation: mode,
                j,
                task: t.name,
                order,
                merge,
                fractions: rc.fractions,
                scores: curves[merge][order],
                queries: t.queries.length,
                params: fingerprint,
              };
              appendFileSync(file, `${JSON.stringify(r)}\n`);
              appendFileSync(
                this.events,
                `${JSON.stringify({ event: "reindex-curve", ...r, at: new Date().toISOString() })}\n`,
              );
              out.push(r);
            }
          const show = (m: Merge) =>
            REINDEX_ORDERS.map((o) => `${o} ${curves[m][o].map((v) => (100 * v).toFixed(1)).join("/")}`).join("; ");
          log(`[${c.name}] re-index curves ${chain} on ${t.name}: ${show("calibrated")} (raw scores: ${show("raw")})`);
        } finally {
          for (const x of held) x.dispose();
        }
      }
    }
    return out;
  }

  /**
   * Per fine-tuning step of each chain: how far the queries moved (1 − mean cosine between the
   * parent's and the child's embeddings of a sample of the task's training queries), and for the
   * FT+KD chain what `auto` picked and its held-out MRR@10 against identity on its fit sample (from
   * the compensator's record). Kept in steps.jsonl.
   */
  async steps(models: Models, seed: number): Promise<StepRecord[]> {
    const c = this.c;
    const file = join(c.out, "steps.jsonl");
    const n = this.tasks.length;
    const done = new Map(readRecords<StepRecord>(file).map((r) => [`${r.chain}/${r.t}/${r.child}`, r]));
    const out: StepRecord[] = [];
    for (const [chain, dirs] of [
      ["ft", models.ft],
      ["kd", models.kd],
    ] as const) {
      for (let t = 1; t <= n; t++) {
        const child = dirs[t - 1] as string;
        const parent = t === 1 ? models.base : (dirs[t - 2] as string);
        const prev = done.get(`${chain}/${t}/${versionOf(child)}`);
        if (prev) {
          out.push({ ...prev, seed });
          continue;
        }
        const rows = await new RowStream(this.tasks[t - 1]?.train as string[], { shuffle: true, seed }).next(
          Math.min(1000, c.drift_queries),
        );
        const texts = rows.map((r) => r.query);
        const before = this.#encode(parent, texts, "query");
        const after = this.#encode(child, texts, "query");
        const drift = tidy(() => 1 - (cosineSimilarity(before, after).mean().item() as number));
        before.dispose();
        after.dispose();
        const r: StepRecord = {
          seed,
          chain,
          t,
          task: this.tasks[t - 1]?.name as string,
          child: versionOf(child),
          drift,
        };
        const auto = join(child, "drift", "auto.safetensors");
        if (existsSync(auto)) {
          const { fittedOn } = readCompensatorInfo(auto);
          const a = (fittedOn as { auto?: { picked: string; scores: Record<string, number> } }).auto;
          if (a) {
            r.picked = a.picked;
            r.heldOutIdentity = a.scores.identity;
            r.heldOutPicked = a.scores[a.picked];
          }
        }
        appendFileSync(file, `${JSON.stringify(r)}\n`);
        out.push(r);
      }
    }
    return out;
  }

  close(): void {
    for (const e of this.#queries.values()) e.dispose();
    this.#queries.clear();
  }
}
