/**
 * The search service under the failures an operator meets: an upgrade racing re-index batches
 * under load, upgrades to models that cannot serve (non-finite canary embeddings, rows they cannot
 * reach), an encoder process killed under load, a store that fails (500s logged with their cause),
 * and restarts that resume the recorded model and re-index (`qdc serve --store S`, no model flag,
 * after a kill -9 mid re-index).
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import type { FastifyInstance } from "fastify";
import pg from "pg";
import { fitBetweenModels } from "../src/drift/between-models.js";
import { hashModel } from "../src/lineage/index.js";
import { EmbeddingModel } from "../src/models/embedding-model.js";
import { tensorRows } from "../src/retrieval/rows.js";
import { buildApp } from "../src/server/http.js";
import { loadCorpus } from "../src/server/load.js";
import { Reindexer } from "../src/server/reindex.js";
import { SearchService } from "../src/server/service.js";
import { LanceStore } from "../src/store/lancedb.js";
import { openStore } from "../src/store/open.js";
import type { VectorStore } from "../src/store/store.js";
import { derivedModel, FIXTURES, startService, trainedBertTiny, WORDS, wordCorpus } from "./helpers.js";

/** The trained bert-tiny descendant with its lineage and a mean compensator to bert-tiny. */
function childOfBertTiny(dir: string): string {
  const newDir = trainedBertTiny(dir, { lineage: true });
  fitBetweenModels({
    oldDir: resolve(FIXTURES, "bert-tiny"),
    newDir,
    queries: WORDS.map((w) => `about the ${w}`),
    methods: ["mean"],
  });
  return newDir;
}

const cli = new URL("../src/cli/main.js", import.meta.url).pathname;
const TOKEN = "t0ken";

const post = async (base: string, path: string, body: unknown, token?: string) => {
  const r = await fetch(base + path, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
};

/** Searches from `n` clients until stopped; every response kept. */
function load(base: string, n = 4) {
  const responses: { status: number; body: Record<string, unknown> }[] = [];
  let stop = false;
  const workers = Array.from({ length: n }, async (_, w) => {
    for (let i = 0; !stop; i++)
      responses.push(await post(base, "/search", { texts: [`the ${WORDS[(w * 5 + i) % 12]}`], k: 10 }));
  });
  return {
    responses,
    async stop() {
      stop = true;
      await Promise.all(workers);
      return responses;
    },
  };
}

const until = async (what: string, cond: () => Promise<boolean> | boolean, ms = 60000) => {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
};

/** The stores the service is tested on: LanceDB always, pgvector on a real server when QDC_PG_URL is set. */
const PG = process.env.QDC_PG_URL;
let tables = 0;
const stores: { kind: string; uri: (dir: string) => string }[] = [
  { kind: "lancedb", uri: (dir) => join(dir, "store") },
  ...(PG ? [{ kind: "pgvector", uri: () => `${PG}#qdc_robust_${process.pid}_${tables++}` }] : []),
];
if (!PG) console.error("# QDC_PG_URL is not set: the service's pgvector cases are skipped (LanceDB only)");
// the tables of this run dropped at the end (a server of the user's keeps no test leftovers)
if (PG)
  after(async () => {
    const c = new pg.Client({ connectionString: PG });
    await c.connect();
    try {
      const names = [
        ...Array.from({ length: tables }, (_, i) => `qdc_robust_${process.pid}_${i}`),
        `qdc_pgkill_${process.pid}`,
      ];
      for (const name of names) {
        await c.query(`DROP TABLE IF EXISTS ${name}`);
        for (const [table, column] of [
          ["qdc_stores", "name"],
          ["qdc_leases", "store"],
          ["qdc_claims", "store"],
        ])
          await c.query(`DELETE FROM ${table} WHERE ${column} = $1`, [name]).catch(() => {});
      }
    } finally {
      await c.end();
    }
  });

for (const { kind, uri } of stores)
  describe(`rollback under load (${kind})`, () => {
    it("switches back mid re-index with zero failed requests, reaching the newer model's rows through the map back", async () => {
      const dir = mkdtempSync(join(tmpdir(), "qdc-rollback-"));
      const oldDir = resolve(FIXTURES, "bert-tiny");
      const newDir = childOfBertTiny(dir);
      const [oldId, newId] = [hashModel(oldDir), hashModel(newDir)];
      const N = 200;
      const store = await openStore(uri(dir), { dim: 64, fields: {} });
      await loadCorpus(store, oldDir, wordCorpus(dir, N));
      const { service, reindexer, app, base } = await startService(store, oldDir, { token: TOKEN, batchSize: 16 });
      try {
        const none = await post(base, "/admin/rollback", {}, TOKEN);
        assert.equal(none.status, 409, JSON.stringify(none.body));
        assert.equal(none.body.error, "nothing_to_roll_back");
        const l = load(base);
        assert.equal((await post(base, "/admin/upgrade", { model: newDir }, TOKEN)).status, 200);
        assert.equal((await post(base, "/admin/reindex", { action: "start" }, TOKEN)).body.state, "running");
        await until("a few re-index batches", () => reindexer.status.done >= 64);
        const back = await post(base, "/admin/rollback", {}, TOKEN);
        assert.equal(back.status, 200, JSON.stringify(back.body));
        assert.deepEqual(back.body, { previous: newId, current: oldId });
        // the restored model reaches the rows the newer one re-indexed through the mean map back
        const s = await post(base, "/search", { texts: ["the ocean"], k: 10 });
        assert.equal(s.status, 200, JSON.stringify(s.body));
        assert.equal(s.body.model, oldId);
        const versions = s.body.versions as Record<string, { rows: number; compensation: string }>;
        if (versions[newId]) assert.equal(versions[newId].compensation, "mean");
        assert.equal(versions[oldId]?.compensation, "none");
        // the re-index turns around: every row back at the restored model, each once
        await until("the re-index back", () => reindexer.status.state === "done" && reindexer.status.target === oldId);
        const responses = await l.stop();
        assert.ok(responses.length > 20, `${responses.length} responses`);
        assert.deepEqual(
          responses.filter((r) => r.status !== 200).map((r) => r.body),
          [],
        );
        // every response is one model's, each document at most once in it
        for (const r of responses) {
          assert.ok(r.body.model === oldId || r.body.model === newId, String(r.body.model));
          for (const hits of r.body.results as { id: string }[][])
            assert.equal(new Set(hits.map((h) => h.id)).size, hits.length);
        }
        assert.deepEqual(await service.store.versions(), { [oldId]: N });
        // and a rollback of the rollback is the newer model again
        const redo = await post(base, "/admin/rollback", {}, TOKEN);
        assert.deepEqual(redo.body, { previous: oldId, current: newId });
      } finally {
        await app.close();
        await service.close();
      }
    });
  });

for (const { kind, uri } of stores)
  describe(`service under upgrades, bad models and a killed encoder (${kind})`, () => {
    const dir = mkdtempSync(join(tmpdir(), "qdc-robust-"));
    const oldDir = resolve(FIXTURES, "bert-tiny");
    const newDir = childOfBertTiny(dir);
    const newerDir = derivedModel(newDir, dir, "newer", { seed: 2 });
    // a model of the same shape with no lineage: no path of compensators to any stored version
    const strangerDir = derivedModel(oldDir, dir, "stranger", { seed: 3 });
    rmSync(join(strangerDir, "lineage.json"));
    const nanDir = derivedModel(newDir, dir, "nan", { nan: true });
    const N = 300;
    const storeUri = uri(dir);
    let service: SearchService;
    let reindexer: Reindexer;
    let app: FastifyInstance;
    let base = "";
    const events: Record<string, unknown>[] = [];

    before(async () => {
      const store = await openStore(storeUri, { dim: 64, fields: {} });
      await loadCorpus(store, oldDir, wordCorpus(dir, N));
      ({ service, reindexer, app, base } = await startService(store, oldDir, {
        token: TOKEN,
        log: (e) => events.push(e),
      }));
    });
    after(async () => {
      await app.close();
      await service.close();
    });

    it("takes a second upgrade during a re-index batch with zero failed requests", async () => {
      const l = load(base);
      await new Promise((r) => setTimeout(r, 200));
      const first = await post(base, "/admin/upgrade", { model: newDir }, TOKEN);
      assert.equal(first.status, 200, JSON.stringify(first.body));
      assert.equal((await post(base, "/admin/reindex", { action: "start" }, TOKEN)).body.state, "running");
      await until("a few batches", () => reindexer.status.done >= 48);
      // the re-indexer is embedding its next batch for newDir now
      const up = await post(base, "/admin/upgrade", { model: newerDir }, TOKEN);
      assert.equal(up.status, 200, JSON.stringify(up.body));
      // rows of new and newer are in the store: a model unrelated to them cannot reach them
      const stranger = await post(base, "/admin/upgrade", { model: strangerDir }, TOKEN);
      assert.equal(stranger.status, 400);
      assert.equal(stranger.body.error, "upgrade_refused");
      assert.match(String(stranger.body.message), /not in the lineage/);
      await until("the re-index", () => reindexer.status.state === "done");
      const responses = await l.stop();
      assert.ok(responses.length > 30, `${responses.length} responses`);
      assert.deepEqual(
        responses.filter((r) => r.status !== 200).map((r) => r.body),
        [],
      );
      assert.deepEqual(await service.store.versions(), { [hashModel(newerDir)]: N });
      const models = new Set(responses.map((r) => r.body.model));
      assert.ok(models.has(hashModel(newDir)) && models.has(hashModel(newerDir)), [...models].join(", "));
      assert.equal(reindexer.status.target, hashModel(newerDir));
    });

    it("refuses a model whose canary embeddings are not finite, and keeps serving", async () => {
      const r = await post(base, "/admin/upgrade", { model: nanDir }, TOKEN);
      assert.equal(r.status, 400);
      assert.match(String(r.body.message), /not fit to serve: its query embedding of canary text 0 is not finite/);
      const s = await post(base, "/search", { texts: ["the ocean"], k: 5 });
      assert.equal(s.status, 200);
      assert.equal(s.body.model, hashModel(newerDir));
      assert.equal((s.body.results as unknown[][])[0]?.length, 5);
      assert.equal(((await (await fetch(`${base}/health`)).json()) as { status: string }).status, "ok");
    });

    it("loses no request when the query encoder process is killed under load", async () => {
      const l = load(base);
      await until("some responses", () => l.responses.length > 10);
      const pid = service.encoderPids.queries;
      assert.ok(pid, "the query encoder runs as a process");
      process.kill(pid, "SIGKILL");
      await until(
        "a new encoder",
        () => service.encoderPids.queries !== undefined && service.encoderPids.queries !== pid,
      );
      const at = l.responses.length;
      await until("responses from the new encoder", () => l.responses.length > at + 20);
      const responses = await l.stop();
      assert.deepEqual(
        responses.filter((r) => r.status !== 200).map((r) => r.body),
        [],
      );
      assert.ok(events.some((e) => e.event === "encoder-restarted"));
    });

    it("restarts with the model recorded in the store, no model given", async () => {
      const store = await openStore(storeUri);
      const again = await SearchService.create({ store, encoder: "inline" });
      assert.equal(again.model.version, hashModel(newerDir));
      assert.equal(again.model.compensation, "mean");
      const r = await again.search(["the planet"], 3);
      assert.equal(r.model, hashModel(newerDir));
      assert.equal(r.results[0]?.length, 3);
      await again.close();
    });
  });

describe("5xx responses", () => {
  it("are logged with their cause, and the service keeps serving", async () => {
    const dir = mkdtempSync(join(tmpdir(), "qdc-5xx-"));
    const oldDir = resolve(FIXTURES, "bert-tiny");
    const inner = await LanceStore.open(join(dir, "store"), { dim: 64, fields: {} });
    await loadCorpus(inner, oldDir, wordCorpus(dir, 20));
    let failNext = 1;
    // the store's search fails once, as a database that dropped a query would
    const store = new Proxy(inner, {
      get(target, prop, receiver) {
        if (prop === "searchMany")
          return async (...args: Parameters<VectorStore["searchMany"]>) => {
            if (failNext-- > 0) throw new Error("disk I/O error: segment 7 unreadable");
            return target.searchMany(...args);
          };
        const v = Reflect.get(target, prop, receiver);
        return typeof v === "function" ? v.bind(target) : v;
      },
    }) as VectorStore;
    const logged: Record<string, unknown>[] = [];
    const service = await SearchService.create({ store, modelDir: oldDir, encoder: "inline" });
    const app = buildApp(service, new Reindexer(service), { onServerError: (e) => logged.push(e) });
    const base = await app.listen({ port: 0, host: "127.0.0.1" });
    const bad = await post(base, "/search", { texts: ["the river"] });
    assert.equal(bad.status, 500);
    assert.equal(bad.body.error, "internal");
    assert.equal(logged.length, 1);
    assert.equal(logged[0]?.url, "/search");
    assert.match(String(logged[0]?.message), /segment 7 unreadable/);
    assert.match(String(logged[0]?.stack), /Error: disk I\/O error/);
    const good = await post(base, "/search", { texts: ["the river"] });
    assert.equal(good.status, 200);
    // a NUL in a filter value is the client's error, not the server's
    const nul = await post(base, "/search", { texts: ["the river"], filter: { lang: "e\u0000n" } });
    assert.equal(nul.status, 400);
    assert.equal(logged.length, 1);
    await app.close();
    await service.close();
  });
});

/** Starts `qdc serve` and resolves with its base URL once it listens. */
function serve(args: string[]): Promise<{ child: ChildProcess; base: string; stderr: () => string }> {
  const child = spawn("node", [cli, "serve", "--port", "0", "--token", TOKEN, ...args], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  return new Promise((res, rej) => {
    child.stderr?.on("data", (d: Buffer) => {
      err += d.toString();
      const m = /qdc serve: (http:\/\/[^ ]+)/.exec(err);
      if (m) res({ child, base: m[1] as string, stderr: () => err });
    });
    child.on("exit", (code) => rej(new Error(`qdc serve exited (${code}): ${err}`)));
  });
}

for (const { kind, uri } of stores)
  describe(`qdc serve after kill -9 mid re-index (${kind})`, () => {
    it("comes back with the recorded model and finishes the re-index, no model flag", async () => {
      const dir = mkdtempSync(join(tmpdir(), "qdc-restart-"));
      const oldDir = resolve(FIXTURES, "bert-tiny");
      const newDir = childOfBertTiny(dir);
      const storeDir = uri(dir);
      const N = 400;
      const store = await openStore(storeDir, { dim: 64, fields: {} });
      await loadCorpus(store, oldDir, wordCorpus(dir, N));
      await store.close();

      const first = await serve([
        "--store",
        storeDir,
        "--model",
        oldDir,
        "--reindex-batch",
        "8",
        "--reindex-write",
        "8",
      ]);
      const up = await post(first.base, "/admin/upgrade", { model: newDir }, TOKEN);
      assert.equal(up.status, 200, JSON.stringify(up.body));
      await post(first.base, "/admin/reindex", { action: "start" }, TOKEN);
      await until("some re-indexed rows", async () => {
        const m = (await (await fetch(`${first.base}/models`)).json()) as { reindex: { done: number } };
        return m.reindex.done >= 40;
      });
      first.child.kill("SIGKILL");
      await new Promise((r) => first.child.once("exit", r));

      const mid = await openStore(storeDir);
      const partial = await mid.versions();
      await mid.close();
      assert.ok(
        (partial[hashModel(newDir)] ?? 0) >= 40 && (partial[hashModel(oldDir)] ?? 0) > 0,
        JSON.stringify(partial),
      );

      const second = await serve(["--store", storeDir]);
      try {
        assert.match(second.stderr(), /resuming the re-index/);
        const models = (await (await fetch(`${second.base}/models`)).json()) as { current: string };
        assert.equal(models.current, hashModel(newDir));
        // searches during the resumed re-index reach both versions
        const s = await post(second.base, "/search", { texts: ["the kernel"], k: 10 });
        assert.equal(s.status, 200);
        assert.equal(s.body.model, hashModel(newDir));
        await until("the resumed re-index", async () => {
          const st = (await post(second.base, "/admin/reindex", { action: "status" }, TOKEN)).body;
          assert.notEqual(st.state, "failed", JSON.stringify(st));
          return st.state === "done";
        });
      } finally {
        second.child.kill("SIGTERM");
        await new Promise((r) => second.child.once("exit", r));
      }
      const done = await openStore(storeDir);
      assert.deepEqual(await done.versions(), { [hashModel(newDir)]: N });
      assert.equal(await done.count(), N);
      await done.close();
    });
  });

/**
 * Several `qdc store reindex` workers on one store beside a serving service under load: pgvector
 * workers claim rows with leases (any number share the rows), LanceDB workers take their part of
 * the ids; one worker is killed (SIGKILL) while it works.
 */
for (const { kind, uri } of stores)
  describe(`re-index workers beside a service under load, one killed (${kind})`, () => {
    it("leave every row at the new version once, and no search fails", async () => {
      const dir = mkdtempSync(join(tmpdir(), "qdc-workers-"));
      const oldDir = resolve(FIXTURES, "bert-tiny");
      const newDir = childOfBertTiny(dir);
      const storeDir = uri(dir);
      const N = 600;
      const store = await openStore(storeDir, { dim: 64, fields: {} });
      await loadCorpus(store, oldDir, wordCorpus(dir, N));
      await store.close();
      const server = await serve(["--store", storeDir, "--model", oldDir]);
      const up = await post(server.base, "/admin/upgrade", { model: newDir }, TOKEN);
      assert.equal(up.status, 200, JSON.stringify(up.body));
      const searching = load(server.base, 3);
      const worker = (which: string[]) => {
        const child = spawn(
          "node",
          [
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
            "16",
            ...which,
          ],
          { stdio: ["ignore", "ignore", "pipe"] },
        );
        let err = "";
        child.stderr?.on("data", (d: Buffer) => {
          err += d.toString();
        });
        const exited = new Promise<{ code: number | null; signal: string | null; err: string }>((r) =>
          child.once("exit", (code, signal) => r({ code, signal, err })),
        );
        return { child, exited };
      };
      const args =
        kind === "pgvector"
          ? [
              ["--lease", "2"],
              ["--lease", "2"],
            ]
          : [
              ["--worker", "0/2"],
              ["--worker", "1/2"],
            ];
      const a = worker(args[0]!);
      const b = worker(args[1]!);
      const newVersion = hashModel(newDir);
      try {
        await until("some rows re-indexed", async () => {
          const s = await openStore(storeDir);
          const v = await s.versions();
          await s.close();
          return (v[newVersion] ?? 0) >= 64;
        });
        a.child.kill("SIGKILL");
        assert.equal((await a.exited).signal, "SIGKILL");
        // pgvector: b takes over a's claimed rows once they expire; LanceDB: a's part is its own, a
        // restarted a finishes it
        const again = kind === "lancedb" ? worker(args[0]!) : null;
        const rb = await b.exited;
        assert.equal(rb.code, 0, rb.err);
        if (again) {
          const ra = await again.exited;
          assert.equal(ra.code, 0, ra.err);
        }
      } finally {
        a.child.kill("SIGKILL");
        b.child.kill("SIGKILL");
      }
      const responses = await searching.stop();
      server.child.kill("SIGTERM");
      await new Promise((r) => server.child.once("exit", r));
      assert.ok(responses.length > 20, `${responses.length} searches`);
      const failed = responses.filter((r) => r.status !== 200);
      assert.equal(failed.length, 0, JSON.stringify(failed.slice(0, 3)));
      const done = await openStore(storeDir);
      try {
        assert.deepEqual(await done.versions(), { [newVersion]: N });
        assert.equal(await done.count(), N);
        const rows = await done.get(Array.from({ length: N }, (_, i) => `doc${i}`));
        assert.equal(rows.length, N);
        const m = EmbeddingModel.load(newDir);
        const want = m.encode([rows[0]!.text, rows[N - 1]!.text], { kind: "document" }).toArray();
        m.dispose();
        for (const [j, r] of [rows[0]!, rows[N - 1]!].entries()) {
          let diff = 0;
          for (let d = 0; d < 64; d++) diff = Math.max(diff, Math.abs(r.vector[d]! - want[j * 64 + d]!));
          assert.ok(diff < 1e-5, `${r.id} is embedded by the new model (max difference ${diff})`);
        }
      } finally {
        await done.close();
      }
      rmSync(dir, { recursive: true, force: true });
    });
  });

for (const { kind, uri } of stores)
  describe(`service replicas on one store (${kind})`, () => {
    it("follow an upgrade and a rollback made through either, run one re-index, and take it over from a killed replica", async () => {
      const dir = mkdtempSync(join(tmpdir(), "qdc-replicas-"));
      const oldDir = resolve(FIXTURES, "bert-tiny");
      const newDir = childOfBertTiny(dir);
      const [oldId, newId] = [hashModel(oldDir), hashModel(newDir)];
      const storeDir = uri(dir);
      const N = 400;
      const store = await openStore(storeDir, { dim: 64, fields: {} });
      await loadCorpus(store, oldDir, wordCorpus(dir, N));
      await store.close();
      const common = ["--store", storeDir, "--follow", "1", "--reindex-lease", "10"];
      const slow = ["--reindex-batch", "8", "--reindex-write", "8"];
      const a = await serve([...common, ...slow, "--model", oldDir]);
      // the second replica takes the store's recorded model
      const b = await serve([...common, ...slow]);
      const models = async (r: { base: string }) =>
        (await (await fetch(`${r.base}/models`)).json()) as {
          current: string;
          reindex: { state: string; done: number; runningOn?: string };
        };
      const follows = async (r: { base: string }, id: string, what: string) => {
        const t0 = Date.now();
        await until(what, async () => (await models(r)).current === id, 20000);
        console.error(`# ${what} after ${Date.now() - t0} ms`);
      };
      const [la, lb] = [load(a.base, 2), load(b.base, 2)];
      let aResponses: { status: number; body: Record<string, unknown> }[] = [];
      let bResponses: { status: number; body: Record<string, unknown> }[] = [];
      try {
        assert.equal((await models(b)).current, oldId);
        const up = await post(a.base, "/admin/upgrade", { model: newDir }, TOKEN);
        assert.equal(up.status, 200, JSON.stringify(up.body));
        await follows(b, newId, "b follows a's upgrade");
        const back = await post(b.base, "/admin/rollback", {}, TOKEN);
        assert.deepEqual(back.body, { previous: newId, current: oldId });
        await follows(a, oldId, "a follows b's rollback");
        assert.equal((await post(a.base, "/admin/upgrade", { model: newDir }, TOKEN)).status, 200);
        await follows(b, newId, "b follows a's second upgrade");
        // one re-index: a runs it, b refuses to start another and names a's process
        const started = await post(a.base, "/admin/reindex", { action: "start" }, TOKEN);
        assert.equal(started.body.state, "running", JSON.stringify(started.body));
        const refused = await post(b.base, "/admin/reindex", { action: "start" }, TOKEN);
        assert.equal(refused.status, 409, JSON.stringify(refused.body));
        assert.equal(refused.body.error, "reindex_elsewhere");
        assert.match(String(refused.body.message), new RegExp(`:${a.child.pid}:`));
        // b shows a's re-index: where it runs (to the admin) and how far it got (to anyone)
        await until("b shows where the re-index runs", async () => {
          const st = (await post(b.base, "/admin/reindex", { action: "status" }, TOKEN)).body;
          return String(st.runningOn).includes(`:${a.child.pid}:`);
        });
        await until("b shows a's progress", async () => (await models(b)).reindex.state === "running");
        assert.equal((await models(b)).reindex.runningOn, undefined, "no host or pid on the public route");
        await until("some rows re-indexed by a", async () => (await models(a)).reindex.done >= 40);
        aResponses = await la.stop();
        a.child.kill("SIGKILL");
        await new Promise((r) => a.child.once("exit", r));
        // b takes the re-index over (a's process is gone from this machine: without waiting for the
        // lease), going on from a's progress
        const doneByA = (await models(b)).reindex.done;
        await until(
          "b's re-index",
          async () => {
            const st = (await post(b.base, "/admin/reindex", { action: "status" }, TOKEN)).body;
            return (st.state === "running" && st.runningOn === undefined) || st.state === "done";
          },
          20000,
        );
        assert.ok((await models(b)).reindex.done >= doneByA, "progress does not go back on a takeover");
        await until(
          "the re-index finished by b",
          async () => {
            const st = (await models(b)).reindex;
            assert.notEqual(st.state, "failed", JSON.stringify(st));
            return st.state === "done";
          },
          120000,
        );
        assert.match(b.stderr(), /"event":"reindex-taken-over"/);
        assert.match(a.stderr(), /"event":"switched"/, "the replica that upgraded logs it");
        assert.match(a.stderr(), /"event":"reindex-started"/);
        assert.match(b.stderr(), /"event":"followed"/);
      } finally {
        await la.stop();
        bResponses = await lb.stop();
        a.child.kill("SIGKILL");
        b.child.kill("SIGTERM");
        await new Promise((r) => b.child.once("exit", r));
      }
      for (const [name, rs] of [
        ["a", aResponses],
        ["b", bResponses],
      ] as const) {
        assert.ok(rs.length > 20, `${name}: ${rs.length} searches`);
        const failed = rs.filter((r) => r.status !== 200);
        const causes =
          (name === "a" ? a : b)
            .stderr()
            .match(/.*"request-failed".*/g)
            ?.slice(0, 2) ?? [];
        assert.equal(failed.length, 0, `${name}: ${JSON.stringify(failed.slice(0, 3))} ${causes.join("\n")}`);
        assert.equal(rs.at(-1)?.body.model, newId, `${name} serves the new model at the end`);
      }
      const done = await openStore(storeDir);
      assert.deepEqual(await done.versions(), { [newId]: N });
      assert.equal(await done.count(), N);
      await done.close();
    });
  });

describe("rows another process writes", () => {
  it("are searched within a bounded time (LanceDB: a second handle on the store directory)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "qdc-visible-"));
    const oldDir = resolve(FIXTURES, "bert-tiny");
    const storeDir = join(dir, "store");
    const store = await LanceStore.open(storeDir, { dim: 64, fields: {} });
    await loadCorpus(store, oldDir, wordCorpus(dir, 30));
    const service = await SearchService.create({ store, modelDir: oldDir, encoder: "inline" });
    const other = await LanceStore.open(storeDir);
    const m = EmbeddingModel.load(oldDir);
    const text = "zebra zebra zebra crossing";
    const [vector] = tensorRows(m.encode([text], { kind: "document" }));
    m.dispose();
    await other.upsert([{ id: "written-elsewhere", text, version: hashModel(oldDir), vector: vector as Float32Array }]);
    await other.close();
    const t0 = Date.now();
    await until(
      "the other handle's row",
      async () => (await service.search([text], 1)).results[0]?.[0]?.id === "written-elsewhere",
      10000,
    );
    console.error(`# visible after ${Date.now() - t0} ms`);
    await service.close();
  });
});

describe("service on PostgreSQL whose connections are killed", { skip: PG ? false : "QDC_PG_URL is not set" }, () => {
  it("stays up, and the requests after it succeed", async () => {
    const dir = mkdtempSync(join(tmpdir(), "qdc-pgkill-"));
    const oldDir = resolve(FIXTURES, "bert-tiny");
    const store = await openStore(`${PG}#qdc_pgkill_${process.pid}`, { dim: 64, fields: {} });
    await loadCorpus(store, oldDir, wordCorpus(dir, 200));
    const service = await SearchService.create({ store, modelDir: oldDir, log: () => {} });
    const app = buildApp(service, new Reindexer(service), { onServerError: () => {} });
    const base = await app.listen({ port: 0, host: "127.0.0.1" });
    const l = load(base);
    await until("some responses", () => l.responses.length > 20);
    const admin = new pg.Client({ connectionString: PG });
    await admin.connect();
    for (let i = 0; i < 3; i++) {
      const killed = await admin.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
      );
      assert.ok(killed.rowCount && killed.rowCount > 0, "the service's connections were terminated");
      await new Promise((r) => setTimeout(r, 200));
    }
    await admin.end();
    const at = l.responses.length;
    await until("responses after the kills", () => l.responses.length > at + 40);
    const responses = await l.stop();
    assert.deepEqual(
      responses
        .slice(at)
        .filter((r) => r.status !== 200)
        .map((r) => r.body),
      [],
    );
    const health = await fetch(`${base}/health`);
    assert.equal(health.status, 200);
    await app.close();
    await service.close();
  });
});
