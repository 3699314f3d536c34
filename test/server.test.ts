/**
 * The search service: request validation, a model upgrade and a background re-index under
 * concurrent load (zero failed requests, every response consistent with the versions it reports),
 * and a re-index killed mid-way and restarted (every document once, at the new version).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import type { FastifyInstance } from "fastify";
import { fitBetweenModels } from "../src/drift/between-models.js";
import { hashModel } from "../src/lineage/index.js";
import { EmbeddingModel } from "../src/models/embedding-model.js";
import { topByCount } from "../src/retrieval/reindex-order.js";
import { QueryRouter } from "../src/retrieval/router.js";
import { tensorRows } from "../src/retrieval/rows.js";
import { loadCorpus } from "../src/server/load.js";
import type { ReindexOptions } from "../src/server/reindex.js";
import type { SearchService } from "../src/server/service.js";
import { LanceStore } from "../src/store/lancedb.js";
import { derivedModel, FIXTURES, startService, trainedBertTiny } from "./helpers.js";

const cli = new URL("../src/cli/main.js", import.meta.url).pathname;
const WORDS =
  "river mountain compiler network kernel garden music library protocol engine ocean planet archive server teacher window".split(
    " ",
  );
const TOKEN = "s3cret-token";

/** A corpus of n documents as JSONL, with a filterable field. */
function corpus(dir: string, n: number): string {
  const file = join(dir, "corpus.jsonl");
  const rows = Array.from({ length: n }, (_, i) =>
    JSON.stringify({
      _id: `doc${i}`,
      text: `notes ${i} on the ${WORDS[i % 16]} and the ${WORDS[(i * 7 + 3) % 16]}`,
      lang: i % 3 ? "en" : "de",
    }),
  );
  writeFileSync(file, `${rows.join("\n")}\n`);
  return file;
}

/** old = the tiny BERT fixture; new = its trained weights, with lineage and a mean compensator. */
function models(dir: string): { oldDir: string; newDir: string } {
  const oldDir = resolve(FIXTURES, "bert-tiny");
  const newDir = trainedBertTiny(dir, { lineage: true });
  fitBetweenModels({ oldDir, newDir, queries: WORDS.map((w) => `about the ${w}`), methods: ["mean"] });
  return { oldDir, newDir };
}

describe("search service", () => {
  const dir = mkdtempSync(join(tmpdir(), "qdc-serve-"));
  const { oldDir, newDir } = models(dir);
  // responses name models without their paths
  const oldName = hashModel(oldDir);
  const newName = hashModel(newDir);
  const N = 120;
  const corpusFile = corpus(dir, N);
  let service: SearchService;
  let app: FastifyInstance;
  let base = "";
  const post = async (path: string, body: unknown, token?: string) => {
    const r = await fetch(base + path, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    });
    return { status: r.status, body: (await r.json()) as Record<string, unknown> };
  };

  before(async () => {
    const store = await LanceStore.open(join(dir, "store"), { dim: 64, fields: { lang: "string" } });
    await loadCorpus(store, oldDir, corpusFile);
    ({ service, app, base } = await startService(store, oldDir, { token: TOKEN }));
  });
  after(async () => {
    await app.close();
    await service.close();
  });

  it("rejects bad requests with a JSON 4xx and keeps serving", async () => {
    const bad: [string, unknown, string?][] = [
      ["/search", { texts: [] }],
      ["/search", { texts: [""] }],
      ["/search", { texts: ["   "] }],
      ["/search", { texts: ["x".repeat(5000)] }],
      ["/search", { texts: ["ok"], k: 0 }],
      ["/search", { texts: ["ok"], k: 5000 }],
      ["/search", { texts: ["ok"], extra: 1 }],
      ["/search", { texts: ["ok"], filter: { colour: "red" } }],
      ["/admin/upgrade", { model: newDir }],
      ["/admin/upgrade", { model: newDir }, "wrong"],
      ["/admin/reindex", { action: "explode" }, TOKEN],
      ["/admin/upgrade", { model: join(FIXTURES, "nomic-tiny") }, TOKEN],
    ];
    for (const [path, body, token] of bad) {
      const r = await post(path, body, token);
      assert.ok(r.status >= 400 && r.status < 500, `${path} ${JSON.stringify(body).slice(0, 60)} → ${r.status}`);
      assert.equal(typeof r.body.error, "string");
      assert.equal(typeof r.body.message, "string");
    }
    assert.match(
      String((await post("/search", { texts: ["ok"], filter: { colour: "red" } })).body.message),
      /^body\/filter has unknown field 'colour' \(allowed: lang\)$/,
    );
    assert.equal((await post("/admin/upgrade", { model: newDir })).status, 401);
    assert.equal((await post("/admin/upgrade", { model: newDir }, "wrong")).status, 403);
    assert.match(
      String((await post("/admin/upgrade", { model: join(FIXTURES, "nomic-tiny") }, TOKEN)).body.message),
      /cannot upgrade/,
    );
    const ok = await post("/search", { texts: ["the river", "a compiler"], k: 5, filter: { lang: "en" } });
    assert.equal(ok.status, 200);
    assert.equal(ok.body.model, oldName);
    const results = ok.body.results as { id: string; version: string; fields: { lang: string } }[][];
    assert.equal(results.length, 2);
    assert.ok(results.every((h) => h.length === 5 && h.every((x) => x.fields.lang === "en" && x.version === oldName)));
    const models = (await (await fetch(`${base}/models`)).json()) as Record<string, unknown>;
    assert.equal(models.current, oldName);
    assert.deepEqual(models.lineage, [oldName]);
    assert.deepEqual((models.store as { versions: unknown }).versions, { [oldName]: N });
    const health = await (await fetch(`${base}/health`)).json();
    assert.deepEqual(health, { status: "ok", model: oldName, store: "lancedb", rows: N });
  });

  it("upgrades and re-indexes under load with zero failed requests and consistent versions", async () => {
    const responses: { status: number; body: Record<string, unknown> }[] = [];
    let stop = false;
    const worker = async (w: number) => {
      for (let i = 0; !stop; i++)
        responses.push(await post("/search", { texts: [`the ${WORDS[(w * 5 + i) % 16]}`], k: 10 }));
    };
    const workers = [0, 1, 2, 3].map(worker);
    await new Promise((r) => setTimeout(r, 300));
    const up = await post("/admin/upgrade", { model: newDir }, TOKEN);
    assert.equal(up.status, 200);
    assert.deepEqual(up.body, { previous: oldName, current: newName });
    assert.equal((await post("/admin/reindex", { action: "start" }, TOKEN)).status, 200);
    // pause: nothing moves; resume: it goes on
    const paused = (await post("/admin/reindex", { action: "pause" }, TOKEN)).body;
    assert.equal(paused.state, "paused");
    await new Promise((r) => setTimeout(r, 200));
    const still = (await post("/admin/reindex", { action: "status" }, TOKEN)).body;
    assert.equal(still.state, "paused");
    const before = await service.store.versions();
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(await service.store.versions(), before, "a paused re-index writes nothing");
    assert.equal((await post("/admin/reindex", { action: "resume" }, TOKEN)).body.state, "running");
    for (;;) {
      const st = (await post("/admin/reindex", { action: "status" }, TOKEN)).body;
      if (st.state === "done") break;
      assert.notEqual(st.state, "failed", JSON.stringify(st));
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await Promise.all(workers);
    assert.ok(responses.length > 20, `${responses.length} responses`);
    assert.deepEqual(
      responses.filter((r) => r.status !== 200),
      [],
      "no request failed",
    );
    const seen = new Set<string>();
    let mixed = 0;
    for (const { body } of responses) {
      const model = body.model as string;
      const versions = body.versions as Record<string, { compensation: string }>;
      const hits = (body.results as { id: string; version: string }[][])[0]!;
      assert.equal(new Set(hits.map((h) => h.id)).size, hits.length, "no duplicates");
      assert.ok(model === oldName || model === newName);
      seen.add(model);
      for (const h of hits) {
        if (model === oldName) assert.equal(h.version, oldName, "the old model only sees old rows");
        // an old row reached from the new model is compensated; a new row is native
        assert.equal(versions[h.version]?.compensation, h.version === model ? "none" : "mean");
      }
      if (new Set(hits.map((h) => h.version)).size > 1) mixed++;
    }
    assert.deepEqual([...seen].sort(), [oldName, newName].sort());
    assert.ok(mixed > 0, "some searches ran while old and new rows were both present");
    assert.deepEqual(await service.store.versions(), { [hashModel(newDir)]: N });
    // after the backfill, search is the new model's native search
    const final = await post("/search", { texts: ["the ocean"], k: 10 });
    const m = EmbeddingModel.load(newDir);
    const texts = Array.from(
      { length: N },
      (_, i) => `notes ${i} on the ${WORDS[i % 16]} and the ${WORDS[(i * 7 + 3) % 16]}`,
    );
    const want = m
      .encode(["the ocean"], { kind: "query" })
      .matmul(m.encode(texts, { kind: "document" }).T)
      .topk(10, 1)
      .indices.toArray();
    m.dispose();
    assert.deepEqual(
      (final.body.results as { id: string }[][])[0]!.map((h) => h.id),
      want.map((i) => `doc${i}`),
    );
  });
});

describe("re-index crash and restart", () => {
  it("leaves every document exactly once, at the new version", async () => {
    const dir = mkdtempSync(join(tmpdir(), "qdc-reindex-"));
    const { oldDir, newDir } = models(dir);
    const N = 100;
    const storeDir = join(dir, "store");
    const store = await LanceStore.open(storeDir, { dim: 64, fields: {} });
    await loadCorpus(store, oldDir, corpus(dir, N));
    await store.close();
    const args = [
      cli,
      "store",
      "reindex",
      "--store",
      storeDir,
      "--model",
      newDir,
      "--batch-size",
      "8",
      "--write-rows",
      "8",
    ];
    const crashed = spawnSync("node", args, {
      encoding: "utf8",
      env: { ...process.env, QDC_TEST_CRASH_AFTER_WRITES: "3" },
    });
    assert.equal(crashed.signal, "SIGKILL");
    const mid = await LanceStore.open(storeDir);
    const partial = await mid.versions();
    assert.equal(partial[hashModel(newDir)], 24, "three batches of 8 were written before the crash");
    assert.equal(partial[hashModel(oldDir)], N - 24);
    await mid.close();
    const resumed = spawnSync("node", args, { encoding: "utf8" });
    assert.equal(resumed.status, 0, resumed.stderr);
    const done = await LanceStore.open(storeDir);
    assert.equal(await done.count(), N);
    assert.deepEqual(await done.versions(), { [hashModel(newDir)]: N });
    const rows = await done.get(Array.from({ length: N }, (_, i) => `doc${i}`));
    assert.equal(rows.length, N);
    const m = EmbeddingModel.load(newDir);
    const want = m
      .encode(
        rows.map((r) => r.text),
        { kind: "document" },
      )
      .toArray();
    m.dispose();
    rows.forEach((r, i) => {
      let diff = 0;
      for (let j = 0; j < 64; j++) diff = Math.max(diff, Math.abs(r.vector[j]! - want[i * 64 + j]!));
      assert.ok(diff < 1e-5, `${r.id} is embedded by the new model (max difference ${diff})`);
    });
    await done.close();
  });
});

/**
 * A LanceDB store of `n` corpus rows embedded by the old model, an inline service over it, and
 * `reindex`: the upgrade to the new model and a re-index with `opts` until it settles.
 */
async function reindexFixture(prefix: string, n: number, log: (e: Record<string, unknown>) => void = () => {}) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const { oldDir, newDir } = models(dir);
  const store = await LanceStore.open(join(dir, "store"), { dim: 64, fields: { lang: "string" } });
  await loadCorpus(store, oldDir, corpus(dir, n));
  const { SearchService } = await import("../src/server/service.js");
  const { Reindexer } = await import("../src/server/reindex.js");
  const service = await SearchService.create({ store, modelDir: oldDir, encoder: "inline", log });
  const reindex = async (opts: ReindexOptions) => {
    await service.upgrade(newDir);
    const r = new Reindexer(service, opts);
    r.start();
    return r.settled();
  };
  return { oldDir, newDir, store, service, reindex };
}

describe("switching back to a model whose last request ends during the switch", () => {
  it("keeps that model loaded (its unload waits for the switch, which makes it current again)", async () => {
    const { oldDir, newDir, store, service } = await reindexFixture("qdc-switchback-", 20);
    try {
      const held = service.acquire(); // a request still searching with the old model
      await service.upgrade(newDir); // old retired, but in use: not unloaded yet
      // the request ends while the switch back is under way: after the old model was loaded (the
      // encoder had it still), during the overlap check, before it is made current; its release
      // would unload the very model being switched to
      const versions = store.versions.bind(store);
      let calls = 0;
      store.versions = async () => {
        if (++calls === 2) held.release();
        return versions();
      };
      await service.upgrade(oldDir, undefined, { minOverlap: 0 });
      assert.equal(calls >= 2, true, "the check asked the store after the load");
      store.versions = versions;
      const r = await service.search(["the river"], 3);
      assert.equal(r.model, hashModel(oldDir));
      assert.equal(r.results[0]?.length, 3);
    } finally {
      await service.close();
    }
  });
});

describe("the store's re-index lease", () => {
  it("keeps a re-index from running while another process holds it, unrecorded; runs it once the lease expires", async () => {
    const { newDir, store, service } = await reindexFixture("qdc-lease-", 30);
    const { Reindexer } = await import("../src/server/reindex.js");
    try {
      await service.upgrade(newDir);
      const recorded = JSON.stringify((await store.readState())?.reindex ?? null);
      // a process of another machine holds it (its pid cannot be checked from here)
      const other = "elsewhere:1:abcd1234";
      assert.equal((await store.lease("reindex", other, 1)).owner, other);
      const r = new Reindexer(service, { lease: 5 });
      assert.equal((await r.acquire())?.owner, other);
      r.start();
      const st = await r.settled();
      assert.equal(st.state, "idle");
      assert.equal(st.runningOn, other);
      assert.equal(Object.keys(await store.versions()).length, 1, "nothing re-indexed");
      assert.equal(JSON.stringify((await store.readState())?.reindex ?? null), recorded, "nothing recorded");
      await new Promise((res) => setTimeout(res, 1100));
      assert.equal(await r.acquire(), null, "an expired lease is taken");
      r.start();
      const done = await r.settled();
      assert.equal(done.state, "done");
      assert.equal(done.runningOn, undefined);
      assert.deepEqual(Object.keys(await store.versions()), [hashModel(newDir)]);
      const rec = (await store.readState())?.reindex as { state: string; runningOn: string };
      assert.equal(rec.state, "done");
      assert.equal(rec.runningOn, r.owner, "the record names the process that ran it");
      // given up at the end: another process takes it at once
      assert.equal((await store.lease("reindex", "next", 5)).owner, "next");
      await store.releaseLease("reindex", "next");
      // a lease taken for a start that did not follow is given up again, also after earlier runs
      assert.equal(await r.acquire(), null);
      await r.release();
      assert.equal((await store.lease("reindex", "next", 5)).owner, "next", "released by release()");
      // a replica not running it shows another process's re-index as the store records it, also
      // once that one ended
      const other2 = new Reindexer(service, { lease: 5 });
      for (const state of ["running", "done"] as const) {
        other2.observe({ ...rec, state, done: 30, runningOn: "elsewhere:2:x:y" });
        assert.equal(other2.status.state, state);
        assert.equal(other2.status.done, 30);
        assert.equal(other2.status.runningOn, "elsewhere:2:x:y");
      }
      other2.observe({ ...rec, state: "running", runningOn: other2.owner }); // its own record: not another's
      assert.equal(other2.status.state, "idle");
    } finally {
      await service.close();
    }
  });
});

describe("re-index writes", () => {
  it("embed batchSize documents per forward pass and write writeRows rows per store write, each row once", async () => {
    const { newDir, store, service, reindex } = await reindexFixture("qdc-rewrite-", 50);
    const writes: number[] = [];
    const passes: number[] = [];
    const upsert = store.upsert.bind(store);
    store.upsert = async (rows) => {
      writes.push(rows.length);
      return upsert(rows);
    };
    const embed = service.embedDocuments.bind(service);
    service.embedDocuments = async (version, texts) => {
      passes.push(texts.length);
      return embed(version, texts);
    };
    try {
      // 12 is rounded up to whole forward passes of 5: writes of 15 rows
      const st = await reindex({ batchSize: 5, writeRows: 12 });
      assert.equal(st.state, "done");
      assert.deepEqual(writes, [15, 15, 15, 5]);
      assert.ok(passes.every((n) => n <= 5));
      assert.equal(
        passes.reduce((a, b) => a + b, 0),
        50,
      );
      assert.deepEqual(await store.versions(), { [hashModel(newDir)]: 50 });
    } finally {
      await service.close();
    }
  });
});

describe("re-index share of the machine", () => {
  it("waits (1 − share) / share of each round while searches contend, and hears a pause during a wait at once", async () => {
    const { store, service, reindex, newDir } = await reindexFixture("qdc-reshare-", 30);
    let busyMs = 0;
    const timed =
      <A extends unknown[], R>(f: (...a: A) => Promise<R>) =>
      async (...a: A) => {
        const t = performance.now();
        try {
          return await f(...a);
        } finally {
          busyMs += performance.now() - t;
        }
      };
    store.upsert = timed(store.upsert.bind(store));
    service.embedDocuments = timed(service.embedDocuments.bind(service));
    // searches in turn do not contend; two at once do
    await service.search(["about the river"], 3);
    await service.search(["a compiler"], 3);
    assert.equal(service.searchesContended(1000), false);
    await Promise.all([service.search(["about the river"], 3), service.search(["a compiler"], 3)]);
    assert.equal(service.searchesContended(1000), true);
    service.searchesContended = () => true;
    try {
      const t0 = performance.now();
      const st = await reindex({ batchSize: 10, writeRows: 10, share: 0.25 });
      const wallMs = performance.now() - t0;
      assert.equal(st.state, "done");
      assert.deepEqual(await store.versions(), { [hashModel(newDir)]: 30 });
      // each round (at least its forward passes and its write) is followed by three times as long a wait
      assert.ok(wallMs >= 3.5 * busyMs, `wall ${wallMs.toFixed(0)} ms, busy ${busyMs.toFixed(0)} ms`);

      // a share that would wait for minutes after the first write: a pause ends the wait
      await service.upgrade(derivedModel(newDir, join(newDir, ".."), "third"));
      const { Reindexer } = await import("../src/server/reindex.js");
      const r = new Reindexer(service, { batchSize: 10, writeRows: 10, share: 0.001 });
      const wrote = new Promise<void>((resolve) => {
        const upsert = store.upsert.bind(store);
        store.upsert = async (rows) => {
          await upsert(rows);
          resolve();
        };
      });
      r.start();
      await wrote;
      await new Promise((res) => setTimeout(res, 50));
      const pausedAt = performance.now();
      r.pause();
      const paused = await r.settled();
      // the wait would have lasted minutes (capped at 30 s)
      assert.ok(
        performance.now() - pausedAt < 10_000,
        `settled ${(performance.now() - pausedAt).toFixed(0)} ms after the pause`,
      );
      assert.equal(paused.state, "paused");
      assert.equal(paused.done, 10);
      assert.throws(() => new Reindexer(service, { share: 0 }), /share must be in \(0, 1\], got 0/);
    } finally {
      await service.close();
    }
  });
});

describe("re-index store failures", () => {
  it("are retried with a warning, and stop the re-index as failed only past `retries`", async () => {
    const logged: Record<string, unknown>[] = [];
    const { newDir, store, service, reindex } = await reindexFixture("qdc-reretry-", 20, (e) => logged.push(e));
    const upsert = store.upsert.bind(store);
    let failing = 2;
    store.upsert = async (rows) => {
      if (failing-- > 0) throw new Error("canceling statement due to statement timeout");
      return upsert(rows);
    };
    try {
      const st = await reindex({ batchSize: 10, writeRows: 10 });
      assert.equal(st.state, "done");
      assert.deepEqual(await store.versions(), { [hashModel(newDir)]: 20 });
      const retries = logged.filter((e) => e.event === "reindex-retry");
      assert.deepEqual(
        retries.map((e) => [e.attempt, e.waitMs]),
        [
          [1, 1000],
          [2, 2000],
        ],
      );
      assert.match(String(retries[0]?.message), /statement timeout/);
    } finally {
      await service.close();
    }

    // always failing: the re-index stops as failed after the first try and one retry
    const second = await reindexFixture("qdc-refail-", 20);
    second.store.upsert = async () => {
      throw new Error("canceling statement due to statement timeout");
    };
    try {
      const st2 = await second.reindex({ batchSize: 10, writeRows: 10, retries: 1 });
      assert.equal(st2.state, "failed");
      assert.match(String(st2.error), /statement timeout/);
      assert.deepEqual(await second.store.versions(), { [hashModel(second.oldDir)]: 20 });
    } finally {
      await second.service.close();
    }
  });
});

describe("re-index order", () => {
  it("takes the n most retrieved ids, highest count first, ties in the order given", () => {
    const entries: [string, number][] = [
      ["a", 1],
      ["b", 5],
      ["c", 2],
      ["d", 5],
      ["e", 2],
      ["f", 2],
      ["g", 9],
    ];
    assert.deepEqual(
      topByCount(entries, 4).map(([id]) => id),
      ["g", "b", "d", "c"],
    );
    assert.deepEqual(
      topByCount(entries, 5).map(([id]) => id),
      ["g", "b", "d", "c", "e"],
    );
    assert.deepEqual(
      topByCount(entries, 10).map(([id]) => id),
      ["g", "b", "d", "c", "e", "f", "a"],
    );
    assert.deepEqual(topByCount(entries, 0), []);
  });
});

describe("mixed-version score calibration", () => {
  it("puts an older version's scores on the current model's scale once its reference is embedded", async () => {
    const events: Record<string, unknown>[] = [];
    const { oldDir, newDir, store, service } = await reindexFixture("qdc-calib-", 40, (e) => events.push(e));
    try {
      const oldName = hashModel(oldDir);
      const newName = hashModel(newDir);
      await service.upgrade(newDir);
      const m = EmbeddingModel.load(newDir);
      const text = (i: number) => `notes ${i} on the ${WORDS[i % 16]} and the ${WORDS[(i * 7 + 3) % 16]}`;
      const rows = (ids: number[]) => tensorRows(m.encode(ids.map(text), { kind: "document" }));
      // half the corpus re-embedded, as a re-index half-way through leaves it
      const half = Array.from({ length: 20 }, (_, i) => 2 * i);
      const fresh = rows(half);
      await store.upsert(
        half.map((i, k) => ({
          id: `doc${i}`,
          text: text(i),
          fields: { lang: i % 3 ? "en" : "de" },
          version: newName,
          vector: fresh[k] as Float32Array,
        })),
      );
      service.invalidate();
      const first = await service.search(["the ocean"], 40);
      assert.equal(first.versions[oldName]?.calibrated, false, "the reference is not embedded yet");
      for (let i = 0; i < 200 && !events.some((e) => e.event === "calibration-reference"); i++)
        await new Promise((r) => setTimeout(r, 25));
      assert.ok(
        events.some((e) => e.event === "calibration-reference" && e.rows === 20),
        JSON.stringify(events),
      );
      const r = await service.search(["the ocean"], 40);
      assert.equal(r.versions[oldName]?.calibrated, true);
      // by hand: raw cosines of the compensated query with the old rows, the native query with the
      // new rows; the reference = the 20 old rows, embedded by both models
      const q = m.encode(["the ocean"], { kind: "query" });
      const qOld = tensorRows(new QueryRouter(newDir, "mean").chain(oldName)(q))[0] as Float32Array;
      const qNew = tensorRows(q)[0] as Float32Array;
      const stored = new Map<string, Float32Array>();
      for await (const batch of store.iterate(oldName, 100))
        for (const row of batch) stored.set(row.id, Float32Array.from(row.vector));
      const odd = Array.from({ length: 20 }, (_, i) => 2 * i + 1);
      const refNew = rows(odd);
      const dot = (a: Float32Array, b: Float32Array) => a.reduce((s, v, i) => s + v * (b[i] as number), 0);
      const moments = (xs: number[]) => {
        const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
        return [mean, Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / xs.length)] as const;
      };
      const [mo, so] = moments(odd.map((i) => dot(qOld, stored.get(`doc${i}`) as Float32Array)));
      const [mn, sn] = moments(refNew.map((v) => dot(qNew, v)));
      const a = sn / so;
      const b = mn - a * mo;
      assert.ok(Math.abs(a - 1) + Math.abs(b) > 0.01, `a calibration that changes the scores (a ${a}, b ${b})`);
      const hits = r.results[0] ?? [];
      assert.equal(hits.length, 40);
      for (const h of hits) {
        const i = Number(h.id.slice(3));
        const want =
          h.version === oldName
            ? a * dot(qOld, stored.get(h.id) as Float32Array) + b
            : dot(qNew, fresh[half.indexOf(i)] as Float32Array);
        assert.ok(Math.abs(h.score - want) < 1e-4, `${h.id} (${h.version}): ${h.score} vs ${want}`);
      }
      for (let i = 1; i < hits.length; i++) assert.ok((hits[i - 1]?.score as number) >= (hits[i]?.score as number));
      m.dispose();
      // an upgrade to a child of the new model before any of its rows are written: two older
      // versions, both calibrated onto the child's scale (its native queries embedded for that)
      const child = derivedModel(newDir, mkdtempSync(join(tmpdir(), "qdc-calib-child-")), "child", {
        queries: WORDS.map((w) => `about the ${w}`),
      });
      await service.upgrade(child);
      const childName = hashModel(child);
      await service.search(["the ocean"], 10);
      for (
        let i = 0;
        i < 200 && events.filter((e) => e.event === "calibration-reference" && e.model === childName).length < 2;
        i++
      )
        await new Promise((r) => setTimeout(r, 25));
      const c = await service.search(["the ocean"], 10);
      assert.equal(c.model, childName);
      assert.deepEqual(Object.fromEntries(Object.entries(c.versions).map(([v, x]) => [v, x.calibrated])), {
        [oldName]: true,
        [newName]: true,
      });
    } finally {
      await service.close();
    }
  });
});
