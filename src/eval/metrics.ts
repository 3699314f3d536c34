/**
 * Retrieval metrics computed as NIST trec_eval 10.0 computes them (pytrec_eval, which BEIR and MTEB
 * use, wraps trec_eval 9's code with the same semantics). What trec_eval does, and where:
 *
 * - Ranking (form_res_rels.c, comp_sim_docno): a query's results are sorted by score descending,
 *   ties by document id descending in strcmp order (bytes of the UTF-8 text); the rank column of a
 *   run is ignored.
 * - Relevance (form_res_rels.c, get_qrels.c): a judgment is an integer (atol: 1.7 counts as 1); a
 *   document is relevant when its judgment is ≥ 1 (the relevance level, -l); num_rel counts the
 *   judged documents of the query that are relevant, retrieved or not. Negative judgments are
 *   neither relevant nor gains.
 * - Which queries (trec_eval.c, main; meas_avg.c): the loop runs over the queries of the qrels,
 *   i.e. every query with at least one judgment line, including those whose judgments are all 0.
 *   Those queries score 0 on every measure here (m_recall.c, m_map_cut.c, m_ndcg_cut.c return 0
 *   when num_rel is 0; P and recip_rank find nothing relevant) and are averaged like any other.
 *   Queries of the run that the qrels do not judge are ignored. A judged query missing from the run
 *   is skipped unless `allQueries` (-c), which scores it 0 and divides by the number of judged
 *   queries. (trec_eval 10.0 without -c exits on such a query with "result qid … not found in
 *   qrels"; its help, trec_eval 9 and pytrec_eval skip it, which is what qdc does, and it lists the
 *   skipped queries.) A query with no results at all is a query missing from the run: a TREC run
 *   file cannot hold it.
 * - Measures: ndcg_cut.K (m_ndcg_cut.c): DCG with the judgment as gain and log2(rank + 1) discount,
 *   over the top K; the ideal DCG ranks every positive judgment of the query, cut at K. recall.K
 *   (m_recall.c): relevant in the top K / num_rel. P.K (m_P.c): relevant in the top K / K, also
 *   when fewer than K were retrieved. map (m_map.c) and map_cut.K (m_map_cut.c): the sum of the
 *   precisions at each relevant retrieved document (in the top K) / num_rel. recip_rank
 *   (m_recip_rank.c): 1 / rank of the first relevant document of the whole ranking.
 *   recip_rank.K is qdc's, not trec_eval's (which ignores the parameter): the reciprocal rank
 *   within the top K, what `trec_eval -M K -m recip_rank` computes (MRR@K).
 * - Cut-offs (meas_init.c, get_long_cutoffs): positive, sorted ascending, no duplicates. Output
 *   (measures.c, meas_print_*.c): measures in trec_eval's table order (num_q, map, recip_rank, P,
 *   recall, ndcg_cut, map_cut), each `%-22s\t%s\t%6.4f`; per-query lines in qid (strcmp) order.
 */

export type Qrels = Map<string, Map<string, number>>;
/** query id → document id → score */
export type Run = Map<string, Map<string, number>>;

export type MeasureName = "map" | "recip_rank" | "P" | "recall" | "ndcg_cut" | "map_cut";
/** In trec_eval's order (measures.c), which is also the order of its output. */
export const MEASURES: MeasureName[] = ["map", "recip_rank", "P", "recall", "ndcg_cut", "map_cut"];

export interface Measure {
  name: MeasureName;
  /** the cut-off k; map and recip_rank without one look at the whole ranking */
  k?: number;
}

/** trec_eval's output name: ndcg_cut_10, recall_100, map_cut_100, map, recip_rank, P_5. */
export function measureLabel(m: Measure): string {
  return m.k === undefined ? m.name : `${m.name}_${m.k}`;
}

/**
 * Parses trec_eval's `-m` syntax: `ndcg_cut.10`, `recall.10,100`, `map`, `recip_rank`, and qdc's
 * `recip_rank.10`. A cut-off is required except for map and recip_rank; cut-offs come back sorted.
 */
export function parseMeasures(spec: string): Measure[] {
  const [name, cuts] = spec.split(".", 2) as [string, string | undefined];
  if (!MEASURES.includes(name as MeasureName)) {
    const names = MEASURES.map((m) => (m === "map" ? m : m === "recip_rank" ? `${m}[.K]` : `${m}.K`));
    throw new Error(`unknown measure '${spec}': use one of ${names.join(", ")}`);
  }
  if (cuts === undefined) {
    if (name !== "recip_rank" && name !== "map") throw new Error(`measure '${spec}' needs a cut-off, e.g. ${name}.10`);
    return [{ name: name as MeasureName }];
  }
  if (name === "map") throw new Error(`measure '${spec}': map takes no cut-off (use map_cut${spec.slice(3)})`);
  const ks = cuts.split(",").map((c) => {
    const k = Number(c);
    if (c.trim() === "" || !Number.isInteger(k) || k < 1)
      throw new Error(`measure '${spec}': cut-off '${c}' is not a positive integer`);
    return k;
  });
  ks.sort((a, b) => a - b);
  for (let i = 1; i < ks.length; i++)
    if (ks[i] === ks[i - 1]) throw new Error(`measure '${spec}': cut-off ${ks[i]} given twice`);
  return ks.map((k) => ({ name: name as MeasureName, k }));
}

/**
 * The measures once each (by label), in trec_eval's output order: by measure, then cut-off (a
 * measure without a cut-off first).
 */
export function orderMeasures(measures: Measure[]): Measure[] {
  const seen = new Map<string, Measure>();
  for (const m of measures) if (!seen.has(measureLabel(m))) seen.set(measureLabel(m), m);
  return [...seen.values()].sort(
    (a, b) => MEASURES.indexOf(a.name) - MEASURES.indexOf(b.name) || (a.k ?? 0) - (b.k ?? 0),
  );
}

/**
 * C's strcmp on the UTF-8 encodings of two strings (unsigned bytes), without encoding them: UTF-8
 * byte order is code point order, which differs from UTF-16 code unit order only between
 * surrogates (U+10000…) and U+E000…U+FFFF.
 */
export function compareBytes(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800) x += x < 0xe000 ? 0x2000 : -0x800;
    if (y >= 0xd800) y += y < 0xe000 ? 0x2000 : -0x800;
    return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

/** Document ids of one query's results in trec_eval's order (comp_sim_docno). */
export function rankResults(results: Map<string, number>): string[] {
  return [...results.entries()].sort((a, b) => b[1] - a[1] || compareBytes(b[0], a[0])).map(([id]) => id);
}

const discount = (i: number) => Math.log2(i + 2); // i is the 0-based rank

/** A judgment as trec_eval reads it (atol): the integer part. */
const level = (r: number) => Math.trunc(r);

/**
 * One measure for one query: `ranked` document ids (in order), `judged` the query's judgments.
 * Follows the m_*.c file of each measure (see the top of this file).
 */
export function measureQuery(m: Measure, ranked: string[], judged: Map<string, number>): number {
  const rel = (d: string) => level(judged.get(d) ?? 0);
  let numRel = 0;
  for (const r of judged.values()) if (level(r) >= 1) numRel++;
  const top = m.k === undefined ? ranked : ranked.slice(0, m.k);
  switch (m.name) {
    case "ndcg_cut": {
      const k = m.k as number;
      let dcg = 0;
      top.forEach((d, i) => {
        const g = rel(d);
        if (g > 0) dcg += g / discount(i);
      });
      const ideal = [...judged.values()]
        .map(level)
        .filter((g) => g > 0)
        .sort((a, b) => b - a)
        .slice(0, k);
      let idcg = 0;
      ideal.forEach((g, i) => {
        idcg += g / discount(i);
      });
      return idcg > 0 ? dcg / idcg : dcg;
    }
    case "recall": {
      if (numRel === 0) return 0;
      let found = 0;
      for (const d of top) if (rel(d) >= 1) found++;
      return found / numRel;
    }
    case "P": {
      let found = 0;
      for (const d of top) if (rel(d) >= 1) found++;
      return found / (m.k as number);
    }
    case "map":
    case "map_cut": {
      if (numRel === 0) return 0;
      let found = 0;
      let sum = 0;
      top.forEach((d, i) => {
        if (rel(d) >= 1) sum += ++found / (i + 1);
      });
      return sum / numRel;
    }
    case "recip_rank": {
      const i = top.findIndex((d) => rel(d) >= 1);
      return i < 0 ? 0 : 1 / (i + 1);
    }
  }
}

export interface Evaluation {
  /** the measures once each, in trec_eval's output order */
  measures: Measure[];
  /** query id → measure label → value, for the evaluated queries, in qid (strcmp) order */
  perQuery: Map<string, Record<string, number>>;
  /** measure label → mean over the evaluated queries */
  mean: Record<string, number>;
  /** trec_eval's num_q: the number of queries averaged over */
  queries: number;
  /** judged queries absent from the run, not averaged (empty with allQueries, which counts them as 0) */
  skipped: string[];
  /** queries of the run without any judgment: ignored, as trec_eval ignores them */
  unjudged: string[];
}

/**
 * Evaluates a run as trec_eval does: over the judged queries (every query of the qrels, relevant
 * documents or not) that appear in the run; with `allQueries` (trec_eval -c) over every judged
 * query, those missing from the run scoring 0.
 */
export function evaluate(qrels: Qrels, run: Run, measures: Measure[], opts: { allQueries?: boolean } = {}): Evaluation {
  const ordered = orderMeasures(measures);
  const perQuery = new Map<string, Record<string, number>>();
  const skipped: string[] = [];
  for (const qid of [...qrels.keys()].sort(compareBytes)) {
    const judged = qrels.get(qid) as Map<string, number>;
    const results = run.get(qid);
    const retrieved = results !== undefined && results.size > 0;
    if (!retrieved && !opts.allQueries) {
      skipped.push(qid);
      continue;
    }
    const ranked = retrieved ? rankResults(results) : [];
    const row: Record<string, number> = {};
    for (const m of ordered) row[measureLabel(m)] = measureQuery(m, ranked, judged);
    perQuery.set(qid, row);
  }
  // summed in qid order, as trec_eval accumulates them
  const mean: Record<string, number> = {};
  for (const m of ordered) {
    const label = measureLabel(m);
    let sum = 0;
    for (const row of perQuery.values()) sum += row[label] as number;
    mean[label] = perQuery.size ? sum / perQuery.size : 0;
  }
  const unjudged = [...run.keys()].filter((q) => !qrels.has(q)).sort(compareBytes);
  return { measures: ordered, perQuery, mean, queries: perQuery.size, skipped, unjudged };
}

/**
 * C's printf("%.{digits}f"): the exact binary value rounded to nearest, ties to even (glibc).
 * JavaScript's toFixed rounds exact ties up (0.03125 → "0.0313" where trec_eval prints 0.0312).
 */
export function printfFixed(x: number, digits: number): string {
  const s = x.toFixed(digits);
  if (!Number.isFinite(x) || Math.abs(x) >= 1e21) return s;
  // the exact decimal expansion of x when it has at most 100 fractional digits (|x| ≥ 2^-47 or so)
  const exact = Math.abs(x).toFixed(100);
  const dot = exact.indexOf(".");
  const rest = exact.slice(dot + 1 + digits);
  if (!/^50*$/.test(rest)) return s;
  // an exact tie: toFixed rounded away from zero; go to the even neighbour instead
  const kept = exact.slice(0, dot + 1 + digits).replace(/\.$/, "");
  const lastDigit = Number(kept[kept.length - 1]);
  if (lastDigit % 2 === 0) return (x < 0 ? "-" : "") + kept;
  return s;
}

/** trec_eval's text output: `name \t qid|all \t value` (per-query lines first when asked). */
export function formatEvaluation(e: Evaluation, opts: { perQuery?: boolean } = {}): string {
  const line = (label: string, q: string, v: string) => `${label.padEnd(22)}\t${q}\t${v}\n`;
  const value = (v: number) => printfFixed(v, 4).padStart(6);
  let out = "";
  if (opts.perQuery) {
    for (const [qid, row] of e.perQuery)
      for (const m of e.measures) out += line(measureLabel(m), qid, value(row[measureLabel(m)] as number));
  }
  out += line("num_q", "all", String(e.queries));
  for (const m of e.measures) out += line(measureLabel(m), "all", value(e.mean[measureLabel(m)] as number));
  return out;
}
