/**
 * What an upgrade will do, estimated before it happens (`qdc upgrade check`, and the minimum an
 * `/admin/upgrade` can require). The current model and the candidate search the store as the
 * service would (each version reached natively or through compensation), on the operator's queries
 * or, without any, on pseudo-queries cut from sampled stored documents (their first words):
 * - overlap@k: the share of the current top-k the candidate's compensated top-k keeps — near 1 a
 *   quiet upgrade, near 0 a broken model or compensator;
 * - with relevance judgments: nDCG@10 of both on the whole store, and on a sampled sub-corpus (the
 *   judged documents plus random others) also of the candidate with the sub-corpus re-embedded, so
 *   what compensation leaves on the table is measured without re-indexing the store.
 */
import { Rng } from "../data/rng.js";
import type { Qrels } from "../eval/metrics.js";
import { meanOfHits } from "../eval/trec.js";
import type { Hit } from "../retrieval/hit.js";
import { searchVersions } from "../retrieval/store-search.js";
import type { StoreRow, VectorStore } from "../store/store.js";
import type { Encoder } from "./encoder.js";

export interface UpgradeCheckOptions {
  store: VectorStore;
  /** an encoder holding both models, each checked to reach every version in the store */
  encoder: Encoder;
  current: string;
  candidate: string;
  /** the queries (ids matter with `qrels`); default: `pseudoQueries` pseudo-queries */
  queries?: { id: string; text: string }[];
  qrels?: Qrels;
  /** pseudo-queries drawn when no queries are given (default 200) */
  sample?: number;
  /** documents of the sub-corpus re-embedded with the candidate, with qrels (default 2,000) */
  subCorpus?: number;
  /** results compared per query (default 10) */
  k?: number;
  seed?: number;
}

export interface UpgradeCheck {
  current: string;
  candidate: string;
  queries: number;
  /** where the queries came from */
  source: "queries" | "pseudo-queries";
  k: number;
  /** mean share of the current top-k in the candidate's compensated top-k */
  overlap: number;
  /** nDCG@10 on the whole store (with qrels) */
  ndcg?: { current: number; compensated: number };
  /** nDCG@10 on a sampled sub-corpus (with qrels), also re-embedded with the candidate */
  subCorpus?: { documents: number; current: number; compensated: number; reindexed: number };
  seconds: number;
}

/** `n` rows drawn uniformly from the whole store (reservoir sampling over every version). */
export async function sampleRows(store: VectorStore, n: number, seed = 0): Promise<StoreRow[]> {
  const rng = new Rng(seed);
  const out: StoreRow[] = [];
  let seen = 0;
  for (const v of Object.keys(await store.versions()))
    for await (const batch of store.iterate(v, 1024))
      for (const r of batch) {
        seen++;
        if (out.length < n) out.push(r);
        else {
          const j = rng.int(seen);
          if (j < n) out[j] = r;
        }
      }
  return out;
}

/** A pseudo-query of a document: its first `words` words. */
export const pseudoQuery = (text: string, words = 12) => text.split(/\s+/).filter(Boolean).slice(0, words).join(" ");

/** Per store version, the query vectors of `version`'s model for `texts`. */
async function queryVectors(encoder: Encoder, version: string, texts: string[], targets: string[]) {
  const r = await encoder.queries(version, [{ texts, targets }]);
  return (r.results[0] as { rows: Record<string, Float32Array[]> }).rows;
}

function dot(a: Float32Array, b: Float32Array | number[]): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] as number) * (b[i] as number);
  return s;
}

/** Exact top-k of each query over `docs`, each document scored with the query vector of its version. */
function topK(
  queries: number,
  vectorOf: (q: number, doc: number) => Float32Array,
  docs: { id: string; vector: Float32Array | number[]; version: string }[],
  k: number,
): Hit[][] {
  return Array.from({ length: queries }, (_, q) =>
    docs
      .map((d, j) => ({ id: d.id, version: d.version, score: dot(vectorOf(q, j), d.vector) }))
      .sort((a, b) => b.score - a.score || (a.id < b.id ? -1 : 1))
      .slice(0, k),
  );
}

export function overlapAt(a: Hit[][], b: Hit[][], k: number): number {
  let sum = 0;
  a.forEach((hits, i) => {
    const other = new Set((b[i] ?? []).slice(0, k).map((h) => h.id));
    const top = hits.slice(0, k);
    if (top.length) sum += top.filter((h) => other.has(h.id)).length / top.length;
  });
  return a.length ? sum / a.length : 0;
}

const ndcg10 = (qrels: Qrels, ids: string[], hits: Hit[][]) => meanOfHits(qrels, ids, hits, "ndcg_cut.10");

export async function checkUpgrade(o: UpgradeCheckOptions): Promise<UpgradeCheck> {
  const t0 = performance.now();
  const k = o.k ?? 10;
  const seed = o.seed ?? 0;
  const counts = await o.store.versions();
  const targets = Object.keys(counts);
  if (!targets.length) throw new Error("the store is empty: there is nothing an upgrade could change");
  let queries = o.queries;
  const source = queries ? "queries" : "pseudo-queries";
  if (!queries)
    queries = (await sampleRows(o.store, o.sample ?? 200, seed)).map((r) => ({
      id: `pseudo:${r.id}`,
      text: pseudoQuery(r.text),
    }));
  if (!queries.length) throw new Error("no queries to compare the models on");
  const texts = queries.map((q) => q.text);
  const ids = queries.map((q) => q.id);
  const single = targets.length === 1;
  const cur = await queryVectors(o.encoder, o.current, texts, targets);
  const cand = await queryVectors(o.encoder, o.candidate, texts, targets);
  const now = await searchVersions(o.store, cur, k, { single });
  const next = await searchVersions(o.store, cand, k, { single });
  const out: UpgradeCheck = {
    current: o.current,
    candidate: o.candidate,
    queries: queries.length,
    source,
    k,
    overlap: overlapAt(now, next, k),
    seconds: 0,
  };
  if (o.qrels) {
    const qrels = o.qrels;
    out.ndcg = { current: ndcg10(qrels, ids, now), compensated: ndcg10(qrels, ids, next) };
    // the sub-corpus: every judged document of these queries the store holds, then random others
    const judged = new Set(ids.flatMap((q) => [...(qrels.get(q)?.keys() ?? [])]));
    const rows = await o.store.get([...judged]);
    const have = new Set(rows.map((r) => r.id));
    const size = Math.max(o.subCorpus ?? 2000, rows.length);
    for (const r of await sampleRows(o.store, size, seed + 1)) {
      if (rows.length >= size) break;
      if (!have.has(r.id)) {
        have.add(r.id);
        rows.push(r);
      }
    }
    const at = (rowsOf: Record<string, Float32Array[]>) => (q: number, d: number) =>
      (rowsOf[(rows[d] as StoreRow).version] as Float32Array[])[q] as Float32Array;
    const reembedded = await o.encoder.documents(
      o.candidate,
      rows.map((r) => r.text),
    );
    const native = (await queryVectors(o.encoder, o.candidate, texts, [o.candidate]))[o.candidate] as Float32Array[];
    out.subCorpus = {
      documents: rows.length,
      current: ndcg10(qrels, ids, topK(texts.length, at(cur), rows, 10)),
      compensated: ndcg10(qrels, ids, topK(texts.length, at(cand), rows, 10)),
      reindexed: ndcg10(
        qrels,
        ids,
        topK(
          texts.length,
          (q) => native[q] as Float32Array,
          rows.map((r, i) => ({ ...r, vector: reembedded[i] as Float32Array, version: o.candidate })),
          10,
        ),
      ),
    };
  }
  out.seconds = (performance.now() - t0) / 1000;
  return out;
}

/** The check's numbers in a line an operator reads (and an upgrade refusal quotes). */
export function describeCheck(c: UpgradeCheck): string {
  const parts = [`overlap@${c.k} ${c.overlap.toFixed(3)} on ${c.queries} ${c.source}`];
  if (c.ndcg)
    parts.push(`nDCG@10 current ${c.ndcg.current.toFixed(4)}, candidate compensated ${c.ndcg.compensated.toFixed(4)}`);
  if (c.subCorpus)
    parts.push(
      `on ${c.subCorpus.documents} sampled documents: current ${c.subCorpus.current.toFixed(4)}, compensated ${c.subCorpus.compensated.toFixed(4)}, re-indexed ${c.subCorpus.reindexed.toFixed(4)}`,
    );
  return parts.join("; ");
}
