// A diagnostic of the serve benchmark's "after" phase: is a store slower after a re-index because of
// the new model's vectors or because of the rewrite? Fresh LanceDB tables of the tiny run's task-1
// and task-2 FT+KD vectors of the same documents (HNSW built once), then the task-1 store rewritten
// with the task-2 vectors as the re-indexer writes them (1,024 rows per upsert, optimize every
// 16,384, a final optimize), searched with each model's own queries, 8 callers, alternating.
// Run after `npm start` and `npm run build:ts`: node bench/rewrite-after.mjs [documents]
import { mkdtempSync, rmSync } from "node:fs";
import { tinyModels } from "../dist/src/bench/common.js";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { concurrentRate, serveCorpus } from "../dist/src/bench/serve.js";
import { EmbeddingModel } from "../dist/src/models/embedding-model.js";
import { embedRows, tensorRows } from "../dist/src/retrieval/rows.js";
import { LanceStore } from "../dist/src/store/lancedb.js";
const N = Number(process.argv[2] ?? 100000);
const { oldDir, newDir } = tinyModels("runs/bench-tiny");
const { docs, queries } = await serveCorpus(N);
const work = mkdtempSync(join(tmpdir(), "qdc-after-"));
const stores = {};
const qs = {};
const allRows = {};
for (const [tag, dir] of [["old", oldDir], ["new", newDir]]) {
  const m = EmbeddingModel.load(dir);
  const rows = [];
  for (let i = 0; i < docs.length; i += 2048) rows.push(...embedRows(m, docs.slice(i, i + 2048), tag, { batchSize: 128, maxLength: 64 }));
  allRows[tag] = rows;
  const q = m.encode(queries, { kind: "query", maxLength: 64 }); qs[tag] = tensorRows(q); q.dispose(); m.dispose();
  const s = await LanceStore.open(join(work, tag), { dim: rows[0].vector.length, fields: {} }, { annThreshold: Infinity, ef: 320 });
  for (let i = 0; i < rows.length; i += 4096) await s.upsert(rows.slice(i, i + 4096));
  await s.optimize({ final: true });
  let t = performance.now(); await s.buildIndex(); console.log(tag, "index built in", ((performance.now() - t) / 1000).toFixed(1), "s");
  stores[tag] = s;
}
// 8 callers, caller c's i-th request searching query c + 8i
const qps = async (s, vecs, ms) => (await concurrentRate(8, ms / 1000, (c, i) => s.search(vecs[(c + 8 * i) % vecs.length], 10))).qps;
for (let round = 0; round < 3; round++)
  for (const tag of ["old", "new"]) console.log(round, tag, (await qps(stores[tag], qs[tag], 8000)).toFixed(1), "QPS");
// the old store rewritten with the new vectors as a re-index writes them
const rw = stores.old;
let t = performance.now();
let since = 0;
const newRows = allRows.new.map((r) => ({ ...r, version: "new" }));
for (let i = 0; i < newRows.length; i += 1024) {
  await rw.upsert(newRows.slice(i, i + 1024));
  since += 1024;
  if (since >= 16384) { since = 0; await rw.optimize(); }
}
await rw.optimize({ final: true });
console.log("rewritten in", ((performance.now() - t) / 1000).toFixed(1), "s", JSON.stringify(await rw.versions()));
const tv = await rw.tableOf("new");
console.log("index", JSON.stringify(await tv.indexStats("vector_idx")), "fragments", (await tv.stats()).fragmentStats?.numFragments);
const fresh = await LanceStore.open(join(work, "old"), undefined, { ef: 320 });
stores.rewritten = rw; stores.reopened = fresh; qs.rewritten = qs.new; qs.reopened = qs.new;
for (let round = 0; round < 2; round++)
  for (const tag of ["new", "rewritten", "reopened"]) console.log(round, tag, (await qps(stores[tag], qs[tag], 8000)).toFixed(1), "QPS");
delete stores.old;
for (const s of Object.values(stores)) await s.close();
rmSync(work, { recursive: true, force: true });
