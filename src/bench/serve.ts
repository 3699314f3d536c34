/**
 * `qdc bench serve`: the search service on the benchmark's own models and text, per store
 * (LanceDB, and PostgreSQL + pgvector when a server is given). 100k real documents (Debian
 * descriptions and WordNet entries) are embedded once with the tiny benchmark's FT+KD model of
 * task 1 and written to each store; then, per store:
 *  - ANN recall@10 against exact search on the same store;
 *  - the store alone: the same query vectors straight to the store from Node (no model, no HTTP),
 *    `clients` concurrent callers, before the upgrade (old model's queries) and after the re-index
 *    (the new model's queries on the rewritten store: the peer of "after");
 *  - the service under `clients` concurrent HTTP clients (a separate process, keep-alive, one text
 *    per request, k 10): before, during an upgrade to the task-2 model with its background
 *    re-index, and after. "During" is measured in windows of the same length at 10%, 50% and 90%
 *    of the re-index (the store holds both versions in those proportions) and pooled; between the
 *    windows the re-index runs under one probe client, whose failures count too, so that every
 *    moment of the re-index is searched (a whole 100k re-index under full load took 26 minutes);
 *  - the re-index rate under that load (rows re-indexed inside the windows) beside its standalone
 *    rate (the same re-index of a 10k-row store with its ANN index and no searches).
 * Reported per phase: QPS, p50/p99 latency, failures, the service's time split (queue, encoder,
 * store), and service QPS ÷ store QPS. Needs the tiny run (`npm start`) first.
 */
import { type ChildProcess, fork } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { preparePairs, TASK_SOURCES } from "../corpora/build.js";
import { EmbeddingModel } from "../models/embedding-model.js";
import { embedRows, tensorRows } from "../retrieval/rows.js";
import { buildApp } from "../server/http.js";
import { Reindexer } from "../server/reindex.js";
import { SearchService } from "../server/service.js";
import { LanceStore } from "../store/lancedb.js";
import { PgVectorStore } from "../store/pgvector.js";
import type { StoreHit, StoreRow, VectorStore } from "../store/store.js";
import { type BenchOptions, machineName, tinyModels } from "./common.js";
import type { LoadWindow } from "./loadgen.js";

export interface ServeBenchOptions extends BenchOptions {
  docs?: number;
  run?: string;
  /** a PostgreSQL URL for the pgvector run (default QDC_PG_URL; none: LanceDB only) */
  pg?: string;
  clients?: number;
  /** which stores to run (default both, pgvector only with a server) */
  stores?: string[];
  /** seconds of the before/after windows (default 20, quick 5) */
  seconds?: number;
  /** the HNSW ef to serve with (default: the smallest of EF_LADDER reaching recall@10 0.95) */
  ef?: number;
  /** re-index progress (fractions of the documents) at which the "during" windows start */
  duringAt?: number[];
}

/** ef values tried in turn, until recall@10 against exact search reaches RECALL_GOAL */
const EF_LADDER = [40, 64, 100, 160, 200, 250, 320, 400, 640, 1000];
const RECALL_GOAL = 0.95;

/** exact neighbours looked at beyond the k-th, for documents tied with it */
const TIE_DEPTH = 10;

/**
 * How many of an ANN search's top-k are right against the exact search's list (best first, longer
 * than k): those among the exact top-k, and those tied with the exact k-th (a score within `tol` of
 * it: a document whose text matches another's within the model's token limit has its vector, and
 * which of them ranks k-th is arbitrary: the benchmark's 100,000 vectors hold 95,417 distinct ones). As
 * ann-benchmarks counts recall, by distance, with a tolerance of float32 rounding.
 */
export function annFound(exact: { id: string; score: number }[], ann: { id: string }[], k: number, tol = 1e-6): number {
  const kth = exact[Math.min(k, exact.length) - 1]?.score ?? Number.NEGATIVE_INFINITY;
  const right = new Set(exact.filter((h, i) => i < k || h.score >= kth - tol).map((h) => h.id));
  return new Set(
    ann
      .slice(0, k)
      .filter((h) => right.has(h.id))
      .map((h) => h.id),
  ).size;
}

export interface Phase {
  phase: string;
  requests: number;
  failed: number;
  failures: string[];
  seconds: number;
  qps: number;
  p50Ms: number;
  p99Ms: number;
  /** mean per request, ms: queued for the encoder (and IPC), encoder forward, compensation, store */
  split: { waitMs: number; embedMs: number; compensateMs: number; storeMs: number; batch: number };
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number) : Number.NaN;
};
const f1 = (x: number) => x.toFixed(1);
const log = (m: string) => console.error(`[bench serve] ${m}`);

/**
 * The serve benchmark's text: `n` documents (Debian descriptions, then WordNet entries, as the
 * tiny run's tasks 1 and 2 prepare them) and 1,000 WordNet test-style queries. Its diagnostics
 * (bench/*.mjs) search the same.
 */
export async function serveCorpus(n: number): Promise<{ docs: { id: string; text: string }[]; queries: string[] }> {
  const docs: { id: string; text: string }[] = [];
  for (const name of ["debian", "wordnet"]) {
    const src = TASK_SOURCES[name];
    if (!src || docs.length >= n) continue;
    for (const p of preparePairs(await src.read(), 0, 64)) {
      docs.push({ id: `${name}:${p.id}`, text: p.document });
      if (docs.length >= n) break;
    }
  }
  const queries = (await (TASK_SOURCES.wordnet as { read(): Promise<{ query: string }[]> }).read())
    .slice(0, 1000)
    .map((p) => p.query);
  return { docs, queries };
}

/**
 * `clients` concurrent callers, each calling `call(caller, i)` for its i-th request, one after
 * another, for `seconds`: requests per second and the latency percentiles.
 */
export async function concurrentRate(
  clients: number,
  seconds: number,
  call: (caller: number, i: number) => Promise<unknown>,
): Promise<{ qps: number; p50Ms: number; p99Ms: number; requests: number }> {
  const lat: number[] = [];
  const end = performance.now() + seconds * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, w) => {
      for (let i = 0; performance.now() < end; i++) {
        const t = performance.now();
        await call(w, i);
        lat.push(performance.now() - t);
      }
    }),
  );
  const s = (performance.now() - t0) / 1000;
  return { qps: lat.length / s, p50Ms: pct(lat, 50), p99Ms: pct(lat, 99), requests: lat.length };
}

/** each measured phase's latencies (kept out of the JSON) */
const latenciesOf = new WeakMap<Phase, number[]>();

export function phaseOf(w: LoadWindow): Phase {
  const n = w.latenciesMs.length;
  const split = Object.fromEntries(Object.entries(w.timings).map(([k, v]) => [k, n ? v / n : 0])) as Phase["split"];
  const phase: Phase = {
    phase: w.phase,
    requests: n + w.failed,
    failed: w.failed,
    failures: w.failures,
    seconds: w.seconds,
    qps: n / w.seconds,
    p50Ms: pct(w.latenciesMs, 50),
    p99Ms: pct(w.latenciesMs, 99),
    split,
  };
  latenciesOf.set(phase, w.latenciesMs);
  return phase;
}

/** The clients' process: configure, then measure windows. */
class Load {
  readonly #child: ChildProcess;
  #waiting: ((m: Record<string, unknown>) => void) | null = null;
  constructor() {
    this.#child = fork(fileURLToPath(new URL("./loadgen.js", import.meta.url)), [], { stdio: "inherit" });
    this.#child.on("message", (m: Record<string, unknown>) => {
      const w = this.#waiting;
      this.#waiting = null;
      w?.(m);
    });
  }
  #ask(msg: unknown): Promise<Record<string, unknown>> {
    return new Promise((res) => {
      this.#waiting = res;
      this.#child.send(msg as object);
    });
  }
  async start(config: { base: string; concurrency: number; texts: string[]; k: number }) {
    await this.#ask({ config });
  }
  begin(phase: string): void {
    this.#child.send({ start: phase });
  }
  /** holds the clients between windows (no requests) or lets them go on */
  pause(paused: boolean): void {
    this.#child.send({ pause: paused });
  }
  async end(): Promise<Phase> {
    return phaseOf((await this.#ask({ stop: true })).window as LoadWindow);
  }
  async exit(): Promise<void> {
    const exited = new Promise((r) => this.#child.once("exit", r));
    this.#child.send({ exit: true });
    await exited;
  }
}

/** `clients` concurrent callers sending single-vector searches straight to the store. */
function storeAlone(store: VectorStore, queries: Float32Array[], clients: number, seconds: number) {
  return concurrentRate(clients, seconds, (w, i) =>
    store.search(queries[(w * 7919 + i) % queries.length] as Float32Array, 10),
  );
}

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 100));
}

const finished = (reindexer: Reindexer) => ["done", "failed"].includes(reindexer.status.state);

/** Waits for the re-index to stop; its status, or its error where it failed. */
async function settled(reindexer: Reindexer) {
  await until(() => finished(reindexer));
  const st = reindexer.status;
  if (st.state !== "done") throw new Error(`re-index ${st.state}: ${st.error}`);
  return st;
}

/** Re-indexes `store` from `oldDir` to `newDir` through a service with no load; docs/s. */
async function reindexWith(
  service: SearchService,
  reindexer: Reindexer,
  newDir: string,
): Promise<{ documents: number; seconds: number; docsPerSecond: number }> {
  await service.upgrade(newDir);
  const t0 = performance.now();
  reindexer.start();
  const st = await settled(reindexer);
  const seconds = (performance.now() - t0) / 1000;
  return { documents: st.done, seconds, docsPerSecond: st.done / seconds };
}

/**
 * The upgrade to `newDir` and its whole re-index, searched throughout by `probe` (one client) and
 * by `load` in a window of `seconds` from each progress fraction of `at` (its clients held between
 * the windows). Returns the windows, the probe's phase and the re-index rate inside the windows.
 */
async function reindexUnderLoad(
  service: SearchService,
  reindexer: Reindexer,
  newDir: string,
  total: number,
  at: number[],
  seconds: number,
  load: Load,
  probe: Load,
): Promise<{
  windows: Phase[];
  probe: Phase;
  underLoad: { documents: number; seconds: number; docsPerSecond: number };
}> {
  load.pause(true);
  probe.begin("probe");
  await service.upgrade(newDir);
  reindexer.start();
  const windows: Phase[] = [];
  let rows = 0;
  let secs = 0;
  for (const f of at) {
    await until(() => finished(reindexer) || reindexer.status.done >= f * total);
    if (finished(reindexer)) break;
    const done0 = reindexer.status.done;
    const t0 = performance.now();
    load.pause(false);
    load.begin(`during ${Math.round(f * 100)}%`);
    const end = t0 + seconds * 1000;
    await until(() => finished(reindexer) || performance.now() >= end);
    windows.push(await load.end());
    load.pause(true);
    rows += reindexer.status.done - done0;
    secs += (performance.now() - t0) / 1000;
  }
  await until(() => finished(reindexer));
  const probed = await probe.end();
  load.pause(false);
  await settled(reindexer);
  return { windows, probe: probed, underLoad: { documents: rows, seconds: secs, docsPerSecond: rows / secs } };
}

/** Windows of one phase as one: requests, latencies and time split pooled. */
export function poolPhases(name: string, ws: Phase[]): Phase {
  const n = ws.reduce((a, w) => a + w.requests - w.failed, 0);
  const seconds = ws.reduce((a, w) => a + w.seconds, 0);
  const all = ws.flatMap((w) => latenciesOf.get(w) ?? []);
  const split = Object.fromEntries(
    Object.keys(ws[0]?.split ?? {}).map((k) => [
      k,
      n ? ws.reduce((a, w) => a + (w.split as Record<string, number>)[k]! * (w.requests - w.failed), 0) / n : 0,
    ]),
  ) as Phase["split"];
  return {
    phase: name,
    requests: ws.reduce((a, w) => a + w.requests, 0),
    failed: ws.reduce((a, w) => a + w.failed, 0),
    failures: ws.flatMap((w) => w.failures).slice(0, 5),
    seconds,
    qps: n / seconds,
    p50Ms: pct(all, 50),
    p99Ms: pct(all, 99),
    split,
  };
}

export async function runServeBench(o: ServeBenchOptions): Promise<void> {
  const { oldDir, newDir } = tinyModels(resolve(o.run ?? "runs/bench-tiny"));
  const nDocs = o.docs ?? (o.quick ? 5000 : 100000);
  const clients = o.clients ?? 8;
  const seconds = o.seconds ?? (o.quick ? 5 : 20);
  const pgUrl = o.pg ?? process.env.QDC_PG_URL;

  const { docs, queries: queryTexts } = await serveCorpus(nDocs);

  // embedded once, written to every store
  const model = EmbeddingModel.load(oldDir);
  const dim = model.dimension;
  let t = performance.now();
  const rows: StoreRow[] = [];
  for (let i = 0; i < docs.length; i += 2048) {
    rows.push(...embedRows(model, docs.slice(i, i + 2048), oldDir, { batchSize: 128, maxLength: 64 }));
    if ((i / 2048) % 10 === 0) log(`embedded ${Math.min(i + 2048, docs.length)} / ${docs.length}`);
  }
  const embedSeconds = (performance.now() - t) / 1000;
  const q = model.encode(queryTexts, { kind: "query", maxLength: 64 });
  const qrows = tensorRows(q);
  q.dispose();
  model.dispose();
  // the same queries by the new model: the store alone after the re-index searches with them
  const newModel = EmbeddingModel.load(newDir);
  const qn = newModel.encode(queryTexts, { kind: "query", maxLength: 64 });
  const qrowsNew = tensorRows(qn);
  qn.dispose();
  newModel.dispose();
  log(`${docs.length} documents embedded in ${f1(embedSeconds)} s`);

  const work = mkdtempSync(join(tmpdir(), "qdc-bench-serve-"));
  const table = `qdc_bench_${process.pid}`;
  const kinds: {
    kind: string;
    open: (name: string, ef?: number) => Promise<VectorStore>;
    drop: (name: string) => Promise<void>;
  }[] = [
    {
      kind: "lancedb",
      open: (name, ef) =>
        LanceStore.open(join(work, name), { dim, fields: {} }, { annThreshold: Number.POSITIVE_INFINITY, ef }),
      drop: async (name) => rmSync(join(work, name), { recursive: true, force: true }),
    },
  ];
  if (pgUrl)
    kinds.push({
      kind: "pgvector",
      open: (name, ef) =>
        PgVectorStore.open(
          pgUrl,
          `${table}_${name}`,
          { dim, fields: {} },
          { annThreshold: Number.POSITIVE_INFINITY, efSearch: ef },
        ),
      drop: async (name) => {
        const c = new pg.Client({ connectionString: pgUrl });
        await c.connect();
        await c.query(`DROP TABLE IF EXISTS ${table}_${name}`);
        await c.query("DELETE FROM qdc_stores WHERE name = $1", [`${table}_${name}`]);
        await c.end();
      },
    });
  else log("no PostgreSQL given (--pg URL or QDC_PG_URL): LanceDB only");

  const results: Record<string, unknown>[] = [];
  try {
    for (const { kind, open, drop } of kinds.filter((x) => !o.stores || o.stores.includes(x.kind))) {
      log(`— ${kind} —`);
      let store = await open("main");
      t = performance.now();
      for (let i = 0; i < rows.length; i += 2048) await store.upsert(rows.slice(i, i + 2048));
      await store.optimize({ final: true }); // as `qdc store load` does
      const loadSeconds = (performance.now() - t) / 1000;
      log(`${kind}: ${rows.length} rows written in ${f1(loadSeconds)} s`);

      // exact vs ANN recall@10 on 200 queries
      const sample = qrows.slice(0, 200);
      t = performance.now();
      const exact: StoreHit[][] = [];
      for (let i = 0; i < sample.length; i += clients)
        exact.push(
          ...(await Promise.all(
            sample.slice(i, i + clients).map((v) => store.search(v, 10 + TIE_DEPTH, { exact: true })),
          )),
        );
      const exactMs = (performance.now() - t) / sample.length;
      t = performance.now();
      await store.buildIndex();
      const indexSeconds = (performance.now() - t) / 1000;
      // the smallest HNSW ef (candidate list) that reaches the recall goal: the service runs with it
      const sweep: { ef: number; recallAt10: number; msPerQuery: number }[] = [];
      for (const ef of o.ef ? [o.ef] : EF_LADDER) {
        await store.close();
        store = await open("main", ef);
        t = performance.now();
        const ann = await store.searchMany(sample, 10);
        const msPerQuery = (performance.now() - t) / sample.length;
        let found = 0;
        sample.forEach((_, i) => {
          found += annFound(exact[i] ?? [], ann[i] ?? [], 10);
        });
        const recallAt10 = found / (10 * sample.length);
        sweep.push({ ef, recallAt10, msPerQuery });
        log(`${kind}: ef ${ef}: recall@10 vs exact ${recallAt10.toFixed(3)}`);
        if (recallAt10 >= RECALL_GOAL) break;
      }
      const { ef, recallAt10: recall } = sweep[sweep.length - 1] as (typeof sweep)[number];
      log(`${kind}: ANN index built in ${f1(indexSeconds)} s; serving with ef ${ef}, recall@10 ${recall.toFixed(3)}`);

      const alone = await storeAlone(store, qrows, clients, seconds);
      log(`${kind} alone: ${f1(alone.qps)} QPS, p50 ${f1(alone.p50Ms)} ms, p99 ${f1(alone.p99Ms)} ms`);

      const service = await SearchService.create({ store, modelDir: oldDir, maxLength: 64, log: () => {} });
      const reindexer = new Reindexer(service);
      // the causes of 5xx answers, counted by message (a number without its cause helps no one)
      const serverErrors = new Map<string, number>();
      const app = buildApp(service, reindexer, {
        onServerError: (e) => serverErrors.set(e.message, (serverErrors.get(e.message) ?? 0) + 1),
      });
      const base = await app.listen({ port: 0, host: "127.0.0.1" });
      const load = new Load();
      await load.start({ base, concurrency: clients, texts: queryTexts, k: 10 });
      await new Promise((r) => setTimeout(r, 2000)); // warm-up
      const phases: Phase[] = [];
      load.begin("before");
      await new Promise((r) => setTimeout(r, seconds * 1000));
      phases.push(await load.end());
      const probe = new Load();
      await probe.start({ base, concurrency: 1, texts: queryTexts, k: 10 });
      const during = await reindexUnderLoad(
        service,
        reindexer,
        newDir,
        rows.length,
        o.duringAt ?? [0.1, 0.5, 0.9],
        seconds,
        load,
        probe,
      );
      const underLoad = during.underLoad;
      await probe.exit();
      phases.push(poolPhases("during", during.windows), ...during.windows, during.probe);
      load.begin("after");
      await new Promise((r) => setTimeout(r, seconds * 1000));
      phases.push(await load.end());
      await load.exit();
      await app.close();
      // the peer of "after": the re-indexed store searched straight from Node with the new model's
      // query vectors (what the store itself costs after a whole rewrite)
      const aloneAfter = await storeAlone(service.store, qrowsNew, clients, seconds);
      log(
        `${kind} alone after: ${f1(aloneAfter.qps)} QPS, p50 ${f1(aloneAfter.p50Ms)} ms, p99 ${f1(aloneAfter.p99Ms)} ms`,
      );
      await service.close();
      for (const p of phases)
        log(
          `${kind} ${p.phase}: ${f1(p.qps)} QPS, p50 ${f1(p.p50Ms)} ms, p99 ${f1(p.p99Ms)} ms, ${p.failed} failed; mean wait ${f1(p.split.waitMs)} / embed ${f1(p.split.embedMs)} / store ${f1(p.split.storeMs)} ms, batch ${f1(p.split.batch)}`,
        );
      log(`${kind}: re-indexed ${underLoad.documents} rows under load at ${f1(underLoad.docsPerSecond)} docs/s`);
      for (const [message, n] of serverErrors) log(`${kind}: ${n} × 500: ${message}`);

      // the same re-index with no searches, on a 10k-row store
      const small = await open("standalone");
      await small.upsert(rows.slice(0, 10000));
      // with its ANN index, as the main store has one: its upkeep is part of a re-index's cost
      await small.buildIndex();
      const s2 = await SearchService.create({ store: small, modelDir: oldDir, maxLength: 64, log: () => {} });
      const r2 = new Reindexer(s2);
      const standalone = await reindexWith(s2, r2, newDir);
      await s2.close();
      await drop("standalone");
      await drop("main");
      log(`${kind}: standalone re-index ${f1(standalone.docsPerSecond)} docs/s`);

      const before = phases[0] as Phase;
      results.push({
        store: kind,
        load: { seconds: loadSeconds, rowsPerSecond: rows.length / loadSeconds },
        ann: { recallAt10: recall, ef, sweep, exactMsPerQuery: exactMs, indexSeconds },
        storeAlone: alone,
        storeAloneAfter: aloneAfter,
        phases,
        serviceOverStore: before.qps / alone.qps,
        serverErrors: Object.fromEntries(serverErrors),
        reindex: { underLoad, standalone, share: underLoad.docsPerSecond / standalone.docsPerSecond },
        goals: {
          beforeQps300: before.qps >= 300,
          beforeP99Under60: before.p99Ms <= 60,
          recall95: recall >= 0.95,
          duringHalfQps: (phases[1] as Phase).qps >= 0.5 * before.qps,
          duringP99Within3x: (phases[1] as Phase).p99Ms <= 3 * before.p99Ms,
          noFailures: phases.every((p) => p.failed === 0),
          after95: (phases[phases.length - 1] as Phase).qps >= 0.95 * before.qps,
        },
      });
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }

  const result = {
    machine: machineName("cpu"),
    documents: docs.length,
    dim,
    clients,
    k: 10,
    textsPerRequest: 1,
    models: { old: oldDir, new: newDir },
    embed: { seconds: embedSeconds, docsPerSecond: docs.length / embedSeconds },
    stores: results,
  };
  console.log(
    `serve benchmark — ${result.machine}, ${docs.length} documents × ${dim}-d, ${clients} concurrent clients on loopback (separate process), 1 text per request, k 10`,
  );
  console.log(
    "| store | phase | QPS | p50 ms | p99 ms | failed | service ÷ store QPS | mean wait / embed / store ms | batch |",
  );
  console.log("|---|---|---:|---:|---:|---:|---:|---|---:|");
  for (const r of results) {
    const alone = r.storeAlone as { qps: number; p50Ms: number; p99Ms: number };
    console.log(`| ${r.store} | store alone | ${f1(alone.qps)} | ${f1(alone.p50Ms)} | ${f1(alone.p99Ms)} | 0 | | | |`);
    const after = r.storeAloneAfter as { qps: number; p50Ms: number; p99Ms: number };
    for (const p of r.phases as Phase[])
      console.log(
        `| ${r.store} | ${p.phase} | ${f1(p.qps)} | ${f1(p.p50Ms)} | ${f1(p.p99Ms)} | ${p.failed} | ${(p.qps / (p.phase === "after" ? after : alone).qps).toFixed(2)} | ${f1(p.split.waitMs)} / ${f1(p.split.embedMs)} / ${f1(p.split.storeMs)} | ${f1(p.split.batch)} |`,
      );
    console.log(
      `| ${r.store} | store alone after | ${f1(after.qps)} | ${f1(after.p50Ms)} | ${f1(after.p99Ms)} | 0 | | | |`,
    );
  }
  for (const r of results) {
    const ri = r.reindex as { underLoad: { docsPerSecond: number }; standalone: { docsPerSecond: number } };
    const ann = r.ann as { recallAt10: number };
    console.log(
      `${r.store}: recall@10 ANN vs exact ${ann.recallAt10.toFixed(3)}; re-index ${f1(ri.underLoad.docsPerSecond)} docs/s under load vs ${f1(ri.standalone.docsPerSecond)} standalone; goals ${JSON.stringify(r.goals)}`,
    );
  }
  if (o.out) writeFileSync(o.out, `${JSON.stringify(result, null, 2)}\n`);
}
