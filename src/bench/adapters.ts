/**
 * `qdc bench adapters`: how much of a re-index an adapter recovers when the new model is not a
 * fine-tune of the old one but an independently trained model of another size (Drift-Adapter's
 * setting). On the offline tasks of a benchmark config (default `tiny`): model A is the config's
 * base (pre-trained on the general corpus), model B one pre-trained the same way from another seed
 * with a different width. Each adapter is fitted once, as for a store holding every task's corpus,
 * on pairs (A, B) of every task's training queries and documents and its corpus; per task, B's test
 * queries are mapped into A's space and searched against A's document embeddings. The score is the
 * fraction of B's own re-indexed nDCG@10 it recovers, per task and pooled (mean adapted nDCG over
 * mean re-indexed nDCG), with µs per query.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { readQrels } from "../data/beir.js";
import { readAllIdTexts, readTexts } from "../data/texts.js";
import { alignment, fitCompensator } from "../drift/fit.js";
import { readBenchmarkConfig } from "../eval/config.js";
import { prepareBase, prepareData } from "../eval/protocol.js";
import { meanOfHits } from "../eval/trec.js";
import { CROSS_DIMENSION } from "../lineage/methods.js";
import { EmbeddingModel } from "../models/embedding-model.js";
import { cat, type Tensor, tidy } from "../tensor/index.js";
import { type BenchOptions, machineName, timePerCall } from "./common.js";

export interface AdapterBenchOptions extends BenchOptions {
  config?: string;
  /** model B's width (default 192: A's 128 × 1.5) */
  hidden?: number;
  /** training queries and corpus documents per task fitted on (default 2000 each) */
  pairs?: number;
  /** two model directories to measure instead of the pre-trained pair (A: the one the index is of) */
  old?: string;
  new?: string;
}

function ndcgAt10(
  q: Tensor,
  docs: Tensor,
  docIds: string[],
  queryIds: string[],
  qrels: Map<string, Map<string, number>>,
) {
  const top = tidy(() => q.matmul(docs.T).topk(10, 1));
  const idx = top.indices.toArray();
  const val = top.values.toArray();
  top.indices.dispose();
  top.values.dispose();
  const hits = queryIds.map((_, i) =>
    Array.from({ length: 10 }, (_, r) => ({
      id: docIds[idx[i * 10 + r] as number] as string,
      score: val[i * 10 + r] as number,
    })),
  );
  return meanOfHits(qrels, queryIds, hits, "ndcg_cut.10");
}

export async function runAdapterBench(o: AdapterBenchOptions): Promise<void> {
  const log = (m: string) => console.error(`[adapters] ${m}`);
  const c = readBenchmarkConfig(o.config ?? "tiny");
  if (!("pretrain" in c.base))
    throw new Error(`bench adapters: config ${c.name} has no base.pretrain to train model B like A`);
  const p = c.base.pretrain;
  if ((o.old === undefined) !== (o.new === undefined)) throw new Error("bench adapters: give --old and --new together");
  const tasks = await prepareData(c, log);
  let aDir: string;
  let bDir: string;
  let seeds: { A: number | null; B: number | null } = { A: null, B: null };
  if (o.old && o.new) {
    [aDir, bDir] = [o.old, o.new];
    log(`models given: A ${aDir}, B ${bDir}`);
  } else {
    const hidden = o.hidden ?? Math.round((p.hidden * 1.5) / p.heads) * p.heads;
    log(`model A: ${c.name}'s base (${p.hidden}-d) …`);
    aDir = await prepareBase(c, tasks, { log });
    const bConfig = {
      ...c,
      out: join(c.out, `adapters-b${hidden}`),
      seed: c.seed + 1,
      base: { pretrain: { ...p, hidden, intermediate: 4 * hidden } },
    };
    log(`model B: ${hidden}-d, seed ${bConfig.seed}, pre-trained the same way (${p.steps} steps) …`);
    bDir = await prepareBase(bConfig, tasks, { log });
    seeds = { A: c.seed, B: bConfig.seed };
  }
  const A = EmbeddingModel.load(aDir, { device: o.device });
  const B = EmbeddingModel.load(bDir, { device: o.device });
  const n = o.pairs ?? (o.quick ? 300 : 2000);
  const enc = { batchSize: c.batch_size, maxLength: c.max_length, progress: false };
  const methods = CROSS_DIMENSION;
  const perTask: Record<string, Record<string, number>> = {};
  const speed: Record<string, { usPerQuerySingle: number; usPerQueryBatch1000: number }> = {};
  const totals: Record<string, number> = {};
  // every task's embeddings by both models; the pairs to fit on: each task's training queries and
  // documents and its corpus (what an operator has: the stored documents, and queries of the domain)
  type Side = { docs: Tensor; queries: Tensor; fit: Tensor };
  const embedded: {
    name: string;
    ids: string[];
    qids: string[];
    qrels: Map<string, Map<string, number>>;
    a: Side;
    b: Side;
  }[] = [];
  for (const t of tasks) {
    const corpus = await readAllIdTexts(join(t.eval, "corpus.jsonl"));
    const queries = await readAllIdTexts(join(t.eval, "queries.jsonl"));
    const qrels = await readQrels(join(t.eval, "qrels", `${t.split}.tsv`));
    const trainQ: string[] = [];
    const trainD: string[] = [];
    for await (const row of readTexts(t.train[0] as string, { field: "query" })) if (trainQ.push(row) >= n) break;
    for await (const row of readTexts(t.train[0] as string, { field: "document" })) if (trainD.push(row) >= n) break;
    const e = (m: EmbeddingModel): Side => {
      const docs = m.encode(
        corpus.map((d) => d.text),
        { ...enc, kind: "document" },
      );
      return {
        docs,
        queries: m.encode(
          queries.map((q) => q.text),
          { ...enc, kind: "query" },
        ),
        fit: tidy(() =>
          cat([m.encode(trainQ, { ...enc, kind: "query" }), m.encode(trainD, { ...enc, kind: "document" }), docs]),
        ),
      };
    };
    embedded.push({
      name: t.name,
      ids: corpus.map((d) => d.id),
      qids: queries.map((q) => q.id),
      qrels,
      a: e(A),
      b: e(B),
    });
    log(`${t.name}: embedded by both models`);
  }
  const fitOld = tidy(() => cat(embedded.map((x) => x.a.fit)));
  const fitNew = tidy(() => cat(embedded.map((x) => x.b.fit)));
  log(`fitting on ${fitOld.size(0)} pairs (${fitNew.size(1)}-d → ${fitOld.size(1)}-d) …`);
  const fitPairs = fitOld.size(0);
  // a reference, not an adapter: one affine map fitted on the test queries themselves (pooled) —
  // how far a global linear map gets between these two spaces on the very queries it is scored on
  const bound = fitCompensator(
    "affine",
    tidy(() => cat(embedded.map((x) => x.a.queries))),
    tidy(() => cat(embedded.map((x) => x.b.queries))),
  );
  const fitted = Object.fromEntries(methods.map((m) => [m, fitCompensator(m, fitOld, fitNew, { seed: c.seed })]));
  for (const x of embedded) {
    const row: Record<string, number> = {
      "A (old model, its index)": ndcgAt10(x.a.queries, x.a.docs, x.ids, x.qids, x.qrels),
      "B re-indexed": ndcgAt10(x.b.queries, x.b.docs, x.ids, x.qids, x.qrels),
    };
    const bounded = bound.apply(x.b.queries);
    row["affine fitted on the test queries (reference)"] = ndcgAt10(bounded, x.a.docs, x.ids, x.qids, x.qrels);
    bounded.dispose();
    for (const m of methods) {
      const comp = fitted[m] as ReturnType<typeof fitCompensator>;
      const mapped = comp.apply(x.b.queries);
      row[m] = ndcgAt10(mapped, x.a.docs, x.ids, x.qids, x.qrels);
      row[`${m} alignment`] = alignment(comp, x.a.queries, x.b.queries);
      mapped.dispose();
      if (!speed[m]) {
        const q = x.b.queries;
        const one = q.narrow(0, 0, 1);
        const batch = tidy(() => cat(Array.from({ length: Math.ceil(1000 / q.size(0)) }, () => q)).narrow(0, 0, 1000));
        speed[m] = {
          usPerQuerySingle:
            timePerCall(
              () => comp.apply(one).dispose(),
              () => {},
              o.quick ? 0.2 : 1,
            ) * 1e6,
          usPerQueryBatch1000:
            (timePerCall(
              () => comp.apply(batch).dispose(),
              () => {},
              o.quick ? 0.2 : 1,
            ) /
              1000) *
            1e6,
        };
        batch.dispose();
      }
    }
    for (const [k, v] of Object.entries(row)) totals[k] = (totals[k] ?? 0) + v;
    perTask[x.name] = row;
    log(
      `${x.name}: B re-indexed ${(row["B re-indexed"] as number).toFixed(4)}, A ${(row["A (old model, its index)"] as number).toFixed(4)}; recovered ` +
        methods.map((m) => `${m} ${((row[m] as number) / (row["B re-indexed"] as number)).toFixed(3)}`).join(", "),
    );
    for (const side of [x.a, x.b]) for (const tensor of Object.values(side)) tensor.dispose();
  }
  for (const c2 of Object.values(fitted)) c2.dispose();
  bound.dispose();
  fitOld.dispose();
  fitNew.dispose();
  A.dispose();
  B.dispose();
  const reindexed = totals["B re-indexed"] as number;
  const recovered: Record<string, { perTask: Record<string, number>; pooled: number }> = {};
  for (const m of methods)
    recovered[m] = {
      perTask: Object.fromEntries(
        tasks.map((t) => [t.name, (perTask[t.name]?.[m] as number) / (perTask[t.name]?.["B re-indexed"] as number)]),
      ),
      pooled: (totals[m] as number) / reindexed,
    };
  const best = [...methods].sort((x, y) => (recovered[y]?.pooled ?? 0) - (recovered[x]?.pooled ?? 0))[0] as string;
  const result = {
    bench: "adapters",
    machine: machineName(o.device),
    config: c.name,
    models: {
      A: { dir: aDir, hidden: A.dimension, seed: seeds.A },
      B: { dir: bDir, hidden: B.dimension, seed: seeds.B },
    },
    pairs: { perTask: { trainingQueries: n, trainingDocuments: n, corpus: "all" }, total: fitPairs },
    ndcg10: perTask,
    recovered,
    best: { method: best, pooled: recovered[best]?.pooled },
    reference: {
      what: "one affine map fitted on the test queries themselves, pooled over tasks (not deployable: how far a global linear map gets on the very queries it is scored on)",
      pooled: (totals["affine fitted on the test queries (reference)"] as number) / reindexed,
    },
    oldIndexOverReindexed: (totals["A (old model, its index)"] as number) / reindexed,
    usPerQuery: speed,
    at: new Date().toISOString(),
  };
  const lines = [
    `| task | A (old index) | B re-indexed | ${methods.join(" | ")} |`,
    `|---|---:|---:|${methods.map(() => "---:").join("|")}|`,
    ...tasks.map((t) => {
      const r = perTask[t.name] as Record<string, number>;
      return `| ${t.name} | ${(r["A (old model, its index)"] as number).toFixed(3)} | ${(r["B re-indexed"] as number).toFixed(3)} | ${methods.map((m) => `${(r[m] as number).toFixed(3)} (${((100 * (r[m] as number)) / (r["B re-indexed"] as number)) | 0}%)`).join(" | ")} |`;
    }),
    `| pooled recovered | | | ${methods.map((m) => `${(100 * (recovered[m]?.pooled ?? 0)).toFixed(1)}%`).join(" | ")} |`,
    `| reference: affine fitted on the test queries | | | ${(100 * ((totals["affine fitted on the test queries (reference)"] as number) / reindexed)).toFixed(1)}% pooled | | | |`,
    `| µs/query (1 / batch 1000) | | | ${methods.map((m) => `${speed[m]?.usPerQuerySingle.toFixed(0)} / ${speed[m]?.usPerQueryBatch1000.toFixed(2)}`).join(" | ")} |`,
  ];
  console.log(lines.join("\n"));
  if (o.out) writeFileSync(o.out, `${JSON.stringify(result, null, 2)}\n`);
}
