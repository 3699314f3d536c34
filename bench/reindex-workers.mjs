// Re-index throughput with 1 and 2 `qdc store reindex` workers on one store (issue: re-index
// workers that share a store). A store of N real documents (Debian descriptions) is loaded with
// the tiny run's task-1 FT+KD model, then re-embedded with the task-2 model by one worker, and —
// loaded afresh — by two at once: pgvector workers with leases (--lease), LanceDB workers with
// their parts of the ids (--worker i/2). Each worker runs libtorch with `threads` threads.
// Run after `npm start`: node bench/reindex-workers.mjs [documents] [run dir] [threads per worker]
// (QDC_PG_URL for the pgvector part; the output is JSON on stdout)
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { preparePairs, TASK_SOURCES } from "../dist/src/corpora/build.js";

const N = Number(process.argv[2] ?? 5000);
const run = process.argv[3] ?? "runs/bench-tiny/seed-0";
const threads = process.argv[4] ?? "1";
const oldDir = join(run, "kd", "debian");
const newDir = join(run, "kd", "wordnet");
const cli = new URL("../dist/src/cli/main.js", import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), "qdc-workers-"));
const corpus = join(work, "corpus.jsonl");
const lines = [];
for (const p of preparePairs(await TASK_SOURCES.debian.read(), 0, 64)) {
  lines.push(JSON.stringify({ _id: `debian:${p.id}`, text: p.document }));
  if (lines.length >= N) break;
}
writeFileSync(corpus, `${lines.join("\n")}\n`);
const env = { ...process.env, OMP_NUM_THREADS: threads, QDC_THREADS: threads };

function qdc(args) {
  const r = spawnSync("node", [cli, ...args], { encoding: "utf8", env });
  if (r.status !== 0) throw new Error(`qdc ${args.join(" ")}: ${r.stderr.slice(-2000)}`);
}
const worker = (store, extra) =>
  new Promise((res, rej) => {
    const c = spawn("node", [cli, "store", "reindex", "--store", store, "--model", newDir, ...extra], { env, stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    c.stderr.on("data", (d) => { err += d; });
    c.on("exit", (code) => (code === 0 ? res() : rej(new Error(`worker exited ${code}: ${err.slice(-2000)}`))));
  });

const stores = [{ kind: "lancedb", uri: (tag) => join(work, tag), args: (i) => ["--worker", `${i}/2`] }];
if (process.env.QDC_PG_URL)
  stores.push({ kind: "pgvector", uri: (tag) => `${process.env.QDC_PG_URL}#qdc_workers_${process.pid}_${tag}`, args: () => ["--lease", "30"] });
const out = { machine: `${cpus()[0]?.model ?? "?"}, ${cpus().length} cores`, documents: lines.length, threadsPerWorker: Number(threads), stores: [] };
for (const s of stores) {
  const r = { store: s.kind };
  for (const n of [1, 2, 1, 2]) {
    const uri = s.uri(`w${n}_${Date.now()}`);
    qdc(["store", "load", "--store", uri, "--model", oldDir, "--corpus", corpus, "--max-length", "64"]);
    const t0 = performance.now();
    await Promise.all(Array.from({ length: n }, (_, i) => worker(uri, n > 1 ? s.args(i) : [])));
    const secs = (performance.now() - t0) / 1000;
    const key = `workers${n}`;
    r[key] = [...(r[key] ?? []), { seconds: secs, docsPerSecond: lines.length / secs }];
    console.error(`${s.kind}: ${n} worker(s): ${(lines.length / secs).toFixed(1)} docs/s`);
    if (s.kind === "pgvector") {
      const c = new pg.Client({ connectionString: process.env.QDC_PG_URL });
      await c.connect();
      const table = uri.split("#")[1];
      await c.query(`DROP TABLE IF EXISTS ${table}`);
      await c.query("DELETE FROM qdc_stores WHERE name = $1", [table]);
      await c.query("DELETE FROM qdc_claims WHERE store = $1", [table]);
      await c.end();
    }
  }
  const best = (k) => Math.max(...r[k].map((x) => x.docsPerSecond));
  r.ratio = best("workers2") / best("workers1");
  out.stores.push(r);
}
rmSync(work, { recursive: true, force: true });
console.log(JSON.stringify(out, null, 2));
