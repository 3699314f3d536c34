/**
 * `qdc bench serve`: the search service on the benchmark's own models and text. A LanceDB store of
 * 100k real documents (Debian descriptions and WordNet entries) is embedded with the tiny
 * benchmark's FT+KD model of task 1; then, under concurrent HTTP load on loopback, the service is
 * upgraded to the task-2 model and re-indexes in the background. Reported: QPS and p50/p99
 * latency before, during and after; exact vs ANN (IVF-PQ) recall@10; the compensation's share of
 * query latency. Needs `npm start` (the tiny run) first.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { preparePairs, TASK_SOURCES } from "../corpora/build.js";
import { EmbeddingModel } from "../models/embedding-model.js";
import { embedRows, tensorRows } from "../retrieval/rows.js";
import { buildApp } from "../server/http.js";
import { Reindexer } from "../server/reindex.js";
import { SearchService } from "../server/service.js";
import { LanceStore } from "../store/lancedb.js";
import { getNumThreads } from "../tensor/index.js";
import { type BenchOptions, machineName } from "./common.js";

interface Window {
  phase: string;
  requests: number;
  failed: number;
  seconds: number;
  qps: number;
  p50Ms: number;
  p99Ms: number;
  compensationShare: number;
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number) : Number.NaN;
};

export async function runServeBench(o: BenchOptions & { docs?: number; run?: string }): Promise<void> {
  const run = resolve(o.run ?? "runs/bench-tiny");
  const oldDir = join(run, "kd", "debian");
  const newDir = join(run, "kd", "wordnet");
  for (const d of [oldDir, newDir])
    if (!existsSync(join(d, "lineage.json")))
      throw new Error(`${d}: missing; run the tiny benchmark first (npm start)`);
  const nDocs = o.docs ?? (o.quick ? 5000 : 100000);
  const log = (m: string) => console.error(`[bench serve] ${m}`);

  // documents: Debian descriptions, then WordNet entries
  const docs: { id: string; text: string }[] = [];
  for (const name of ["debian", "wordnet"]) {
    const src = TASK_SOURCES[name];
    if (!src || docs.length >= nDocs) continue;
    for (const p of preparePairs(await src.read(), 0, 64)) {
      docs.push({ id: `${name}:${p.id}`, text: p.document });
      if (docs.length >= nDocs) break;
    }
  }
  const queryTexts = (await (TASK_SOURCES.wordnet as { read(): Promise<{ query: string }[]> }).read())
    .slice(0, 200)
    .map((p) => p.query);

  const work = mkdtempSync(join(tmpdir(), "qdc-bench-serve-"));
  try {
    const model = EmbeddingModel.load(oldDir);
    const store = await LanceStore.open(
      join(work, "store"),
      { dim: model.dimension, fields: {} },
      { annThreshold: Number.POSITIVE_INFINITY },
    );
    let t = performance.now();
    for (let i = 0; i < docs.length; i += 2048) {
      const part = docs.slice(i, i + 2048);
      await store.upsert(embedRows(model, part, oldDir, { batchSize: 128, maxLength: 64 }));
      if ((i / 2048) % 10 === 0) log(`loaded ${i + part.length} / ${docs.length}`);
    }
    const loadSeconds = (performance.now() - t) / 1000;
    log(`${docs.length} documents embedded and stored in ${loadSeconds.toFixed(1)} s`);

    // exact vs ANN recall@10
    const q = model.encode(queryTexts, { kind: "query", maxLength: 64 });
    const qrows = tensorRows(q);
    const dim = model.dimension;
    q.dispose();
    model.dispose();
    const exact: string[][] = [];
    t = performance.now();
    for (let i = 0; i < queryTexts.length; i++)
      exact.push((await store.search(qrows[i] as Float32Array, 10, { exact: true })).map((h) => h.id));
    const exactMs = (performance.now() - t) / queryTexts.length;
    t = performance.now();
    await store.buildIndex();
    const indexSeconds = (performance.now() - t) / 1000;
    let found = 0;
    t = performance.now();
    for (let i = 0; i < queryTexts.length; i++) {
      const ann = new Set((await store.search(qrows[i] as Float32Array, 10)).map((h) => h.id));
      found += (exact[i] as string[]).filter((id) => ann.has(id)).length;
    }
    const annMs = (performance.now() - t) / queryTexts.length;
    const recall = found / (10 * queryTexts.length);
    log(
      `recall@10 of IVF-PQ against exact: ${recall.toFixed(3)} (exact ${exactMs.toFixed(1)} ms/query, ANN ${annMs.toFixed(1)} ms/query; index built in ${indexSeconds.toFixed(1)} s)`,
    );

    // the service under load: before, during (upgrade + re-index) and after
    const service = await SearchService.create({ store, modelDir: oldDir, maxLength: 64 });
    const reindexer = new Reindexer(service, { batchSize: 512 });
    const token = "bench";
    const app = buildApp(service, reindexer, { token });
    const base = await app.listen({ port: 0, host: "127.0.0.1" });
    const windows: Window[] = [];
    const measure = async (phase: string, until: () => Promise<boolean> | boolean) => {
      const lat: number[] = [];
      let failed = 0;
      let comp = 0;
      let total = 0;
      let stop = false;
      const t0 = performance.now();
      const worker = async (w: number) => {
        for (let i = 0; !stop; i++) {
          const text = queryTexts[(w * 50 + i) % queryTexts.length] as string;
          const s = performance.now();
          const r = await fetch(`${base}/search`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ texts: [text], k: 10 }),
          });
          const body = (await r.json()) as { timings?: { embedMs: number; compensateMs: number; storeMs: number } };
          const ms = performance.now() - s;
          if (r.status !== 200) failed++;
          else {
            lat.push(ms);
            const tm = body.timings;
            if (tm) {
              comp += tm.compensateMs;
              total += tm.embedMs + tm.compensateMs + tm.storeMs;
            }
          }
        }
      };
      const workers = [0, 1, 2, 3].map(worker);
      while (!(await until())) await new Promise((r) => setTimeout(r, 100));
      stop = true;
      await Promise.all(workers);
      const seconds = (performance.now() - t0) / 1000;
      const w: Window = {
        phase,
        requests: lat.length + failed,
        failed,
        seconds,
        qps: lat.length / seconds,
        p50Ms: pct(lat, 50),
        p99Ms: pct(lat, 99),
        compensationShare: total ? comp / total : 0,
      };
      windows.push(w);
      log(
        `${phase}: ${w.qps.toFixed(1)} QPS, p50 ${w.p50Ms.toFixed(1)} ms, p99 ${w.p99Ms.toFixed(1)} ms, ${failed} failed, compensation ${(100 * w.compensationShare).toFixed(1)}% of service time`,
      );
    };
    const seconds = o.quick ? 3 : 10;
    const timer = (s: number) => {
      const end = performance.now() + s * 1000;
      return () => performance.now() >= end;
    };
    await measure("before (old model, old rows)", timer(seconds));
    const admin = (path: string, body: unknown) =>
      fetch(`${base}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: JSON.stringify(body),
      });
    let reindexSeconds = 0;
    await measure("during (upgrade, then re-index in the background)", async () => {
      if (service.model.version !== newDir) {
        await admin("/admin/upgrade", { model: newDir });
        reindexSeconds = performance.now();
        await admin("/admin/reindex", { action: "start" });
        return false;
      }
      return reindexer.status.state === "done" || reindexer.status.state === "failed";
    });
    reindexSeconds = (performance.now() - reindexSeconds) / 1000;
    const rs = reindexer.status;
    if (rs.state !== "done") throw new Error(`re-index ${rs.state}: ${rs.error}`);
    log(
      `re-indexed ${rs.done} documents in ${reindexSeconds.toFixed(1)} s under load (${(rs.done / reindexSeconds).toFixed(1)} docs/s)`,
    );
    await measure("after (new model, new rows)", timer(seconds));
    await app.close();
    await service.close();

    const result = {
      machine: machineName("cpu"),
      threads: getNumThreads(),
      documents: docs.length,
      dim,
      models: { old: oldDir, new: newDir },
      load: { seconds: loadSeconds, docsPerSecond: docs.length / loadSeconds },
      ann: {
        index: "IVF-PQ (LanceDB)",
        recallAt10: recall,
        exactMsPerQuery: exactMs,
        annMsPerQuery: annMs,
        indexSeconds,
      },
      reindex: { documents: rs.done, seconds: reindexSeconds, docsPerSecond: rs.done / reindexSeconds },
      windows,
      concurrency: 4,
    };
    console.log(
      `serve benchmark — ${result.machine}, ${result.threads} threads, ${docs.length} documents × ${dim}-d, LanceDB, 4 concurrent clients on loopback`,
    );
    console.log("| phase | requests | failed | QPS | p50 ms | p99 ms | compensation share |");
    console.log("|---|---|---|---|---|---|---|");
    for (const w of windows)
      console.log(
        `| ${w.phase} | ${w.requests} | ${w.failed} | ${w.qps.toFixed(1)} | ${w.p50Ms.toFixed(1)} | ${w.p99Ms.toFixed(1)} | ${(100 * w.compensationShare).toFixed(2)}% |`,
      );
    console.log(
      `recall@10 IVF-PQ vs exact: ${recall.toFixed(3)}; exact ${exactMs.toFixed(1)} ms/query, ANN ${annMs.toFixed(1)} ms/query`,
    );
    if (o.out) writeFileSync(o.out, `${JSON.stringify(result, null, 2)}\n`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
