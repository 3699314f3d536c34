// Recall@10 against exact search and the 8-caller QPS of one store, per HNSW ef, with the store's
// build options given as JSON: how a graph setting trades recall for speed on the serve benchmark's
// vectors (100k documents embedded by the tiny run's task-1 FT+KD model, its queries). Exact top-10
// in JS over 200 queries; a hit tied with the exact 10th counts (annFound, as `qdc bench serve`).
// Run after `npm start` and `npm run build:ts`:
//   node bench/store-sweep.mjs lancedb|pgvector [efs] [options JSON]   (pgvector: QDC_PG_URL)
//   e.g. node bench/store-sweep.mjs pgvector 120,160,200,240 '{"m":32}'
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { machineName, tinyModels } from "../dist/src/bench/common.js";
import { annFound, concurrentRate, serveCorpus } from "../dist/src/bench/serve.js";
import { EmbeddingModel } from "../dist/src/models/embedding-model.js";
import { embedRows, tensorRows } from "../dist/src/retrieval/rows.js";
import { LanceStore } from "../dist/src/store/lancedb.js";
import { PgVectorStore } from "../dist/src/store/pgvector.js";

const kind = process.argv[2] ?? "lancedb";
const efs = (process.argv[3] ?? "100,160,240,320,400").split(",").map(Number);
const build = JSON.parse(process.argv[4] ?? "{}");
if (kind === "pgvector" && !process.env.QDC_PG_URL) throw new Error("pgvector: set QDC_PG_URL");
const { oldDir } = tinyModels("runs/bench-tiny");
const { docs, queries } = await serveCorpus(100000);
const m = EmbeddingModel.load(oldDir);
const rows = [];
for (let i = 0; i < docs.length; i += 2048) rows.push(...embedRows(m, docs.slice(i, i + 2048), "old", { batchSize: 128, maxLength: 64 }));
const q = m.encode(queries, { kind: "query", maxLength: 64 });
const qs = tensorRows(q); q.dispose(); m.dispose();
const dim = rows[0].vector.length;

const work = mkdtempSync(join(tmpdir(), "qdc-sweep-"));
const table = `qdc_sweep_${process.pid}`;
const open = (ef) => kind === "lancedb"
  ? LanceStore.open(join(work, "l"), { dim, fields: {} }, { annThreshold: Infinity, ef, ...build })
  : PgVectorStore.open(process.env.QDC_PG_URL, table, { dim, fields: {} }, { annThreshold: Infinity, efSearch: ef, ...build });
try {
  let s = await open(efs[0]);
  for (let i = 0; i < rows.length; i += 4096) await s.upsert(rows.slice(i, i + 4096));
  await s.optimize({ final: true });
  let t = performance.now(); await s.buildIndex();
  console.log(`${machineName("cpu")}; ${kind} ${JSON.stringify(build)}: index built in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  // exact top-10 (and the next 10, for ties) in JS
  const sample = qs.slice(0, 200);
  const exact = sample.map((v) => {
    const sc = rows.map((r, i) => { let x = 0; for (let j = 0; j < dim; j++) x += v[j] * r.vector[j]; return { id: rows[i].id, score: x }; });
    return sc.sort((a, b) => b.score - a.score).slice(0, 20);
  });
  for (const ef of efs) {
    await s.close(); s = await open(ef);
    const got = await s.searchMany(sample, 10);
    const recall = got.reduce((a, hs, i) => a + annFound(exact[i], hs, 10), 0) / 2000;
    const r = await concurrentRate(8, 6, (c, i) => s.search(qs[(c + 8 * i) % 1000], 10));
    console.log(`ef ${ef}: recall@10 ${recall.toFixed(3)}, ${r.qps.toFixed(1)} QPS, p50 ${r.p50Ms.toFixed(1)} ms, p99 ${r.p99Ms.toFixed(1)} ms`);
  }
  await s.close();
} finally {
  rmSync(work, { recursive: true, force: true });
  if (kind === "pgvector") {
    const pg = (await import("pg")).default;
    const c = new pg.Client({ connectionString: process.env.QDC_PG_URL });
    await c.connect();
    await c.query(`DROP TABLE IF EXISTS ${table}`);
    await c.query("DELETE FROM qdc_stores WHERE name = $1", [table]).catch(() => {});
    await c.end();
  }
}
