/**
 * The benchmark's results: the matrix R[T][j] (score on task j after training on task T) of every
 * setting, its average over tasks after the last one, backward transfer and forgetting — means and
 * standard deviations over seeds —, paired comparisons of key settings over the old tasks' queries,
 * and the re-index curves, as JSON, a markdown report and an SVG figure (heatmaps, a bar chart with
 * error bars, the curves).
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  type CurveRecord,
  fractionReaching,
  ORDER_LABELS,
  REINDEX_ORDERS,
  type ReindexOrder,
} from "./reindex-curves.js";
import { meanStd, type PairedTest, pairedTest, seedQueryInterval } from "./stats.js";

export const SETTINGS = [
  "zero_shot",
  "ft_reindex",
  "ft_no_reindex",
  "ft_qdc",
  "kd_reindex",
  "kd_no_reindex",
  "kd_qdc",
  "kd_auto",
  "joint",
] as const;
export type SettingKey = (typeof SETTINGS)[number];

export const SETTING_LABELS: Record<SettingKey, string> = {
  zero_shot: "zero-shot base",
  ft_reindex: "FT, re-indexed",
  ft_no_reindex: "FT, no re-index",
  ft_qdc: "FT + QDC (mean)",
  kd_reindex: "FT+KD, re-indexed",
  kd_no_reindex: "FT+KD, no re-index",
  kd_qdc: "FT+KD + QDC (mean)",
  kd_auto: "FT+KD + auto compensator",
  joint: "joint training (upper bound)",
};

export interface SettingResult {
  label: string;
  /** R[T-1][j-1]; null where not evaluated (j > T, or joint only after the last task) */
  R: (number | null)[][];
  /** mean over tasks of the last row */
  average: number | null;
  /** mean over j < n of R[n][j] − R[j][j] */
  backwardTransfer: number | null;
  /** mean over j < n of max_{j ≤ l < n} R[l][j] − R[n][j] */
  forgetting: number | null;
  /** seeds the values above are the means of */
  seeds: number;
  /** sample standard deviations over seeds (null below two seeds) */
  std: {
    R: (number | null)[][];
    average: number | null;
    backwardTransfer: number | null;
    forgetting: number | null;
  };
}

/** Two settings compared on the same queries: every old task's test queries after the last task. */
export interface Comparison {
  key: string;
  label: string;
  a: string;
  b: string;
  /** a − b per query (averaged over seeds), its 95% bootstrap interval over queries and randomisation p-value */
  test: PairedTest;
  /** 95% interval of a two-level bootstrap over seeds and queries (null with one seed) */
  ci95Seeds: [number, number] | null;
  /** a − b of the pooled means, per seed */
  perSeed: { seed: number; delta: number }[];
}

/** One chain's re-index curves summarised over seeds, pooled over the old tasks' queries. */
export interface CurveSummary {
  chain: string;
  /** how the versions' hits were merged: calibrated scores (the service) or raw */
  merge: string;
  label: string;
  compensation: string;
  fractions: number[];
  pooled: Record<ReindexOrder, { mean: number[]; std: (number | null)[] }>;
  perTask: Record<string, Record<ReindexOrder, number[]>>;
  /** pooled gain of a full re-index over none (mean over seeds) */
  gain: number;
  /** the smallest fraction reaching 90% of that gain, per order (null: re-indexing does not gain) */
  reach90: Record<ReindexOrder, number | null>;
  reach90PerTask: Record<string, Record<ReindexOrder, number | null>>;
  /** the order reaching 90% with the least re-embedded (ties: the larger area under the curve) */
  best: ReindexOrder | null;
}

/** What a run was: its name, where it ran, its tasks and its primary measure. */
export interface RunInfo {
  name: string;
  machine: string;
  device: string;
  threads: number;
  tasks: string[];
  measure: string;
}

export interface BenchmarkReport extends RunInfo {
  seeds: number[];
  settings: Record<string, SettingResult>;
  comparisons: Comparison[];
  curves: CurveSummary[];
  steps: StepSummary[];
  stages: { stage: string; seconds: number; device: string }[];
  totalSeconds: number;
  cells: ReportCell[];
}

export interface ReportCell {
  seed?: number;
  setting: string;
  T: number;
  j: number;
  scores: Record<string, number>;
  perQuery?: Record<string, number>;
}

/** One fine-tuning step of a chain: how far its queries moved, and what auto made of it. */
export interface StepRecord {
  seed: number;
  chain: string;
  /** the task trained in this step (1-based) */
  t: number;
  task: string;
  /** the child model's version */
  child: string;
  /** 1 − mean cosine between parent and child embeddings of the task's training queries */
  drift: number;
  /** FT+KD: auto's pick, and its held-out MRR@10 on the fit sample against identity's */
  picked?: string;
  heldOutIdentity?: number;
  heldOutPicked?: number;
}

/** A step summarised over seeds, beside what compensating one step gained on the test queries. */
export interface StepSummary {
  t: number;
  task: string;
  drift: Record<string, number>;
  /** auto's picks over the seeds */
  picked: string[];
  /** auto's held-out MRR@10 gain over identity on its fit sample (mean over seeds) */
  heldOutGain: number | null;
  /**
   * test gain of compensating one step (after training on t, on task t − 1, whose index is the
   * previous model's): setting − its no-compensation counterpart, mean over seeds
   */
  oneStep: { ftQdc: number | null; kdQdc: number | null; kdAuto: number | null };
}

export interface ReportInput extends RunInfo {
  seeds?: number[];
  cells: ReportCell[];
  curves?: CurveRecord[];
  steps?: StepRecord[];
  stages: { stage: string; seconds: number; device: string }[];
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);

interface SeedResult {
  R: (number | null)[][];
  average: number | null;
  backwardTransfer: number | null;
  forgetting: number | null;
}

/** One seed's matrix of a setting, with its average, BWT and forgetting; null if it has no cell. */
function seedResult(cells: ReportCell[], setting: string, n: number, measure: string): SeedResult | null {
  const R: (number | null)[][] = Array.from({ length: n }, () => Array.from({ length: n }, () => null));
  let any = false;
  for (const c of cells) {
    if (c.setting !== setting) continue;
    const v = c.scores[measure];
    if (v === undefined) throw new Error(`cell ${setting} T=${c.T} j=${c.j} has no ${measure}`);
    (R[c.T - 1] as (number | null)[])[c.j - 1] = v;
    any = true;
  }
  if (!any) return null;
  const last = R[n - 1] as (number | null)[];
  const lastFull = last.every((v) => v !== null);
  const bwt: number[] = [];
  const forget: number[] = [];
  for (let j = 0; j < n - 1; j++) {
    const diag = R[j]?.[j];
    const fin = last[j];
    if (diag == null || fin == null) continue;
    bwt.push(fin - diag);
    const seen = R.slice(j, n - 1)
      .map((row) => row[j])
      .filter((v): v is number => v != null);
    forget.push(Math.max(...seen) - fin);
  }
  return {
    R,
    average: lastFull ? mean(last as number[]) : null,
    backwardTransfer: n > 1 && bwt.length === n - 1 ? mean(bwt) : null,
    forgetting: n > 1 && forget.length === n - 1 ? mean(forget) : null,
  };
}

/** The comparisons the report makes (a vs b); `best` is filled in with the best compensated setting. */
const COMPARISONS: { key: string; label: string; a: string; b: string }[] = [
  { key: "qdc_vs_no_reindex", label: "FT + QDC vs FT, no re-index", a: "ft_qdc", b: "ft_no_reindex" },
  { key: "auto_vs_qdc", label: "FT+KD: auto vs QDC (mean)", a: "kd_auto", b: "kd_qdc" },
  { key: "auto_vs_none", label: "FT+KD: auto vs no compensation", a: "kd_auto", b: "kd_no_reindex" },
  { key: "kd_vs_ft", label: "no re-index: FT+KD vs FT", a: "kd_no_reindex", b: "ft_no_reindex" },
  { key: "kd_reindex_vs_kept", label: "FT+KD: re-indexed vs old index kept", a: "kd_reindex", b: "kd_no_reindex" },
];
const COMPENSATED = ["ft_qdc", "kd_qdc", "kd_auto"];
const REINDEXED_OF: Record<string, string> = { ft_qdc: "ft_reindex", kd_qdc: "kd_reindex", kd_auto: "kd_reindex" };

/** Per (task, query) of the old tasks after the last task: a setting's score per seed. */
function oldTaskScores(cells: ReportCell[], setting: string, n: number): Map<number, Map<string, number>> {
  const bySeed = new Map<number, Map<string, number>>();
  for (const c of cells) {
    if (c.setting !== setting || c.T !== n || c.j >= n || !c.perQuery) continue;
    const seed = c.seed ?? 0;
    const m = bySeed.get(seed) ?? new Map<string, number>();
    bySeed.set(seed, m);
    for (const [q, v] of Object.entries(c.perQuery)) m.set(`${c.j}\t${q}`, v);
  }
  return bySeed;
}

function compare(
  cells: ReportCell[],
  n: number,
  def: { key: string; label: string; a: string; b: string },
): Comparison | null {
  const A = oldTaskScores(cells, def.a, n);
  const B = oldTaskScores(cells, def.b, n);
  const seeds = [...A.keys()].filter((s) => B.has(s)).sort((x, y) => x - y);
  if (!seeds.length) return null;
  const units = [...(A.get(seeds[0] as number) as Map<string, number>).keys()].filter((u) =>
    seeds.every((s) => A.get(s)?.has(u) && B.get(s)?.has(u)),
  );
  if (!units.length) return null;
  // a − b per seed and query; per query its mean over seeds, per seed its mean over queries
  const matrix = seeds.map((s) => units.map((u) => (A.get(s)?.get(u) as number) - (B.get(s)?.get(u) as number)));
  const d = units.map((_, i) => matrix.reduce((acc, row) => acc + (row[i] as number), 0) / seeds.length);
  const perSeed = seeds.map((s, k) => ({
    seed: s,
    delta: (matrix[k] as number[]).reduce((acc, v) => acc + v, 0) / units.length,
  }));
  return {
    ...def,
    test: pairedTest(d, { seed: 1 }),
    ci95Seeds: seeds.length > 1 ? seedQueryInterval(matrix, { seed: 2 }) : null,
    perSeed,
  };
}

const CHAIN_LABELS: Record<string, string> = { ft: "FT + QDC (mean)", kd: "FT+KD + auto compensator" };

function summariseCurves(records: CurveRecord[], tasks: string[]): CurveSummary[] {
  const out: CurveSummary[] = [];
  const groups = [...new Set(records.map((r) => `${r.chain}\t${r.merge}`))];
  for (const g of groups) {
    const [chain, merge] = g.split("\t") as [string, string];
    const rs = records.filter((r) => r.chain === chain && r.merge === merge);
    const fractions = rs[0]?.fractions as number[];
    const seeds = [...new Set(rs.map((r) => r.seed))].sort((a, b) => a - b);
    const oldTasks = [...new Set(rs.map((r) => r.j))].sort((a, b) => a - b);
    const find = (seed: number, j: number, order: ReindexOrder) =>
      rs.find((r) => r.seed === seed && r.j === j && r.order === order);
    const pooled = {} as CurveSummary["pooled"];
    const perTask: CurveSummary["perTask"] = {};
    const reach90 = {} as CurveSummary["reach90"];
    const reach90PerTask: CurveSummary["reach90PerTask"] = {};
    for (const order of REINDEX_ORDERS) {
      // per seed: the old tasks' scores pooled over their queries
      const perSeed = seeds.map((seed) =>
        fractions.map((_, i) => {
          let sum = 0;
          let q = 0;
          for (const j of oldTasks) {
            const r = find(seed, j, order);
            if (!r) continue;
            sum += (r.scores[i] as number) * r.queries;
            q += r.queries;
          }
          return q ? sum / q : 0;
        }),
      );
      const stats = fractions.map((_, i) => meanStd(perSeed.map((p) => p[i] as number)));
      pooled[order] = { mean: stats.map((m) => m.mean as number), std: stats.map((m) => m.std) };
      reach90[order] = fractionReaching(fractions, pooled[order].mean);
      for (const j of oldTasks) {
        const name = tasks[j - 1] as string;
        const rows = seeds.map((seed) => find(seed, j, order)?.scores).filter((x): x is number[] => !!x);
        const m = fractions.map((_, i) => meanStd(rows.map((r) => r[i] as number)).mean as number);
        perTask[name] = { ...(perTask[name] ?? ({} as Record<ReindexOrder, number[]>)), [order]: m };
        reach90PerTask[name] = {
          ...(reach90PerTask[name] ?? ({} as Record<ReindexOrder, number | null>)),
          [order]: fractionReaching(fractions, m),
        };
      }
    }
    const first = pooled.random.mean;
    const gain = (first[first.length - 1] as number) - (first[0] as number);
    const area = (o: ReindexOrder) => pooled[o].mean.reduce((a, v) => a + v, 0);
    const reaching = REINDEX_ORDERS.filter((o) => reach90[o] != null);
    const best = reaching.length
      ? (reaching.sort(
          (a, b) => (reach90[a] as number) - (reach90[b] as number) || area(b) - area(a),
        )[0] as ReindexOrder)
      : null;
    out.push({
      chain,
      merge,
      label: `${CHAIN_LABELS[chain] ?? chain}${merge === "raw" ? ", raw scores merged" : ""}`,
      compensation: rs[0]?.compensation as string,
      fractions,
      pooled,
      perTask,
      gain,
      reach90,
      reach90PerTask,
      best,
    });
  }
  return out;
}

function summariseSteps(
  records: StepRecord[],
  tasks: string[],
  settings: Record<string, SettingResult>,
): StepSummary[] {
  const out: StepSummary[] = [];
  const oneStep = (a: string, b: string, t: number) => {
    const x = settings[a]?.R[t - 1]?.[t - 2];
    const y = settings[b]?.R[t - 1]?.[t - 2];
    return t >= 2 && x != null && y != null ? x - y : null;
  };
  for (let t = 1; t <= tasks.length; t++) {
    const rs = records.filter((r) => r.t === t);
    if (!rs.length) continue;
    const drift: Record<string, number> = {};
    for (const chain of ["ft", "kd"]) {
      const d = meanStd(rs.filter((r) => r.chain === chain).map((r) => r.drift)).mean;
      if (d != null) drift[chain] = d;
    }
    const kd = rs.filter((r) => r.chain === "kd" && r.picked);
    const gains = kd
      .filter((r) => r.heldOutPicked != null && r.heldOutIdentity != null)
      .map((r) => (r.heldOutPicked as number) - (r.heldOutIdentity as number));
    out.push({
      t,
      task: tasks[t - 1] as string,
      drift,
      picked: kd.sort((a, b) => a.seed - b.seed).map((r) => r.picked as string),
      heldOutGain: meanStd(gains).mean,
      oneStep: {
        ftQdc: oneStep("ft_qdc", "ft_no_reindex", t),
        kdQdc: oneStep("kd_qdc", "kd_no_reindex", t),
        kdAuto: oneStep("kd_auto", "kd_no_reindex", t),
      },
    });
  }
  return out;
}

export function summarise(input: ReportInput): BenchmarkReport {
  const n = input.tasks.length;
  const seeds = input.seeds ?? [...new Set(input.cells.map((c) => c.seed ?? 0))].sort((a, b) => a - b);
  const settings: Record<string, SettingResult> = {};
  const stat = (xs: (number | null)[]) => meanStd(xs.filter((v): v is number => v != null));
  for (const s of SETTINGS) {
    const per = seeds
      .map((seed) =>
        seedResult(
          input.cells.filter((c) => (c.seed ?? seeds[0]) === seed),
          s,
          n,
          input.measure,
        ),
      )
      .filter((r): r is SeedResult => r !== null);
    if (!per.length) continue;
    const grid = (pick: (r: SeedResult) => number | null, field: "mean" | "std") => stat(per.map(pick))[field];
    const R = Array.from({ length: n }, (_, T) =>
      Array.from({ length: n }, (_, j) => grid((r) => r.R[T]?.[j] ?? null, "mean")),
    );
    const Rstd = Array.from({ length: n }, (_, T) =>
      Array.from({ length: n }, (_, j) => grid((r) => r.R[T]?.[j] ?? null, "std")),
    );
    const all = <K extends "average" | "backwardTransfer" | "forgetting">(k: K) =>
      per.every((r) => r[k] != null) ? stat(per.map((r) => r[k])) : { mean: null, std: null };
    settings[s] = {
      label: SETTING_LABELS[s],
      R,
      average: all("average").mean,
      backwardTransfer: all("backwardTransfer").mean,
      forgetting: all("forgetting").mean,
      seeds: per.length,
      std: {
        R: Rstd,
        average: all("average").std,
        backwardTransfer: all("backwardTransfer").std,
        forgetting: all("forgetting").std,
      },
    };
  }
  const comparisons: Comparison[] = [];
  for (const def of COMPARISONS) {
    const c = compare(input.cells, n, def);
    if (c) comparisons.push(c);
  }
  // the best compensated setting (by its mean over the old tasks after the last task) vs re-indexed
  const oldMean = (k: string) => {
    const row = settings[k]?.R[n - 1]?.slice(0, n - 1) ?? [];
    return row.length && row.every((v) => v != null) ? (mean(row as number[]) as number) : null;
  };
  const best = COMPENSATED.filter((k) => oldMean(k) != null).sort(
    (a, b) => (oldMean(b) as number) - (oldMean(a) as number),
  )[0];
  if (best) {
    const c = compare(input.cells, n, {
      key: "best_compensated_vs_reindexed",
      label: `best compensated (${SETTING_LABELS[best as SettingKey]}) vs its chain re-indexed`,
      a: best,
      b: REINDEXED_OF[best] as string,
    });
    if (c) comparisons.push(c);
  }
  return {
    name: input.name,
    machine: input.machine,
    device: input.device,
    threads: input.threads,
    tasks: input.tasks,
    measure: input.measure,
    seeds,
    settings,
    comparisons,
    curves: summariseCurves(input.curves ?? [], input.tasks),
    steps: summariseSteps(input.steps ?? [], input.tasks, settings),
    stages: input.stages,
    totalSeconds: input.stages.reduce((a, s) => a + s.seconds, 0),
    cells: input.cells,
  };
}

const f = (v: number | null | undefined, signed = false) =>
  v == null ? "–" : `${signed && v > 0 ? "+" : ""}${(100 * v).toFixed(1)}`;

/** A value × 100 with its standard deviation over seeds where there is one. */
const fs = (v: number | null | undefined, sd: number | null | undefined, signed = false) =>
  v == null ? "–" : sd == null ? f(v, signed) : `${f(v, signed)} ± ${(100 * sd).toFixed(1)}`;

const pct = (v: number | null) => (v == null ? "never" : `${Math.round(100 * v)}%`);

/** Markdown: the last-task table, comparisons, re-index curves, every setting's matrix, the stage times. */
export function formatMarkdown(r: BenchmarkReport): string {
  const n = r.tasks.length;
  const multi = r.seeds.length > 1;
  const head = `| setting | ${r.tasks.join(" | ")} | average | BWT | forgetting |`;
  const sep = `|---|${r.tasks.map(() => "---:").join("|")}|---:|---:|---:|`;
  const rows = Object.values(r.settings).map(
    (s) =>
      `| ${s.label}${multi && s.seeds < r.seeds.length ? ` (${s.seeds} seed${s.seeds > 1 ? "s" : ""})` : ""} | ${(s.R[n - 1] ?? []).map((v, j) => fs(v, s.std.R[n - 1]?.[j])).join(" | ")} | ${fs(s.average, s.std.average)} | ${fs(s.backwardTransfer, s.std.backwardTransfer, true)} | ${fs(s.forgetting, s.std.forgetting)} |`,
  );
  const comparisons = r.comparisons.length
    ? `## Paired comparisons after the last task (old tasks' queries pooled)

Δ = a − b in ${r.measure} × 100 over the ${r.comparisons[0]?.test.n} test queries of the tasks before the last one${multi ? ` (per query the mean over ${r.seeds.length} seeds)` : ""}; 95% interval: percentile bootstrap over queries (10,000 resamples); p: two-sided randomisation (sign-flip) test.${multi ? " The seeds × queries interval is a two-level bootstrap (seeds drawn with replacement, then queries): it also covers the spread between training seeds. Per seed: Δ of that seed's means." : ""}

| comparison (a vs b) | Δ | 95% interval (queries) | p |${multi ? " 95% interval (seeds × queries) | per seed |" : ""}
|---|---:|---:|---:|${multi ? "---:|---|" : ""}
${r.comparisons
  .map(
    (c) =>
      `| ${c.label} | ${f(c.test.delta, true)} | [${f(c.test.ci95[0], true)}, ${f(c.test.ci95[1], true)}] | ${c.test.p < 0.001 ? "< 0.001" : c.test.p.toFixed(3)} |${multi ? ` ${c.ci95Seeds ? `[${f(c.ci95Seeds[0], true)}, ${f(c.ci95Seeds[1], true)}]` : "–"} | ${c.perSeed.map((p) => f(p.delta, true)).join(", ")} |` : ""}`,
  )
  .join("\n")}
`
    : "";
  const steps = r.steps.length
    ? `## Drift per step and what compensating it gains

Per fine-tuning step (the task trained): drift = 1 − mean cosine between the parent's and the child's embeddings of the task's training queries (× 100; mean over seeds); auto's picks per seed and its held-out MRR@10 gain over identity on its fit sample (× 100); the test gain of compensating that one step (after training on the task, on the task before it, whose index the previous model built): ${r.measure} × 100 of the compensated setting minus no compensation.

| step | FT drift | FT+KD drift | FT: QDC gain | FT+KD: QDC gain | FT+KD: auto picks | auto held-out gain | FT+KD: auto gain |
|---|---:|---:|---:|---:|---|---:|---:|
${r.steps
  .map(
    (st) =>
      `| ${st.task} | ${f(st.drift.ft)} | ${f(st.drift.kd)} | ${f(st.oneStep.ftQdc, true)} | ${f(st.oneStep.kdQdc, true)} | ${st.picked.join(", ") || "–"} | ${f(st.heldOutGain, true)} | ${f(st.oneStep.kdAuto, true)} |`,
  )
  .join("\n")}

`
    : "";
  const curves = r.curves
    .map((cv) => {
      const fr = cv.fractions.map((x) => `${Math.round(100 * x)}%`);
      const table = REINDEX_ORDERS.map(
        (o) =>
          `| ${ORDER_LABELS[o]} | ${cv.pooled[o].mean.map((v, i) => fs(v, cv.pooled[o].std[i])).join(" | ")} | ${pct(cv.reach90[o])} |`,
      ).join("\n");
      const tasks = Object.keys(cv.perTask);
      const perTask = tasks
        .map(
          (t) =>
            `| ${t} | ${f(cv.perTask[t]?.random[0])} | ${f(cv.perTask[t]?.random[cv.fractions.length - 1])} | ${REINDEX_ORDERS.map((o) => pct(cv.reach90PerTask[t]?.[o] ?? null)).join(" | ")} |`,
        )
        .join("\n");
      return `### ${cv.label}: old tasks after the last task, the rest searched with ${cv.compensation}

Pooled over the old tasks' queries${multi ? `, mean ± std over ${r.seeds.length} seeds` : ""}; full re-index gain ${f(cv.gain, true)}; best order: ${cv.best ? `${ORDER_LABELS[cv.best]} (90% of the gain at ${pct(cv.reach90[cv.best])})` : "none (re-indexing does not gain)"}.

| order | ${fr.join(" | ")} | 90% of the gain at |
|---|${fr.map(() => "---:").join("|")}|---:|
${table}

| task | none | full | ${REINDEX_ORDERS.map((o) => `90%: ${ORDER_LABELS[o]}`).join(" | ")} |
|---|---:|---:|${REINDEX_ORDERS.map(() => "---:").join("|")}|
${perTask}
`;
    })
    .join("\n");
  const matrices = Object.values(r.settings)
    .map((s) => {
      const h = `| after \\ on | ${r.tasks.join(" | ")} |\n|---|${r.tasks.map(() => "---:").join("|")}|`;
      const body = s.R.map(
        (row, T) => `| ${r.tasks[T]} | ${row.map((v, j) => fs(v, s.std.R[T]?.[j])).join(" | ")} |`,
      ).join("\n");
      return `**${s.label}**\n\n${h}\n${body}`;
    })
    .join("\n\n");
  const stages = r.stages.map((s) => `| ${s.stage} | ${s.seconds.toFixed(1)} | ${s.device} |`).join("\n");
  return `# Continual retrieval benchmark \`${r.name}\`

${r.measure} × 100 on each task after training on the last one (${r.tasks.join(" → ")}), the average over
tasks, backward transfer (BWT: final − just-trained score, mean over earlier tasks) and forgetting
(best earlier score − final, mean over earlier tasks)${multi ? `; mean ± sample std over seeds ${r.seeds.join(", ")}` : `; seed ${r.seeds[0]}`}. Machine: ${r.machine}; device ${r.device}, ${r.threads} threads.

${head}
${sep}
${rows.join("\n")}

${steps}${comparisons}${curves ? `\n## Re-index curves: ${r.measure} × 100 with a fraction of the corpus re-embedded\n\n${curves}` : ""}
## R[T][j]: ${r.measure} × 100 on task j (columns) after training on task T (rows)

${matrices}

## Wall time per stage (${r.totalSeconds.toFixed(0)} s in all, summed over every invocation on this run folder)

| stage | seconds | device |
|---|---:|---|
${stages}
`;
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/**
 * Conservative text extents for laying out the figure without a font engine: an average
 * sans-serif character is about 0.55 em wide (0.6 bold); 0.62 / 0.68 em per character leave room for
 * wide letters. Ascent and descent are fractions of the font size.
 */
export const TEXT_METRICS = { em: 0.62, boldEm: 0.68, ascent: 0.8, descent: 0.25 };

/** The width of a text at a font size, counted in characters (code points). */
export function textWidth(text: string, size: number, bold = false): number {
  return [...text].length * size * (bold ? TEXT_METRICS.boldEm : TEXT_METRICS.em);
}

/** Axis-aligned box of a text drawn at (x, y) with an anchor, rotated about (x, y) by `angle` degrees (SVG). */
export function textBox(
  text: string,
  x: number,
  y: number,
  size: number,
  opts: { bold?: boolean; anchor?: "start" | "middle" | "end"; angle?: number } = {},
): { x0: number; y0: number; x1: number; y1: number } {
  const w = textWidth(text, size, opts.bold);
  const a0 = opts.anchor === "end" ? -w : opts.anchor === "middle" ? -w / 2 : 0;
  const rad = ((opts.angle ?? 0) * Math.PI) / 180;
  const cos = Math.cos(rad);
  const sin = Math.sin(rad);
  const xs: number[] = [];
  const ys: number[] = [];
  for (const dx of [a0, a0 + w])
    for (const dy of [-TEXT_METRICS.ascent * size, TEXT_METRICS.descent * size]) {
      xs.push(x + dx * cos - dy * sin);
      ys.push(y + dx * sin + dy * cos);
    }
  return { x0: Math.min(...xs), y0: Math.min(...ys), x1: Math.max(...xs), y1: Math.max(...ys) };
}

/** Greedy word wrap to `width`; a word longer than a line is cut. */
export function wrapText(text: string, width: number, size: number, bold = false): string[] {
  const max = Math.max(1, Math.floor(width / (size * (bold ? TEXT_METRICS.boldEm : TEXT_METRICS.em))));
  const lines: string[] = [];
  let line = "";
  for (let word of text.split(/\s+/).filter(Boolean)) {
    while ([...word].length > max) {
      if (line) {
        lines.push(line);
        line = "";
      }
      lines.push([...word].slice(0, max).join(""));
      word = [...word].slice(max).join("");
    }
    const next = line ? `${line} ${word}` : word;
    if ([...next].length > max) {
      lines.push(line);
      line = word;
    } else line = next;
  }
  if (line) lines.push(line);
  return lines;
}

/** A round step giving about `count` intervals over [0, max]. */
function niceStep(max: number, count: number): number {
  const raw = max / count;
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * p;
}

const fmt = (v: number) => String(Number(v.toFixed(2)));

const FONT = { title: 15, subtitle: 11, panel: 12, tick: 10, axis: 10, cell: 9, legend: 10, bar: 11 };
const MARGIN = 16;
const GAP = 28;
const CELL = 34;
const C45 = Math.SQRT1_2;

interface Panel {
  w: number;
  h: number;
  draw: (x0: number, y0: number) => string[];
}

/**
 * One setting's heatmap R[T][j], sized to its content: only the rows (T) and columns (j) that hold
 * a value, the column labels rotated −45° above the cells with room for their length, the row
 * labels to the left, and the two axis titles.
 */
function heatmapPanel(
  s: SettingResult,
  tasks: string[],
  colour: (v: number) => string,
  dark: (v: number) => boolean,
): Panel {
  const rows = s.R.map((_, T) => T).filter((T) => s.R[T]?.some((v) => v != null));
  const cols = tasks.map((_, j) => j).filter((j) => s.R.some((row) => row[j] != null));
  const asc = TEXT_METRICS.ascent;
  const desc = TEXT_METRICS.descent;
  const rowTitle = "after training on";
  const colTitle = "evaluated on";
  // horizontal: [row axis title (rotated −90°)] gap [row labels] gap [cells]
  const rowTitleRight = (asc + desc) * FONT.axis;
  const rowLabelW = Math.max(0, ...rows.map((T) => textWidth(tasks[T] as string, FONT.tick)));
  const gridLeft = Math.ceil(rowTitleRight + 6 + rowLabelW + 6);
  const gridW = cols.length * CELL;
  // vertical: [panel title] gap [column axis title] gap [column labels, rotated −45°] gap [cells]
  const titleBottom = FONT.panel * (1 + desc);
  const colLabelH = Math.max(0, ...cols.map((j) => (textWidth(tasks[j] as string, FONT.tick) + asc * FONT.tick) * C45));
  const colLabelRight = Math.max(
    0,
    ...cols.map(
      (j, k) => gridLeft + k * CELL + CELL / 2 + (textWidth(tasks[j] as string, FONT.tick) + desc * FONT.tick) * C45,
    ),
  );
  let gridTop = Math.ceil(titleBottom + 6 + FONT.axis * (asc + desc) + 4 + colLabelH + 4);
  const gridH = rows.length * CELL;
  // the rotated row axis title is centred on the cells; keep it below the panel title
  const rowTitleW = textWidth(rowTitle, FONT.axis);
  gridTop = Math.max(gridTop, Math.ceil(titleBottom + 4 + rowTitleW / 2 - gridH / 2));
  const w = Math.ceil(
    Math.max(
      textWidth(s.label, FONT.panel, true),
      gridLeft + gridW,
      colLabelRight,
      gridLeft + textWidth(colTitle, FONT.axis),
    ),
  );
  const h = Math.ceil(Math.max(gridTop + gridH, gridTop + gridH / 2 + rowTitleW / 2)) + 2;
  const draw = (x0: number, y0: number): string[] => {
    const out: string[] = [`<g class="panel" data-setting="${esc(s.label)}">`];
    out.push(
      `<text class="panel-title" x="${x0}" y="${y0 + FONT.panel}" font-size="${FONT.panel}" font-weight="bold">${esc(s.label)}</text>`,
    );
    const gx = x0 + gridLeft;
    const gy = y0 + gridTop;
    const labelsTop = gy - 4 - colLabelH;
    out.push(
      `<text class="axis-title" x="${gx}" y="${fmt(labelsTop - 4 - desc * FONT.axis)}" font-size="${FONT.axis}" fill="#444">${colTitle}</text>`,
    );
    const ry = gy + gridH / 2;
    const rx = x0 + asc * FONT.axis;
    out.push(
      `<text class="axis-title" x="${fmt(rx)}" y="${fmt(ry)}" font-size="${FONT.axis}" fill="#444" text-anchor="middle" transform="rotate(-90 ${fmt(rx)} ${fmt(ry)})">${rowTitle}</text>`,
    );
    cols.forEach((j, k) => {
      const ax = gx + k * CELL + CELL / 2;
      const ay = gy - 4;
      out.push(
        `<text class="col-label" x="${fmt(ax)}" y="${ay}" font-size="${FONT.tick}" transform="rotate(-45 ${fmt(ax)} ${ay})">${esc(tasks[j] as string)}</text>`,
      );
    });
    rows.forEach((T, r) => {
      out.push(
        `<text class="row-label" x="${gx - 6}" y="${fmt(gy + r * CELL + CELL / 2 + 0.35 * FONT.tick)}" font-size="${FONT.tick}" text-anchor="end">${esc(tasks[T] as string)}</text>`,
      );
      cols.forEach((j, k) => {
        const v = s.R[T]?.[j];
        if (v == null) return;
        const x = gx + k * CELL;
        const y = gy + r * CELL;
        out.push(
          `<rect class="cell" x="${x}" y="${y}" width="${CELL - 1}" height="${CELL - 1}" fill="${colour(v)}"><title>${esc(s.label)}: after ${esc(tasks[T] ?? "")}, on ${esc(tasks[j] ?? "")}: ${(100 * v).toFixed(1)}</title></rect>`,
        );
        out.push(
          `<text class="value" x="${fmt(x + (CELL - 1) / 2)}" y="${fmt(y + (CELL - 1) / 2 + 0.35 * FONT.cell)}" font-size="${FONT.cell}" text-anchor="middle" fill="${dark(v) ? "white" : "black"}">${(100 * v).toFixed(1)}</text>`,
        );
      });
    });
    out.push("</g>");
    return out;
  };
  return { w, h, draw };
}

/**
 * An SVG figure: a title, a colour legend with its scale, one heatmap of R per setting (each sized
 * to its content, with axis titles), and a bar chart of the final averages. Text is placed from
 * conservative extents (TEXT_METRICS) so that nothing leaves the canvas or covers a cell.
 */
export function renderSvg(r: BenchmarkReport): string {
  const settings = Object.values(r.settings);
  const values = settings.flatMap((s) => s.R.flat().filter((v): v is number => v != null));
  // the colour and bar scale: 0 … a round number at or above the best score (× 100)
  const top100 = Math.max(1e-6, ...values.map((v) => 100 * v));
  const step = niceStep(top100, 5);
  const scaleMax = Math.ceil(top100 / step - 1e-9) * step;
  const frac = (v: number) => Math.max(0, Math.min(1, (100 * v) / scaleMax));
  const colour = (v: number) => {
    const t = frac(v);
    const mix = (a: number, b: number) => Math.round(a + (b - a) * t);
    return `rgb(${mix(247, 8)},${mix(251, 69)},${mix(255, 148)})`;
  };
  const dark = (v: number) => frac(v) > 0.55;

  // heatmaps, in rows of at most four
  const panels = settings.map((s) => heatmapPanel(s, r.tasks, colour, dark));
  const perRow = 4;
  const panelRows: Panel[][] = [];
  for (let i = 0; i < panels.length; i += perRow) panelRows.push(panels.slice(i, i + perRow));
  const panelsW = Math.max(0, ...panelRows.map((row) => row.reduce((a, p) => a + p.w, 0) + GAP * (row.length - 1)));

  // bar chart geometry
  const barLabelW = Math.max(0, ...settings.map((s) => textWidth(s.label, FONT.bar)));
  const barX = Math.ceil(MARGIN + barLabelW + 8);
  const valueW = textWidth("100.0 ± 10.0", FONT.bar) + 6;
  const missing = "not evaluated after every task";

  const width = Math.ceil(
    Math.max(640, MARGIN * 2 + panelsW, barX + 240 + valueW + MARGIN, barX + textWidth(missing, FONT.bar) + MARGIN),
  );
  const inner = width - 2 * MARGIN;
  const parts: string[] = [];
  let y = MARGIN;

  // title and subtitle, wrapped to the canvas
  const title = `Continual retrieval benchmark ${r.name}: ${r.measure} × 100`;
  for (const line of wrapText(title, inner, FONT.title, true)) {
    y += FONT.title;
    parts.push(
      `<text class="title" x="${MARGIN}" y="${y}" font-size="${FONT.title}" font-weight="bold">${esc(line)}</text>`,
    );
    y += Math.ceil(FONT.title * 0.35);
  }
  const subtitle = `Heatmaps: R[T][j], the score on task j (columns) after training on task T (rows), tasks in order ${r.tasks.join(" → ")}. Machine: ${r.machine}; device ${r.device}, ${r.threads} threads.`;
  for (const line of wrapText(subtitle, inner, FONT.subtitle)) {
    y += FONT.subtitle + 2;
    parts.push(
      `<text class="subtitle" x="${MARGIN}" y="${y}" font-size="${FONT.subtitle}" fill="#444">${esc(line)}</text>`,
    );
  }
  y += 12;

  // colour legend: the gradient with its numeric scale
  const legendLabel = `colour: ${r.measure} × 100`;
  const legendX = Math.ceil(MARGIN + textWidth(legendLabel, FONT.legend) + 10);
  const legendW = Math.min(260, width - legendX - MARGIN - textWidth(fmt(scaleMax), FONT.legend) / 2);
  const ticks: number[] = [];
  for (let v = 0; v <= scaleMax + 1e-9; v += step) ticks.push(Number(v.toFixed(6)));
  parts.push(`<g id="legend">`);
  parts.push(
    `<text class="legend-title" x="${MARGIN}" y="${y + 10}" font-size="${FONT.legend}">${esc(legendLabel)}</text>`,
    `<rect class="legend-scale" x="${legendX}" y="${y}" width="${fmt(legendW)}" height="12" fill="url(#scale)" stroke="#888" stroke-width="0.5"/>`,
  );
  for (const v of ticks) {
    const x = legendX + (v / scaleMax) * legendW;
    parts.push(
      `<line x1="${fmt(x)}" y1="${y + 12}" x2="${fmt(x)}" y2="${y + 16}" stroke="#444" stroke-width="0.5"/>`,
      `<text class="legend-tick" x="${fmt(x)}" y="${y + 16 + FONT.legend}" font-size="${FONT.legend}" text-anchor="middle">${fmt(v)}</text>`,
    );
  }
  parts.push("</g>");
  y += 16 + FONT.legend + 4 + 14;

  // heatmaps
  for (const row of panelRows) {
    let x = MARGIN;
    for (const p of row) {
      parts.push(...p.draw(x, y));
      x += p.w + GAP;
    }
    y += Math.max(...row.map((p) => p.h)) + GAP;
  }

  // bar chart of the final averages, on the same scale as the colours
  const barTitle = `Average ${r.measure} × 100 over the tasks after the last task`;
  for (const line of wrapText(barTitle, inner, 13, true)) {
    y += 13;
    parts.push(
      `<text class="chart-title" x="${MARGIN}" y="${y}" font-size="13" font-weight="bold">${esc(line)}</text>`,
    );
    y += 5;
  }
  y += 8;
  const barMax = width - barX - valueW - MARGIN;
  settings.forEach((s) => {
    parts.push(
      `<text class="bar-label" x="${barX - 8}" y="${y + 13}" font-size="${FONT.bar}" text-anchor="end">${esc(s.label)}</text>`,
    );
    if (s.average == null) {
      parts.push(
        `<text class="bar-value" x="${barX}" y="${y + 13}" font-size="${FONT.bar}" fill="#888">${missing}</text>`,
      );
    } else {
      const w = frac(s.average) * barMax;
      const sd = s.std.average;
      const hi = sd == null ? w : frac(s.average + sd) * barMax;
      parts.push(
        `<rect class="bar" x="${barX}" y="${y}" width="${fmt(w)}" height="18" fill="${colour(s.average)}" stroke="#08306b" stroke-width="0.5"/>`,
      );
      if (sd != null) {
        // ± one standard deviation over seeds
        const lo = frac(s.average - sd) * barMax;
        parts.push(
          `<path class="error-bar" d="M${fmt(barX + lo)} ${y + 9}H${fmt(barX + hi)}M${fmt(barX + lo)} ${y + 5}V${y + 13}M${fmt(barX + hi)} ${y + 5}V${y + 13}" stroke="#000" stroke-width="1" fill="none"/>`,
        );
      }
      parts.push(
        `<text class="bar-value" x="${fmt(barX + Math.max(w, hi) + 5)}" y="${y + 13}" font-size="${FONT.bar}">${(100 * s.average).toFixed(1)}${sd == null ? "" : ` ± ${(100 * sd).toFixed(1)}`}</text>`,
      );
    }
    y += 24;
  });
  // the bars' axis: ticks and title
  parts.push(`<line x1="${barX}" y1="${y}" x2="${fmt(barX + barMax)}" y2="${y}" stroke="#444" stroke-width="0.5"/>`);
  for (const v of ticks) {
    const x = barX + (v / scaleMax) * barMax;
    parts.push(
      `<line x1="${fmt(x)}" y1="${y}" x2="${fmt(x)}" y2="${y + 4}" stroke="#444" stroke-width="0.5"/>`,
      `<text class="axis-tick" x="${fmt(x)}" y="${y + 4 + FONT.tick}" font-size="${FONT.tick}" text-anchor="middle">${fmt(v)}</text>`,
    );
  }
  y += 4 + FONT.tick + 6 + FONT.axis;
  parts.push(
    `<text class="axis-title" x="${fmt(barX + barMax / 2)}" y="${y}" font-size="${FONT.axis}" fill="#444" text-anchor="middle">${esc(`average ${r.measure} × 100`)}</text>`,
  );
  // the re-index curves: pooled score against the fraction re-embedded, one line per order
  for (const cv of r.curves) {
    y += 28;
    for (const line of wrapText(
      `Re-index curves (${cv.label}): old tasks' ${r.measure} × 100 against the share of each corpus re-embedded`,
      inner,
      13,
      true,
    )) {
      y += 13;
      parts.push(
        `<text class="chart-title" x="${MARGIN}" y="${y}" font-size="13" font-weight="bold">${esc(line)}</text>`,
      );
      y += 5;
    }
    y += 10;
    const vals = REINDEX_ORDERS.flatMap((o) => cv.pooled[o].mean).map((v) => 100 * v);
    const st = niceStep(Math.max(1e-6, Math.max(...vals) - Math.min(...vals)), 4);
    const lo = Math.floor(Math.min(...vals) / st) * st;
    const hi = Math.max(lo + st, Math.ceil(Math.max(...vals) / st) * st);
    const ax = Math.ceil(
      MARGIN + (TEXT_METRICS.ascent + TEXT_METRICS.descent) * FONT.axis + 6 + textWidth(fmt(hi), FONT.tick) + 6,
    );
    const legendW = Math.max(...REINDEX_ORDERS.map((o) => textWidth(ORDER_LABELS[o], FONT.legend))) + 30;
    const cw = Math.max(160, Math.min(420, width - ax - MARGIN - legendW - 12));
    const ch = 150;
    const X = (fr: number) => ax + fr * cw;
    const Y = (v: number) => y + ch - ((100 * v - lo) / (hi - lo)) * ch;
    parts.push(`<g class="curves" data-chain="${esc(cv.chain)}">`);
    parts.push(
      `<rect x="${ax}" y="${y}" width="${fmt(cw)}" height="${ch}" fill="none" stroke="#444" stroke-width="0.5"/>`,
    );
    for (let v = lo; v <= hi + 1e-9; v += st) {
      const yy = y + ch - ((v - lo) / (hi - lo)) * ch;
      parts.push(
        `<line x1="${ax - 4}" y1="${fmt(yy)}" x2="${ax}" y2="${fmt(yy)}" stroke="#444" stroke-width="0.5"/>`,
        `<text class="axis-tick" x="${ax - 6}" y="${fmt(yy + 0.35 * FONT.tick)}" font-size="${FONT.tick}" text-anchor="end">${fmt(Number(v.toFixed(6)))}</text>`,
      );
    }
    for (const fr of cv.fractions) {
      parts.push(
        `<line x1="${fmt(X(fr))}" y1="${y + ch}" x2="${fmt(X(fr))}" y2="${y + ch + 4}" stroke="#444" stroke-width="0.5"/>`,
        `<text class="axis-tick" x="${fmt(X(fr))}" y="${y + ch + 4 + FONT.tick}" font-size="${FONT.tick}" text-anchor="middle">${Math.round(100 * fr)}</text>`,
      );
    }
    const yTitle = y + ch / 2;
    const xTitle = MARGIN + TEXT_METRICS.ascent * FONT.axis;
    parts.push(
      `<text class="axis-title" x="${fmt(xTitle)}" y="${fmt(yTitle)}" font-size="${FONT.axis}" fill="#444" text-anchor="middle" transform="rotate(-90 ${fmt(xTitle)} ${fmt(yTitle)})">${esc(`${r.measure} × 100`)}</text>`,
      `<text class="axis-title" x="${fmt(ax + cw / 2)}" y="${y + ch + 4 + FONT.tick + 4 + FONT.axis}" font-size="${FONT.axis}" fill="#444" text-anchor="middle">% of the corpus re-embedded</text>`,
    );
    const colours: Record<ReindexOrder, string> = { random: "#7f7f7f", retrieved: "#1f77b4", drift: "#d62728" };
    REINDEX_ORDERS.forEach((o, i) => {
      const pts = cv.fractions.map((fr, k) => `${fmt(X(fr))},${fmt(Y(cv.pooled[o].mean[k] as number))}`);
      parts.push(
        `<polyline class="curve" data-order="${o}" points="${pts.join(" ")}" fill="none" stroke="${colours[o]}" stroke-width="1.5"/>`,
      );
      for (const p of pts) {
        const [px, py] = p.split(",");
        parts.push(`<circle cx="${px}" cy="${py}" r="2.5" fill="${colours[o]}"/>`);
      }
      const lx = ax + cw + 12;
      const ly = y + 10 + i * 16;
      parts.push(
        `<line x1="${fmt(lx)}" y1="${ly}" x2="${fmt(lx + 18)}" y2="${ly}" stroke="${colours[o]}" stroke-width="2"/>`,
        `<text class="legend-label" x="${fmt(lx + 22)}" y="${fmt(ly + 0.35 * FONT.legend)}" font-size="${FONT.legend}">${esc(ORDER_LABELS[o])}</text>`,
      );
    });
    parts.push("</g>");
    y += ch + 4 + FONT.tick + 4 + FONT.axis;
  }
  const height = Math.ceil(y + FONT.axis * TEXT_METRICS.descent + MARGIN);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">
<defs><linearGradient id="scale" x1="0" x2="1" y1="0" y2="0"><stop offset="0" stop-color="${colour(0)}"/><stop offset="1" stop-color="${colour(scaleMax / 100)}"/></linearGradient></defs>
<rect width="100%" height="100%" fill="white"/>
${parts.join("\n")}
</svg>
`;
}

/** Writes results.json, results.md and figure.svg into `dir`. */
export function writeReport(dir: string, r: BenchmarkReport): void {
  writeFileSync(join(dir, "results.json"), `${JSON.stringify(r, null, 1)}\n`);
  writeFileSync(join(dir, "results.md"), formatMarkdown(r));
  writeFileSync(join(dir, "figure.svg"), renderSvg(r));
}
