/**
 * Retrieval metrics computed exactly as trec_eval (and pytrec_eval, which MTEB and BEIR use):
 * a query's results are ranked by score descending, ties by document id descending (strcmp order,
 * trec_eval's comp_sim_docno; the rank column of a run is ignored); a document is relevant when its
 * judgment is ≥ 1; nDCG's gain is the judgment itself with a log2(rank + 1) discount and an ideal
 * ranking built from all judgments of the query. Means are over the queries that have at least one
 * relevant document (and, unless `allQueries`, that appear in the run).
 */

export type Qrels = Map<string, Map<string, number>>;
/** query id → document id → score */
export type Run = Map<string, Map<string, number>>;

export type MeasureName = "ndcg_cut" | "recall" | "map_cut" | "recip_rank" | "P";
export const MEASURES: MeasureName[] = ["ndcg_cut", "recall", "map_cut", "recip_rank", "P"];

export interface Measure {
  name: MeasureName;
  /** the cut-off k; recip_rank without one looks at the whole ranking */
  k?: number;
}

/** trec_eval's output name: ndcg_cut_10, recall_100, map_cut_100, recip_rank, P_5. */
export function measureLabel(m: Measure): string {
  return m.k === undefined ? m.name : `${m.name}_${m.k}`;
}

/**
 * Parses trec_eval's `-m` syntax: `ndcg_cut.10`, `recall.10,100`, `recip_rank`, `recip_rank.10`.
 * The cut-off is required except for recip_rank.
 */
export function parseMeasures(spec: string): Measure[] {
  const [name, cuts] = spec.split(".", 2) as [string, string | undefined];
  if (!MEASURES.includes(name as MeasureName)) {
    throw new Error(`unknown measure '${spec}': use one of ${MEASURES.map((m) => `${m}.K`).join(", ")}`);
  }
  if (cuts === undefined) {
    if (name !== "recip_rank") throw new Error(`measure '${spec}' needs a cut-off, e.g. ${name}.10`);
    return [{ name: "recip_rank" }];
  }
  return cuts.split(",").map((c) => {
    const k = Number(c);
    if (!Number.isInteger(k) || k < 1) throw new Error(`measure '${spec}': cut-off '${c}' is not a positive integer`);
    return { name: name as MeasureName, k };
  });
}

/** Document ids of one query's results in trec_eval's order. */
export function rankResults(results: Map<string, number>): string[] {
  return [...results.entries()]
    .sort((a, b) => (a[1] > b[1] ? -1 : a[1] < b[1] ? 1 : a[0] < b[0] ? 1 : a[0] > b[0] ? -1 : 0))
    .map(([id]) => id);
}

const discount = (i: number) => Math.log2(i + 2); // i is the 0-based rank

/** One measure for one query: `ranked` document ids, `judged` its qrels. */
export function measureQuery(m: Measure, ranked: string[], judged: Map<string, number>): number {
  const rel = (d: string) => judged.get(d) ?? 0;
  const numRel = [...judged.values()].filter((r) => r >= 1).length;
  const k = m.k ?? ranked.length;
  const top = ranked.slice(0, k);
  switch (m.name) {
    case "ndcg_cut": {
      let dcg = 0;
      top.forEach((d, i) => {
        const g = rel(d);
        if (g > 0) dcg += g / discount(i);
      });
      const ideal = [...judged.values()]
        .filter((g) => g > 0)
        .sort((a, b) => b - a)
        .slice(0, k);
      const idcg = ideal.reduce((a, g, i) => a + g / discount(i), 0);
      return idcg > 0 ? dcg / idcg : 0;
    }
    case "recall":
      return numRel ? top.filter((d) => rel(d) >= 1).length / numRel : 0;
    case "P":
      return top.filter((d) => rel(d) >= 1).length / k;
    case "map_cut": {
      let found = 0;
      let sum = 0;
      top.forEach((d, i) => {
        if (rel(d) >= 1) sum += ++found / (i + 1);
      });
      return numRel ? sum / numRel : 0;
    }
    case "recip_rank": {
      const i = top.findIndex((d) => rel(d) >= 1);
      return i < 0 ? 0 : 1 / (i + 1);
    }
  }
}

export interface Evaluation {
  measures: Measure[];
  /** query id → measure label → value, for the evaluated queries */
  perQuery: Map<string, Record<string, number>>;
  /** measure label → mean over the evaluated queries */
  mean: Record<string, number>;
  queries: number;
}

/**
 * Evaluates a run. Queries are those with at least one relevant judgment that appear in the run;
 * with `allQueries` (trec_eval -c) also those missing from the run, which score 0.
 */
export function evaluate(qrels: Qrels, run: Run, measures: Measure[], opts: { allQueries?: boolean } = {}): Evaluation {
  const perQuery = new Map<string, Record<string, number>>();
  const ids = [...qrels.keys()].sort();
  for (const qid of ids) {
    const judged = qrels.get(qid) as Map<string, number>;
    if (![...judged.values()].some((r) => r >= 1)) continue;
    const results = run.get(qid);
    if (!results && !opts.allQueries) continue;
    const ranked = results ? rankResults(results) : [];
    const row: Record<string, number> = {};
    for (const m of measures) row[measureLabel(m)] = measureQuery(m, ranked, judged);
    perQuery.set(qid, row);
  }
  const mean: Record<string, number> = {};
  for (const m of measures) {
    const label = measureLabel(m);
    let sum = 0;
    for (const row of perQuery.values()) sum += row[label] as number;
    mean[label] = perQuery.size ? sum / perQuery.size : 0;
  }
  return { measures, perQuery, mean, queries: perQuery.size };
}

/** trec_eval's text output: `name \t qid|all \t value` (per-query lines first when asked). */
export function formatEvaluation(e: Evaluation, opts: { perQuery?: boolean } = {}): string {
  const line = (label: string, q: string, v: number) => `${label.padEnd(22)}\t${q}\t${v.toFixed(4)}\n`;
  let out = "";
  if (opts.perQuery) {
    for (const [qid, row] of e.perQuery)
      for (const m of e.measures) out += line(measureLabel(m), qid, row[measureLabel(m)] as number);
  }
  out += line("num_q", "all", e.queries).replace(/\.0000\n$/, "\n");
  for (const m of e.measures) out += line(measureLabel(m), "all", e.mean[measureLabel(m)] as number);
  return out;
}
