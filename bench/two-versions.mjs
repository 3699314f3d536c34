// What a mixed-version search costs the store itself: during a re-index every request searches
// both model versions (the old one with the compensated query, the new one natively). Per store,
// 100k documents embedded by the tiny run's task-1 FT+KD model and indexed, then half of them
// rewritten with the task-2 model's vectors as the re-indexer writes them (1,024 rows per upsert,
// the store's optimize as often as the re-indexer calls it: LanceDB every 16,384 rows, pgvector
// at the end only), and then, with no re-index running, 8 callers search straight
// from Node: one version before the rewrite, each version alone, and both per request (two calls at
// once, as the service does). Three alternating rounds, each kept at its best (this VM's speed
// wanders). LanceDB always; pgvector with a server (QDC_PG_URL).
// Run after `npm start` and `npm run build:ts`:
//   node bench/two-versions.mjs [documents] [fraction] [--stores lancedb,pgvector] [--out FILE]
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { machineName, tinyModels } from "../dist/src/bench/common.js";
import { concurrentRate, serveCorpus } from "../dist/src/bench/serve.js";
import { EmbeddingModel } from "../dist/src/models/embedding-model.js";
import { embedRows, tensorRows } from "../dist/src/retrieval/rows.js";
import { LanceStore } from "../dist/src/store/lancedb.js";
import { PgVectorStore } from "../dist/src/store/pgvector.js";

const args = process.argv.slice(2);
const outAt = args.indexOf("--out");
const out = outAt >= 0 ? args.splice(outAt, 2)[1] : undefined;
const storesAt = args.indexOf("--stores");
const only = storesAt >= 0 ? args.splice(storesAt, 2)[1].split(",") : ["lancedb", "pgvector"];
const N = Number(args[0] ?? 100000);
const FRACTION = Number(args[1] ?? 0.5);
const { oldDir, newDir } = tinyModels("runs/bench-tiny");
const EF = 400; // LanceDB's ef for recall@10 0.95 on these vectors; pgvector's ef_search 320 (bench/results/serve.json)

const { docs, queries } = await serveCorpus(N);
const rows = {}, qs = {};
for (const [tag, dir] of [["old", oldDir], ["new", newDir]]) {
  const m = EmbeddingModel.load(dir);
  rows[tag] = [];
  for (let i = 0; i < docs.length; i += 2048) rows[tag].push(...embedRows(m, docs.slice(i, i + 2048), tag, { batchSize: 128, maxLength: 64 }));
  const q = m.encode(queries, { kind: "query", maxLength: 64 }); qs[tag] = tensorRows(q); q.dispose(); m.dispose();
}
const dim = rows.old[0].vector.length;
console.error(`${docs.length} documents embedded by both models`);

// 8 callers for 6 s, caller c's i-th request searching query c + 8i
const measure = (fn) => concurrentRate(8, 6, (c, i) => fn((c + 8 * i) % 1000));
const best = (a, b) => (!a || b.qps > a.qps ? b : a);

const work = mkdtempSync(join(tmpdir(), "qdc-two-versions-"));
const kinds = [["lancedb", () => LanceStore.open(join(work, "lance"), { dim, fields: {} }, { annThreshold: Infinity, ef: EF })]];
const pgUrl = process.env.QDC_PG_URL;
const pgTable = `qdc_two_versions_${process.pid}`;
if (pgUrl) kinds.push(["pgvector", () => PgVectorStore.open(pgUrl, pgTable, { dim, fields: {} }, { annThreshold: Infinity, efSearch: 320 })]);
const results = [];
try {
  for (const [kind, open] of kinds.filter(([k]) => only.includes(k))) {
    const s = await open();
    for (let i = 0; i < docs.length; i += 4096) await s.upsert(rows.old.slice(i, i + 4096));
    await s.optimize({ final: true });
    await s.buildIndex();
    let before;
    for (let r = 0; r < 3; r++) before = best(before, await measure((i) => s.search(qs.old[i], 10)));
    console.error(`${kind}: one version ${before.qps.toFixed(1)} QPS`);
    const upto = Math.round(FRACTION * docs.length);
    let since = 0;
    const t = performance.now();
    for (let i = 0; i < upto; i += 1024) {
      await s.upsert(rows.new.slice(i, Math.min(upto, i + 1024)));
      since += 1024;
      if (since >= s.optimizeEvery) { since = 0; await s.optimize(); }
    }
    const rewriteSeconds = (performance.now() - t) / 1000;
    const phases = { oldOnly: undefined, newOnly: undefined, both: undefined };
    for (let r = 0; r < 3; r++) {
      phases.oldOnly = best(phases.oldOnly, await measure((i) => s.search(qs.old[i], 10, { version: "old" })));
      phases.newOnly = best(phases.newOnly, await measure((i) => s.search(qs.new[i], 10, { version: "new" })));
      phases.both = best(phases.both, await measure((i) => Promise.all([s.search(qs.old[i], 10, { version: "old" }), s.search(qs.new[i], 10, { version: "new" })])));
    }
    const res = { store: kind, rewritten: upto, rewriteSeconds, rowsSinceOptimize: since, oneVersion: before, ...phases, bothOverOne: phases.both.qps / before.qps };
    console.error(JSON.stringify(res));
    results.push(res);
    await s.close();
  }
} finally {
  rmSync(work, { recursive: true, force: true });
  if (pgUrl) {
    const pg = (await import("pg")).default;
    const c = new pg.Client({ connectionString: pgUrl });
    await c.connect();
    await c.query(`DROP TABLE IF EXISTS ${pgTable}`);
    await c.query("DELETE FROM qdc_stores WHERE name = $1", [pgTable]).catch(() => {});
    await c.end();
  }
}
const result = { machine: machineName("cpu"), documents: docs.length, fraction: FRACTION, dim, callers: 8, k: 10, lanceEf: EF, pgEfSearch: 320, results };
console.log("| store | one version | old version alone | new version alone | both per request | both ÷ one |");
console.log("|---|---:|---:|---:|---:|---:|");
for (const r of results) console.log(`| ${r.store} | ${r.oneVersion.qps.toFixed(1)} | ${r.oldOnly.qps.toFixed(1)} | ${r.newOnly.qps.toFixed(1)} | ${r.both.qps.toFixed(1)} | ${r.bothOverOne.toFixed(2)} |`);
if (out) writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
