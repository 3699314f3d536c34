/**
 * Both vector stores through the same checks: LanceDB in a temporary directory, and PostgreSQL +
 * pgvector on the server at QDC_PG_URL when set, else PGlite served over the wire protocol by
 * pglite-socket (real SQL, real HNSW).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { PGlite } from "@electric-sql/pglite";
import { vector } from "@electric-sql/pglite-pgvector";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";
import { connect, Index, type Table } from "@lancedb/lancedb";
import pg from "pg";
import { Rng } from "../src/data/rng.js";
import {
  cleanupBefore,
  FilterError,
  isTransientScanError,
  LanceStore,
  PgVectorStore,
  partBounds,
  type StoreRow,
  type StoreSchema,
  tableName,
  type VectorStore,
  versionIndexName,
} from "../src/store/index.js";

const DIM = 16;
const SCHEMA: StoreSchema = { dim: DIM, fields: { lang: "string", year: "number" } };

function randomRows(n: number, version: string, seed: number): StoreRow[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, (_, i) => {
    const v = Float32Array.from({ length: DIM }, () => rng.next() - 0.5);
    const norm = Math.hypot(...v);
    return {
      id: `d${String(i).padStart(4, "0")}`,
      vector: v.map((x) => x / norm),
      version,
      text: `document ${i}`,
      fields: { lang: i % 2 ? "en" : "de", year: 2000 + (i % 5) },
    };
  });
}

/** Cosine top-k by a plain loop. */
const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let j = 0; j < a.length; j++) s += (a[j] as number) * (b[j] as number);
  return s;
};
function bruteForce(
  rows: StoreRow[],
  q: Float32Array,
  k: number,
  keep: (r: StoreRow) => boolean = () => true,
): string[] {
  const qn = Math.hypot(...q);
  return rows
    .filter(keep)
    .map((r) => ({ id: r.id, s: dot(r.vector, q) / qn }))
    .sort((a, b) => b.s - a.s)
    .slice(0, k)
    .map((x) => x.id);
}

function storeSuite(
  name: string,
  open: () => Promise<VectorStore>,
  reopen: () => Promise<VectorStore>,
  annRecall: number,
) {
  describe(name, () => {
    let store: VectorStore;
    const rows = randomRows(400, "v1", 1);
    const queries = randomRows(10, "q", 2).map((r) => r.vector as Float32Array);
    before(async () => {
      store = await open();
    });
    after(async () => {
      await store.close();
    });

    it("upserts, searches exactly and filters", async () => {
      for (let i = 0; i < rows.length; i += 100) await store.upsert(rows.slice(i, i + 100));
      assert.equal(await store.count(), 400);
      assert.deepEqual(await store.versions(), { v1: 400 });
      for (const q of queries) {
        const hits = await store.search(q, 10, { exact: true });
        assert.deepEqual(
          hits.map((h) => h.id),
          bruteForce(rows, q, 10),
        );
        const top = rows.find((r) => r.id === hits[0]?.id)!;
        assert.ok(Math.abs(hits[0]!.score - dot(top.vector, q) / Math.hypot(...q)) < 1e-4, "the score is the cosine");
        const en = await store.search(q, 5, { exact: true, filter: { lang: "en", year: 2001 } });
        assert.deepEqual(
          en.map((h) => h.id),
          bruteForce(rows, q, 5, (r) => r.fields?.lang === "en" && r.fields?.year === 2001),
        );
        assert.ok(en.every((h) => h.fields.lang === "en" && h.fields.year === 2001));
      }
      await assert.rejects(
        store.search(queries[0]!, 5, { filter: { colour: "red" } }),
        /unknown filter field 'colour' \(the store has lang, year\)/,
      );
      await assert.rejects(
        store.search(queries[0]!, 5, { filter: { year: "2001" } }),
        /filter field 'year' is a number/,
      );
      await assert.rejects(store.upsert([{ ...rows[0]!, vector: [1, 2] }]), /2 dimensions, the store holds 16/);
      await assert.rejects(
        store.upsert([rows[0]!, { ...rows[0]!, text: "again" }]),
        new RegExp(`row '${rows[0]!.id}' appears twice in one write: give each id once`),
      );
    });

    it("searches several vectors at once exactly as one at a time", async () => {
      for (const opts of [{ exact: true }, { exact: true, filter: { lang: "de" }, version: "v1" }]) {
        const many = await store.searchMany(queries, 7, opts);
        assert.equal(many.length, queries.length);
        for (const [i, q] of queries.entries()) {
          assert.deepEqual(
            many[i]!.map((h) => h.id),
            bruteForce(rows, q, 7, (r) => !opts.filter || r.fields?.lang === "de"),
          );
          const one = await store.search(q, 7, opts);
          assert.deepEqual(
            many[i],
            one.map((h, j) => ({ ...h, score: many[i]![j]!.score })),
          );
          assert.ok(one.every((h, j) => Math.abs(h.score - many[i]![j]!.score) < 1e-5));
        }
      }
      assert.deepEqual(await store.searchMany([], 5), []);
      assert.deepEqual(
        (await store.searchMany([queries[0]!], 3, { exact: true }))[0]!.map((h) => h.id),
        bruteForce(rows, queries[0]!, 3),
      );
    });

    it("records the service state and reads it back, also reopened", async () => {
      assert.equal(await store.readState(), null);
      const state = { model: "m2", compensation: "mean", reindex: { done: 10, total: 400 }, updatedAt: "2024-01-01" };
      await store.writeState({ model: "m1" });
      await store.writeState(state);
      assert.deepEqual(await store.readState(), state);
      const again = await reopen();
      assert.deepEqual(await again.readState(), state);
      await again.close();
    });

    it("replaces rows by id with a new version, iterates and deletes", async () => {
      const fresh = randomRows(150, "v2", 3);
      await store.upsert(fresh);
      assert.equal(await store.count(), 400, "an upsert replaces, never duplicates");
      assert.deepEqual(await store.versions(), { v1: 250, v2: 150 });
      const stale = await store.stale("v2", 1000);
      assert.equal(stale.length, 250);
      assert.ok(stale.every((r) => r.version === "v1" && r.text.startsWith("document")));
      const got = await store.get(["d0003", "nope"]);
      assert.equal(got.length, 1);
      assert.equal(got[0]!.version, "v2");
      assert.ok(Math.abs(got[0]!.vector[0]! - fresh[3]!.vector[0]!) < 1e-6);
      let seen = 0;
      for await (const batch of store.iterate("v2", 40)) {
        assert.ok(batch.length <= 40);
        seen += batch.length;
      }
      assert.equal(seen, 150);
      const q = queries[0]!;
      const onlyV2 = await store.search(q, 5, { exact: true, version: "v2" });
      assert.deepEqual(
        onlyV2.map((h) => h.id),
        bruteForce(fresh, q, 5),
      );
      await store.delete(["d0000", "d0001"]);
      assert.equal(await store.count(), 398);
      // reopened, the schema and rows are there
      const again = await reopen();
      assert.deepEqual(again.schema, SCHEMA);
      assert.equal(await again.count(), 398);
      await again.close();
    });

    it("retags one version's rows (qdc migrate), leaving the others and the vectors as they are", async () => {
      const before = await store.versions();
      const v2 = before.v2 ?? 0;
      assert.ok(v2 > 0, JSON.stringify(before));
      const [row] = await store.get(["d0003"]);
      await store.renameVersion("v2", "0123456789abcdef");
      const after = await store.versions();
      assert.equal(after["0123456789abcdef"], v2);
      assert.equal(after.v2, undefined);
      assert.equal(after.v1, before.v1);
      const [moved] = await store.get(["d0003"]);
      assert.equal(moved!.version, "0123456789abcdef");
      assert.deepEqual(Array.from(moved!.vector), Array.from(row!.vector));
      const hits = await store.search(queries[0]!, 3, { exact: true, version: "0123456789abcdef" });
      assert.ok(hits.length === 3 && hits.every((h) => h.version === "0123456789abcdef"));
      await store.renameVersion("0123456789abcdef", "v2");
      assert.deepEqual(await store.versions(), before);
    });

    it("splits the stale rows between re-index workers by MD5 ranges of the ids", async () => {
      const all = (await store.stale("v3", 10000)).map((r) => r.id).sort();
      assert.ok(all.length > 100, `${all.length} stale rows`);
      const seen: string[] = [];
      for (let i = 0; i < 3; i++) {
        const { lo, hi } = partBounds(i, 3);
        const mine = (await store.stale("v3", 10000, { part: { index: i, count: 3 } })).map((r) => r.id);
        assert.ok(mine.length > 0 && mine.length < all.length, `part ${i}: ${mine.length}`);
        for (const id of mine) {
          const h = createHash("md5").update(id).digest("hex");
          assert.ok(h >= lo && (hi === null || h < hi), `${id} (${h}) is in [${lo}, ${hi})`);
        }
        seen.push(...mine);
      }
      assert.deepEqual(seen.sort(), all, "the parts cover every stale row once");
    });

    it("keeps a named lease: one holder at a time, renewed, given up, expired, replaced; racing takers agree", async () => {
      const a = await store.lease("reindex", "a", 60);
      assert.equal(a.owner, "a");
      assert.ok(Math.abs(a.until - (Date.now() + 60_000)) < 10_000, `until ${a.until}`);
      assert.deepEqual(await store.lease("reindex", "b", 60), a, "held by a: b gets a's lease back");
      const renewed = await store.lease("reindex", "a", 120);
      assert.equal(renewed.owner, "a");
      assert.ok(renewed.until > a.until + 30_000, "a renewal moves the end");
      assert.equal((await store.lease("other", "b", 60)).owner, "b", "another name is another lease");
      await store.releaseLease("reindex", "b"); // not b's: a no-op
      assert.equal((await store.lease("reindex", "c", 60)).owner, "a");
      // a holder known to be gone is replaced at once; an expired lease is free
      assert.equal((await store.lease("reindex", "c", 0.3, { replace: "a" })).owner, "c");
      assert.equal((await store.lease("reindex", "d", 60, { replace: "a" })).owner, "c");
      await new Promise((r) => setTimeout(r, 450));
      assert.equal((await store.lease("reindex", "d", 60)).owner, "d");
      await store.releaseLease("reindex", "d");
      const takers = ["e", "f", "g", "h", "i", "j"];
      const raced = await Promise.all(takers.map((o) => store.lease("reindex", o, 60)));
      const holders = new Set(raced.map((l) => l.owner));
      assert.equal(holders.size, 1, `one holder for all: ${[...holders]}`);
      assert.ok(takers.includes([...holders][0]!));
      await store.releaseLease("reindex", [...holders][0]!);
      await store.releaseLease("other", "b");
      await assert.rejects(store.lease("reindex", "", 5), /a lease needs an owner/);
    });

    it("builds an ANN index whose top-10 recalls the exact one", async () => {
      await store.buildIndex();
      assert.ok(store.indexed);
      let found = 0;
      for (const q of queries) {
        const exact = (await store.search(q, 10, { exact: true })).map((h) => h.id);
        const ann = new Set((await store.search(q, 10)).map((h) => h.id));
        found += exact.filter((id) => ann.has(id)).length;
      }
      assert.ok(found / (10 * queries.length) >= annRecall, `recall@10 ${found / (10 * queries.length)}`);
      const many = await store.searchMany(queries, 10);
      for (const [i, q] of queries.entries())
        assert.deepEqual(
          many[i]!.map((h) => h.id),
          (await store.search(q, 10)).map((h) => h.id),
        );
    });

    it("optimizes after rewrites while searches go on, and finds every row afterwards", async () => {
      const rewritten = randomRows(400, "v3", 4).slice(100, 300);
      for (let i = 0; i < rewritten.length; i += 20) await store.upsert(rewritten.slice(i, i + 20));
      let stop = false;
      let searches = 0;
      const searching = (async () => {
        while (!stop) {
          const hits = await store.search(queries[searches % queries.length]!, 10);
          assert.equal(hits.length, 10);
          searches++;
        }
      })();
      try {
        await store.optimize();
      } finally {
        stop = true;
        await searching;
      }
      assert.ok(searches > 0);
      assert.equal(await store.count(), 398);
      assert.deepEqual(await store.versions(), { v1: 100, v2: 98, v3: 200 });
      const now = new Map((await store.get(rows.map((r) => r.id))).map((r) => [r.id, r]));
      const current = [...now.values()];
      for (const q of queries)
        assert.deepEqual(
          (await store.search(q, 10, { exact: true })).map((h) => h.id),
          bruteForce(current, q, 10),
        );
      // a rewritten row is its own nearest neighbour through the index too
      for (const r of rewritten.slice(0, 10))
        assert.equal((await store.search(r.vector as Float32Array, 1, { version: "v3" }))[0]?.id, r.id);
    });
  });
}

const lanceDir = join(mkdtempSync(join(tmpdir(), "qdc-lance-")), "store");
storeSuite(
  "LanceDB store",
  () => LanceStore.open(lanceDir, SCHEMA),
  () => LanceStore.open(lanceDir),
  0.7,
);

describe("re-index worker parts", () => {
  it("are equal MD5 ranges, the last open-ended", () => {
    assert.deepEqual(partBounds(0, 1), { lo: "00000000", hi: null });
    assert.deepEqual(partBounds(1, 4), { lo: "40000000", hi: "80000000" });
    assert.deepEqual(partBounds(2, 3), { lo: "aaaaaaaa", hi: null });
    assert.throws(() => partBounds(2, 2), /0 ≤ index < count, got 2\/2/);
    assert.throws(() => partBounds(0, 0), /got 0\/0/);
  });
  it("LanceDB takes none of pgvector's claims", async () => {
    const store = await LanceStore.open(join(mkdtempSync(join(tmpdir(), "qdc-claim-")), "s"), SCHEMA);
    try {
      await assert.rejects(
        store.stale("v", 5, { claim: { owner: "w", seconds: 5 } }),
        /takes no claims: give each re-index worker its part/,
      );
    } finally {
      await store.close();
    }
  });
});

describe("LanceDB specifics", () => {
  const fresh = () => join(mkdtempSync(join(tmpdir(), "qdc-lance-")), "store");
  /** Polls `check` until it holds, for at most `ms`. */
  async function within(ms: number, check: () => Promise<boolean>): Promise<number> {
    const t0 = Date.now();
    while (!(await check())) {
      if (Date.now() - t0 > ms) assert.fail(`not seen within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return Date.now() - t0;
  }

  it("sees rows and versions another store instance writes within refreshSeconds", async () => {
    const dir = fresh();
    const a = await LanceStore.open(dir, SCHEMA, { refreshSeconds: 0.5 });
    const b = await LanceStore.open(dir, undefined, { refreshSeconds: 0.5 });
    try {
      const v1 = randomRows(300, "v1", 5);
      await a.upsert(v1);
      await within(2000, async () => (await b.count()) === 300);
      const v2 = randomRows(50, "v2", 6).map((r) => ({ ...r, id: `b${r.id}` }));
      await b.upsert(v2);
      const q = v2[7]!.vector as Float32Array;
      await within(2000, async () => (await a.search(q, 1))[0]?.id === "bd0007");
      await within(2000, async () => (await a.count()) === 350);
      assert.deepEqual(await a.versions(), { v1: 300, v2: 50 });
      // a's next write keeps the version b recorded
      await a.upsert([{ ...v1[0]!, version: "v3" }]);
      const c = await LanceStore.open(dir);
      assert.deepEqual(await c.versions(), { v1: 299, v2: 50, v3: 1 });
      await c.close();
      // an index b builds is used by a
      await b.buildIndex();
      await within(2000, async () => (await a.search(q, 1)) && a.indexed);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("keeps each version's rows in its own table with a btree on id, also through optimize", async () => {
    const dir = fresh();
    const store = await LanceStore.open(dir, SCHEMA);
    try {
      await store.upsert(randomRows(300, "v1", 7));
      await store.upsert(randomRows(300, "v2", 8).slice(0, 100));
      const byColumn = async (v: string) =>
        Object.fromEntries(
          ((await (await store.tableOf(v))?.listIndices()) ?? []).map((i) => [i.columns[0], i.indexType]),
        );
      // the table names come from the versions (another process finds the same table)
      const conn = await connect(dir);
      assert.deepEqual((await conn.tableNames()).sort(), [tableName("v1"), tableName("v2")].sort());
      assert.equal(await (await conn.openTable(tableName("v1"))).countRows(), 200, "the rewritten ids left v1's table");
      assert.deepEqual(await byColumn("v1"), { id: "BTree" });
      await store.buildIndex();
      await store.optimize();
      assert.deepEqual(await byColumn("v1"), { id: "BTree", vector: "IvfHnswSq" });
      assert.deepEqual(await byColumn("v2"), { id: "BTree", vector: "IvfHnswSq" });
      // a handle opened afresh knows the store's index at once
      const again = await LanceStore.open(dir);
      assert.ok(again.indexed);
      await again.close();
      assert.deepEqual(await store.versions(), { v1: 200, v2: 100 });
      // every row rewritten (a re-index): the new version's table gets its own index at optimize
      await store.upsert(randomRows(300, "v3", 11));
      await store.optimize();
      const after = await (await store.tableOf("v3"))?.listIndices();
      assert.deepEqual(after?.map((i) => [i.columns[0], i.numIndexedRows, i.numUnindexedRows]).sort(), [
        ["id", 300, 0],
        ["vector", 300, 0],
      ]);
      assert.deepEqual(await store.versions(), { v3: 300 });
      assert.equal(await store.count(), 300);
    } finally {
      await store.close();
    }
  });

  it("finds a version's table the versions file lost (two processes recording versions at once)", async () => {
    const dir = fresh();
    const a = await LanceStore.open(dir, SCHEMA, { refreshSeconds: 0 });
    try {
      await a.upsert(randomRows(30, "v1", 61));
      await a.upsert(randomRows(30, "v2", 62).slice(0, 10));
      // the file as another process's concurrent rewrite would leave it: v2 missing
      writeFileSync(join(dir, "qdc-versions.json"), JSON.stringify(["v1"]));
      const b = await LanceStore.open(dir);
      assert.deepEqual(await b.versions(), { v1: 20, v2: 10 });
      await b.close();
      assert.deepEqual(JSON.parse(readFileSync(join(dir, "qdc-versions.json"), "utf8")).sort(), ["v1", "v2"]);
    } finally {
      await a.close();
    }
  });

  it("reads an id found in two tables (an upsert's two commits apart) as the newer version's row, once", async () => {
    const store = await LanceStore.open(fresh(), SCHEMA);
    try {
      const rows = randomRows(40, "v1", 41);
      await store.upsert(rows);
      const renewed = randomRows(40, "v2", 42).map((r, i) => ({ ...r, id: rows[i]!.id }));
      await store.upsert(renewed.slice(0, 10));
      // a crash after the write into v2's table, before the delete from v1's: d0003 in both
      const v1 = (await store.tableOf("v1")) as Table;
      await v1.add([{ id: "d0003", text: "document 3", vector: Array.from(rows[3]!.vector), lang: "en", year: 2003 }]);
      const [got] = await store.get(["d0003"]);
      assert.equal(got?.version, "v2");
      const q = rows[3]!.vector as Float32Array;
      const hits = await store.search(q, 40, { exact: true });
      assert.equal(hits.filter((h) => h.id === "d0003").length, 1);
      assert.equal(hits.find((h) => h.id === "d0003")?.version, "v2");
      // a re-index to v2 does not redo it: the v1 copy is a leftover, deleted when stale rows are read
      const stale = await store.stale("v2", 100);
      assert.equal(stale.length, 30);
      assert.ok(!stale.some((r) => r.id === "d0003"));
      assert.equal(await v1.countRows(), 30);
      await store.upsert(stale.map((r) => ({ ...r, version: "v2" })));
      assert.deepEqual(await store.versions(), { v2: 40 });
      assert.equal(await v1.countRows(), 0);
      // an id left in two older tables is stale once, as the newer table's row
      await store.upsert([{ ...rows[5]!, version: "v3", text: "newer text" }]);
      await v1.add([{ id: "d0005", text: "older text", vector: Array.from(rows[5]!.vector), lang: "de", year: 2000 }]);
      const twice = (await store.stale("v4", 100)).filter((r) => r.id === "d0005");
      assert.deepEqual(
        twice.map((r) => [r.version, r.text]),
        [["v3", "newer text"]],
      );
      // upserts of one id at two versions at once leave it in one table
      await Promise.all([
        store.upsert([{ ...rows[7]!, version: "v5" }]),
        store.upsert([{ ...rows[7]!, version: "v6" }]),
      ]);
      let copies = 0;
      for (const v of ["v1", "v2", "v3", "v5", "v6"])
        copies += (await (await store.tableOf(v))?.countRows("id = 'd0007'")) ?? 0;
      assert.equal(copies, 1);
    } finally {
      await store.close();
    }
  });

  it("splits a store of one table with a version column (an earlier release) into per-version tables", async () => {
    const dir = fresh();
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "qdc-store.json"), `${JSON.stringify(SCHEMA)}\n`);
    const rows = [...randomRows(300, "v1", 51).slice(0, 200), ...randomRows(300, "v2", 52).slice(200)];
    const conn = await connect(dir);
    const legacy = await conn.createTable(
      "vectors",
      rows.map((r) => ({ id: r.id, version: r.version, text: r.text, vector: Array.from(r.vector), ...r.fields })),
    );
    await legacy.createIndex("vector", { config: Index.hnswSq({ numPartitions: 1, distanceType: "cosine" }) });
    const store = await LanceStore.open(dir);
    try {
      assert.deepEqual(await store.versions(), { v1: 200, v2: 100 });
      assert.ok(!(await conn.tableNames()).includes("vectors"));
      assert.ok(store.indexed, "the old table's ANN index is built again on the new tables");
      const [r] = await store.get(["d0250"]);
      assert.deepEqual([r?.version, r?.text, r?.fields], ["v2", "document 250", { lang: "de", year: 2000 }]);
      assert.deepEqual(Array.from(r!.vector), Array.from(rows[250]!.vector));
      const q = rows[10]!.vector as Float32Array;
      assert.deepEqual(
        (await store.search(q, 5, { exact: true, version: "v1" })).map((h) => h.id),
        bruteForce(rows, q, 5, (x) => x.version === "v1"),
      );
    } finally {
      await store.close();
    }
  });

  it("deletes only table versions superseded keepVersionsMs ago: a reader on the latest version survives a compaction", async () => {
    // the bound: the start of the latest optimize that finished keepMs ago
    assert.equal(cleanupBefore([], 1000, 60), null);
    assert.equal(
      cleanupBefore(
        [
          { startedAt: 100, finishedAt: 200 },
          { startedAt: 300, finishedAt: 950 },
        ],
        1000,
        60,
      ),
      100,
    );
    assert.equal(cleanupBefore([{ startedAt: 300, finishedAt: 940 }], 1000, 60), 300);

    const dir = fresh();
    const writer = await LanceStore.open(dir, SCHEMA, { keepVersionsMs: 0, maintenance: "inline" });
    try {
      await writer.upsert(randomRows(300, "v1", 31));
      await writer.optimize();
      // small writes (fragments a compaction rewrites), then a reader that does not refresh for a while
      const extra = randomRows(40, "v2", 32).map((r, i) => ({ ...r, id: `extra-${i}` }));
      for (let i = 0; i < 40; i += 10) await writer.upsert(extra.slice(i, i + 10));
      const reader = await LanceStore.open(dir, undefined, { refreshSeconds: 3600 });
      try {
        const q = extra[0]?.vector as Float32Array;
        assert.equal((await reader.search(q, 1))[0]?.id, "extra-0");
        // versions created an instant ago but before the previous optimize: with a cleanup by
        // creation age (keep 0 ms) the reader's version — the latest one a moment ago — would lose its files
        await writer.optimize();
        assert.equal((await reader.search(q, 1))[0]?.id, "extra-0");
        assert.equal((await reader.get(extra.map((r) => r.id))).length, 40);
      } finally {
        await reader.close();
      }
    } finally {
      await writer.close();
    }
  });

  /** A store that builds its index at 300 rows and retrains it past 2 segments, and its segment count. */
  const segmentedStore = async () => {
    const store = await LanceStore.open(fresh(), SCHEMA, { annThreshold: 300, maxIndexSegments: 2 });
    const stats = async (version = "v1") => (await store.tableOf(version))?.indexStats("vector_idx");
    return { store, stats, segments: async (version = "v1") => (await stats(version))?.numIndices };
  };

  it("trains the vector index again once optimize has left it in more than maxIndexSegments segments", async () => {
    const { store, stats, segments } = await segmentedStore();
    try {
      await store.upsert(randomRows(300, "v1", 21));
      assert.ok(store.indexed);
      assert.equal(await segments(), 1);
      // each optimize indexes the rows written since as one more segment (a few rows each: the
      // index is not trained again for them)
      const extra = randomRows(400, "v1", 22).map((r, i) => ({ ...r, id: `extra-${i}` }));
      await store.upsert(extra.slice(0, 20));
      await store.optimize();
      assert.equal(await segments(), 2);
      await store.upsert(extra.slice(20, 40));
      await store.optimize();
      // a third segment is past the limit: one again, over all 340 rows
      assert.equal(await segments(), 1);
      const after = await stats();
      assert.deepEqual([after?.numIndexedRows, after?.numUnindexedRows], [340, 0]);
      for (const r of extra.slice(0, 5))
        assert.equal((await store.search(r.vector as Float32Array, 1, { version: "v1" }))[0]?.id, r.id);
    } finally {
      await store.close();
    }
  });

  it("trains an index left in segments as one graph at the end of a long rewrite (optimize final)", async () => {
    const store = await LanceStore.open(fresh(), SCHEMA, { annThreshold: 300, maxIndexSegments: 4 });
    const segments = async () => (await (await store.tableOf("v1"))?.indexStats("vector_idx"))?.numIndices;
    try {
      await store.upsert(randomRows(300, "v1", 25));
      const extra = randomRows(40, "v1", 26).map((r, i) => ({ ...r, id: `extra-${i}` }));
      await store.upsert(extra.slice(0, 20));
      await store.optimize();
      assert.equal(await segments(), 2, "a segment for the rows written since");
      await store.upsert(extra.slice(20));
      await store.optimize({ final: true });
      assert.equal(await segments(), 1);
      const stats = await (await store.tableOf("v1"))?.indexStats("vector_idx");
      assert.deepEqual([stats?.numIndexedRows, stats?.numUnindexedRows], [340, 0]);
    } finally {
      await store.close();
    }
  });

  it("gives the table a re-index fills its own index at optimize, searched apart from the old version's", async () => {
    const { store, stats, segments } = await segmentedStore();
    try {
      const rows = randomRows(300, "v1", 23);
      await store.upsert(rows);
      assert.equal(await segments("v1"), 1);
      // rows re-embedded by "v2" in three rounds, each optimised
      const renewed = randomRows(300, "v2", 24).map((r, i) => ({ ...r, id: rows[i]!.id }));
      await store.upsert(renewed.slice(0, 20));
      assert.equal(await stats("v2"), undefined, "not built beside the searches");
      await store.optimize();
      assert.equal(await segments("v2"), 1, "built by the optimize");
      for (const part of [renewed.slice(20, 40), renewed.slice(40, 60)]) {
        await store.upsert(part);
        await store.optimize();
      }
      const v2 = await stats("v2");
      assert.deepEqual([v2?.numIndexedRows, v2?.numUnindexedRows], [60, 0]);
      assert.equal((await stats("v1"))?.numIndexedRows, 240);
      for (const r of renewed.slice(0, 5))
        assert.equal((await store.search(r.vector as Float32Array, 1, { version: "v2" }))[0]?.id, r.id);
      for (const r of rows.slice(100, 105))
        assert.equal((await store.search(r.vector as Float32Array, 1, { version: "v1" }))[0]?.id, r.id);
      await store.upsert(renewed.slice(60));
      await store.optimize();
      assert.deepEqual(await store.versions(), { v2: 300 });
      for (const r of renewed.slice(100, 105))
        assert.equal((await store.search(r.vector as Float32Array, 1))[0]?.id, r.id);
    } finally {
      await store.close();
    }
  });

  for (const index of ["ivf-pq", "ivf-flat"] as const)
    it(`searches through an ${index} index, with rows written after it`, async () => {
      const store = await LanceStore.open(fresh(), SCHEMA, { index, annThreshold: 400 });
      try {
        const rows = randomRows(500, "v1", 9);
        await store.upsert(rows.slice(0, 400));
        assert.ok(store.indexed, "built at annThreshold");
        await store.upsert(rows.slice(400));
        const queries = randomRows(10, "q", 10).map((r) => r.vector as Float32Array);
        let found = 0;
        for (const q of queries) {
          const ann = new Set((await store.search(q, 10)).map((h) => h.id));
          found += bruteForce(rows, q, 10).filter((id) => ann.has(id)).length;
        }
        assert.ok(found / 100 >= 0.7, `recall@10 ${found / 100}`);
        assert.equal((await store.search(rows[450]!.vector as Float32Array, 1))[0]?.id, "d0450");
      } finally {
        await store.close();
      }
    });
});

/**
 * pgvector on a real server when QDC_PG_URL is set (fresh table names per run, dropped at the
 * end), else PGlite served over the wire protocol by pglite-socket.
 */
const PG = process.env.QDC_PG_URL;
const run = `${process.pid}_${Date.now().toString(36)}`;
const pgTables: string[] = [];
const pgTable = (name: string) => {
  const t = `qdc_t_${name}_${run}`;
  pgTables.push(t);
  return t;
};
async function dropTables(url: string) {
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    for (const t of pgTables) {
      await admin.query(`DROP TABLE IF EXISTS ${t}`);
      await admin.query("DELETE FROM qdc_stores WHERE name = $1", [t]);
    }
  } finally {
    await admin.end();
  }
}

describe(`PostgreSQL + pgvector over the wire (${PG ? "QDC_PG_URL" : "PGlite + pglite-socket"})`, () => {
  let db: PGlite | undefined;
  let server: PGLiteSocketServer | undefined;
  let url = PG ?? "";
  const docs = pgTable("docs");
  before(async () => {
    if (PG) return;
    db = await PGlite.create({ extensions: { vector } });
    server = new PGLiteSocketServer({ db, port: 0, host: "127.0.0.1", maxConnections: 16 });
    await server.start();
    url = `postgres://postgres@127.0.0.1:${(server as unknown as { port: number }).port}/postgres`;
  });
  after(async () => {
    if (PG) await dropTables(PG);
    await server?.stop();
    await db?.close();
  });
  storeSuite(
    "pgvector store",
    () => PgVectorStore.open(url, docs, SCHEMA),
    () => PgVectorStore.open(url, docs),
    0.9,
  );
  it("tells an HNSW scan that met a vacuumed element (retried) from other errors (passed on)", () => {
    assert.ok(isTransientScanError(new Error("cannot load deleted element")));
    assert.ok(!isTransientScanError(new Error('relation "x" does not exist')));
    assert.ok(!isTransientScanError("cannot load deleted element"));
  });
  it("claims stale rows for re-index workers: disjoint between owners, taken over once expired, given up", async () => {
    const table = pgTable("claims");
    const store = await PgVectorStore.open(url, table, SCHEMA);
    try {
      await store.upsert(randomRows(60, "v1", 27));
      const a = await store.stale("v2", 20, { claim: { owner: "a", seconds: 60 } });
      const b = await store.stale("v2", 100, { claim: { owner: "b", seconds: 0.3 } });
      assert.equal(a.length, 20);
      assert.equal(b.length, 40);
      assert.deepEqual(
        [...a, ...b].map((r) => r.id).sort(),
        randomRows(60, "v1", 27).map((r) => r.id),
      );
      assert.ok(a.every((r) => r.version === "v1" && r.text.startsWith("document")));
      // a renewed claim outlives its first lease
      await store.renewClaims(
        "b",
        b.slice(0, 3).map((r) => r.id),
        60,
      );
      // everything is claimed: c gets nothing until b's claims expire, then b's unrenewed rows
      assert.deepEqual(await store.stale("v2", 100, { claim: { owner: "c", seconds: 60 } }), []);
      await new Promise((r) => setTimeout(r, 400));
      const c = await store.stale("v2", 100, { claim: { owner: "c", seconds: 60 } });
      assert.deepEqual(
        c.map((r) => r.id),
        b.slice(3).map((r) => r.id),
      );
      // a worker's part and claims together; a given-up claim is free to take
      await store.releaseClaims(
        "a",
        a.slice(0, 5).map((r) => r.id),
      );
      const d = await store.stale("v2", 100, { claim: { owner: "d", seconds: 60 }, part: { index: 0, count: 1 } });
      assert.deepEqual(
        d.map((r) => r.id),
        a.slice(0, 5).map((r) => r.id),
      );
      // rows written at the target version are no longer stale, claimed or not
      await store.upsert(d.map((r) => ({ ...r, version: "v2" })));
      assert.equal((await store.stale("v2", 100)).length, 55);
      await assert.rejects(store.stale("v2", 5, { claim: { owner: "", seconds: 5 } }), /a claim needs an owner/);
    } finally {
      await store.close();
    }
  });

  it("refuses a different schema for an existing table", async () => {
    await assert.rejects(PgVectorStore.open(url, docs, { dim: 8, fields: {} }), /exists with schema/);
  });
  it("keeps an HNSW index per version: built before a new version's first row, searched per version, dropped once empty", async () => {
    const table = pgTable("perversion");
    const store = await PgVectorStore.open(url, table, SCHEMA);
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    const indexes = async () =>
      Object.fromEntries(
        (
          await admin.query("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1 AND indexname <> $2", [
            table,
            `${table}_pkey`,
          ])
        ).rows.map((r: { indexname: string; indexdef: string }) => [r.indexname, r.indexdef]),
      );
    const q = randomRows(3, "q", 39).map((r) => r.vector as Float32Array);
    try {
      const v1 = randomRows(240, "v1", 31);
      await store.upsert(v1);
      assert.equal(store.indexed, false);
      await store.buildIndex();
      assert.ok(store.indexed);
      const i1 = versionIndexName(table, "v1");
      assert.deepEqual(Object.keys(await indexes()).sort(), [i1, `${table}_version`].sort());
      assert.match((await indexes())[i1]!, /USING hnsw .*WHERE \(version = 'v1'::text\)/);
      // a re-index's first write of v2 builds v2's graph; the planner can walk each version's own
      const v2 = randomRows(240, "v2", 32);
      await store.upsert(v2.slice(0, 120));
      const i2 = versionIndexName(table, "v2");
      assert.ok((await indexes())[i2], JSON.stringify(await indexes()));
      // (on 240 rows the planner would rather sort a version's rows: told not to, to see which index it can use)
      await admin.query("SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off");
      for (const [v, name] of [
        ["v1", i1],
        ["v2", i2],
      ] as const) {
        const plan = await admin.query(
          `EXPLAIN SELECT id FROM ${table} WHERE version = '${v}' ORDER BY embedding <=> '[${Array.from(q[0]!).join(",")}]' LIMIT 5`,
        );
        assert.match(plan.rows.map((r: Record<string, string>) => r["QUERY PLAN"]).join("\n"), new RegExp(name));
      }
      // searches of one version and of both (the union of each graph's top-k) as exact ones find
      const current = [...v2.slice(0, 120), ...v1.slice(120)];
      for (const x of q) {
        assert.deepEqual(
          (await store.search(x, 8, { version: "v2" })).map((h) => h.id),
          bruteForce(current, x, 8, (r) => r.version === "v2"),
        );
        assert.deepEqual(
          (await store.search(x, 8)).map((h) => h.id),
          bruteForce(current, x, 8),
        );
        assert.deepEqual(
          (await store.searchMany([x], 8, { filter: { lang: "en" } }))[0]!.map((h) => h.id),
          bruteForce(current, x, 8, (r) => r.fields?.lang === "en"),
        );
      }
      // v1 re-indexed completely: its graph goes at the next optimize
      await store.upsert(v2.slice(120));
      await store.optimize();
      assert.deepEqual(Object.keys(await indexes()).sort(), [i2, `${table}_version`].sort());
      // a rename moves the rows into the new name's graph
      await store.renameVersion("v2", "v3");
      assert.deepEqual(Object.keys(await indexes()).sort(), [versionIndexName(table, "v3"), `${table}_version`].sort());
      assert.deepEqual(
        (await store.search(q[1]!, 5)).map((h) => h.id),
        bruteForce(v2, q[1]!, 5),
      );
    } finally {
      await admin.end();
      await store.close();
    }
  });

  it("keeps the planner's statistics of the version column current as a re-index writes a new version", async () => {
    const table = pgTable("stats");
    const store = await PgVectorStore.open(url, table, SCHEMA);
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    // the rows the planner expects of a version (what its statistics say, not a count)
    const expected = async (v: string) => {
      const plan = await admin.query(`EXPLAIN SELECT id FROM ${table} WHERE version = '${v}'`);
      return Number(/rows=(\d+)/.exec(plan.rows[0]["QUERY PLAN"])![1]);
    };
    try {
      // no autovacuum on this table: only the store's own ANALYZE can tell the planner of v2
      await admin.query(`ALTER TABLE ${table} SET (autovacuum_enabled = false)`);
      await store.upsert(randomRows(600, "v1", 51));
      await store.buildIndex();
      await admin.query(`ANALYZE ${table}`);
      assert.ok((await expected("v2")) <= 2, "before any v2 row the planner expects none");
      const v2 = randomRows(600, "v2", 52);
      // a re-index's first write of v2: analyzed at once
      await store.upsert(v2.slice(0, 100));
      assert.ok(
        Math.abs((await expected("v2")) - 100) <= 20,
        `expected ${await expected("v2")} rows of v2, 100 written`,
      );
      // (again after every 4,096 rows written)
      await store.upsert(v2.slice(100, 400));
      // a rename: the new name's rows known at once
      await store.renameVersion("v1", "v3");
      assert.ok(Math.abs((await expected("v3")) - 200) <= 40, `expected ${await expected("v3")} rows of v3, 200 there`);
    } finally {
      await admin.end();
      await store.close();
    }
  });

  it("searches a store of earlier releases (one HNSW index over all rows) and replaces that index per version", async () => {
    const table = pgTable("legacyhnsw");
    const first = await PgVectorStore.open(url, table, SCHEMA);
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    const names = async () =>
      (await admin.query("SELECT indexname FROM pg_indexes WHERE tablename = $1", [table])).rows
        .map((r: { indexname: string }) => r.indexname)
        .sort();
    try {
      const v1 = randomRows(200, "v1", 33);
      await first.upsert(v1);
      await first.close();
      await admin.query(
        `CREATE INDEX ${table}_hnsw ON ${table} USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)`,
      );
      const store = await PgVectorStore.open(url, table);
      try {
        assert.ok(store.indexed, "the index of an earlier release counts");
        const q = randomRows(1, "q", 34)[0]!.vector as Float32Array;
        assert.deepEqual(
          (await store.search(q, 5)).map((h) => h.id),
          bruteForce(v1, q, 5),
        );
        const v2 = randomRows(200, "v2", 35);
        // a new version's first write builds its own index; the index over all rows serves v1 still
        await store.upsert(v2.slice(0, 50));
        assert.deepEqual(
          await names(),
          [`${table}_hnsw`, `${table}_pkey`, `${table}_version`, versionIndexName(table, "v2")].sort(),
        );
        assert.deepEqual(
          (await store.search(q, 5, { version: "v1" })).map((h) => h.id),
          bruteForce(v1.slice(50), q, 5),
        );
        // optimize gives v1 its own and drops the one over all rows
        await store.optimize();
        assert.deepEqual(
          await names(),
          [`${table}_pkey`, `${table}_version`, versionIndexName(table, "v1"), versionIndexName(table, "v2")].sort(),
        );
        await store.upsert(v2.slice(50));
        await store.optimize();
        assert.deepEqual(await names(), [versionIndexName(table, "v2"), `${table}_pkey`, `${table}_version`].sort());
        assert.deepEqual(
          (await store.search(q, 5)).map((h) => h.id),
          bruteForce(v2, q, 5),
        );
      } finally {
        await store.close();
      }
    } finally {
      await admin.end();
    }
  });

  it("rejects a NUL character in a filter value", async () => {
    const store = await PgVectorStore.open(url, docs);
    try {
      await assert.rejects(
        store.search(new Float32Array(DIM).fill(0.25), 3, { filter: { lang: "e\u0000n" } }),
        FilterError,
      );
      await assert.rejects(
        store.searchMany([new Float32Array(DIM).fill(0.25)], 3, { filter: { lang: "\u0000" } }),
        FilterError,
      );
    } finally {
      await store.close();
    }
  });
});

describe("pgvector on a real server", {
  skip: PG ? false : "QDC_PG_URL is not set (PGlite cannot kill connections or lock)",
}, () => {
  const url = PG ?? "";
  after(async () => {
    if (PG) await dropTables(PG);
  });
  const admin = async <T>(run: (c: pg.Client) => Promise<T>): Promise<T> => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      return await run(c);
    } finally {
      await c.end();
    }
  };

  it("searches on after its connections are terminated", async () => {
    const app = `qdc_kill_${run}`;
    const store = await PgVectorStore.open({ connectionString: url, application_name: app }, pgTable("kill"), SCHEMA);
    try {
      const rows = randomRows(200, "v1", 21);
      await store.upsert(rows);
      const q = rows[5]!.vector as Float32Array;
      await Promise.all(Array.from({ length: 4 }, () => store.search(q, 3)));
      for (const pause of [200, 0]) {
        const killed = await admin((c) =>
          c.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", [app]),
        );
        assert.ok((killed.rowCount ?? 0) > 0, "the store's connections were terminated");
        await new Promise((r) => setTimeout(r, pause));
        const hits = await Promise.all(Array.from({ length: 4 }, () => store.search(q, 3)));
        assert.ok(hits.every((h) => h[0]?.id === "d0005"));
        assert.equal(await store.count(), 200);
      }
    } finally {
      await store.close();
    }
  });

  it("fails a search blocked by a lock within the statement timeout, and searches once it is released", async () => {
    const table = pgTable("lock");
    const store = await PgVectorStore.open(url, table, SCHEMA, { statementTimeoutMs: 500 });
    const locker = new pg.Client({ connectionString: url });
    await locker.connect();
    try {
      const rows = randomRows(50, "v1", 22);
      await store.upsert(rows);
      await locker.query(`BEGIN; LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      const t0 = Date.now();
      await assert.rejects(
        store.search(rows[0]!.vector as Float32Array, 3),
        /statement timeout.*statementTimeoutMs 500/,
      );
      const waited = Date.now() - t0;
      assert.ok(waited >= 400 && waited < 3000, `failed after ${waited} ms`);
      await locker.query("COMMIT");
      assert.equal((await store.search(rows[0]!.vector as Float32Array, 3))[0]?.id, "d0000");
    } finally {
      await locker.end();
      await store.close();
    }
  });

  it("builds a new version's HNSW index once when two processes write that version at the same moment", async () => {
    const table = pgTable("race");
    const a = await PgVectorStore.open(url, table, SCHEMA);
    const b = await PgVectorStore.open(url, table);
    try {
      await a.upsert(randomRows(300, "v1", 23));
      await a.buildIndex();
      const v2 = randomRows(300, "v2", 24);
      // each handle learns of the index within a second; both write v2's first rows together
      await new Promise((r) => setTimeout(r, 1100));
      await Promise.all([a.upsert(v2.slice(0, 100)), b.upsert(v2.slice(100, 200))]);
      const names = await admin((c) =>
        c.query("SELECT indexname FROM pg_indexes WHERE tablename = $1 AND indexname LIKE 'qdc_hnsw_%'", [table]),
      );
      assert.deepEqual(
        names.rows.map((r: { indexname: string }) => r.indexname).sort(),
        [versionIndexName(table, "v1"), versionIndexName(table, "v2")].sort(),
      );
      assert.deepEqual(await b.versions(), { v1: 100, v2: 200 });
      const q = v2[150]!.vector as Float32Array;
      assert.equal((await b.search(q, 1, { version: "v2" }))[0]?.id, v2[150]!.id);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("keeps a version's index while a write of it is uncommitted, and rebuilds indexes found missing or invalid", async () => {
    const table = pgTable("reconcile");
    const store = await PgVectorStore.open(url, table, SCHEMA);
    const writer = new pg.Client({ connectionString: url });
    await writer.connect();
    const indexes = async () =>
      (
        await admin((c) =>
          c.query(
            "SELECT c.relname AS name, i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname LIKE 'qdc_hnsw_%' AND i.indrelid = $1::regclass ORDER BY 1",
            [table],
          ),
        )
      ).rows as { name: string; valid: boolean }[];
    try {
      const v1 = randomRows(200, "v1", 25);
      await store.upsert(v1);
      await store.buildIndex();
      const i1 = versionIndexName(table, "v1");
      const i2 = versionIndexName(table, "v2");
      await store.upsert(randomRows(200, "v2", 26).slice(0, 1));
      // v1's index lost (dropped by hand) is rebuilt by optimize; one left invalid by the next write
      await admin((c) => c.query(`DROP INDEX ${i1}`));
      await store.optimize();
      assert.deepEqual(
        await indexes(),
        [i1, i2].sort().map((name) => ({ name, valid: true })),
      );
      await admin((c) => c.query("UPDATE pg_index SET indisvalid = false WHERE indexrelid = $1::regclass", [i1]));
      await new Promise((r) => setTimeout(r, 1100));
      await store.upsert([{ ...v1[1]!, text: "rewritten" }]);
      assert.deepEqual(
        await indexes(),
        [i1, i2].sort().map((name) => ({ name, valid: true })),
      );
      // v2 emptied while a write of v2 is in flight (holding its lock, rows not committed): kept
      await store.delete(["d0000"]);
      await writer.query("BEGIN");
      await writer.query("SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))", [i2]);
      await store.optimize();
      assert.deepEqual(
        (await indexes()).map((x) => x.name),
        [i1, i2].sort(),
        "kept under the writer's lock",
      );
      await writer.query("ROLLBACK");
      await store.optimize();
      assert.deepEqual(
        (await indexes()).map((x) => x.name),
        [i1],
        "dropped once no write of v2 is in flight",
      );
      const q = v1[7]!.vector as Float32Array;
      assert.equal((await store.search(q, 1))[0]?.id, v1[7]!.id);
    } finally {
      await writer.end();
      await store.close();
    }
  });

  it("records the state, replaces it, and reads it reopened", async () => {
    const table = pgTable("state");
    const store = await PgVectorStore.open(url, table, SCHEMA);
    try {
      assert.equal(await store.readState(), null);
      await store.writeState({ model: "a" });
      await store.writeState({ model: "b", reindex: { done: 3 } });
      const again = await PgVectorStore.open(url, table);
      assert.deepEqual(await again.readState(), { model: "b", reindex: { done: 3 } });
      await again.close();
    } finally {
      await store.close();
    }
  });

  it("adds the state column to a qdc_stores table from before it", async () => {
    const schema = `qdc_old_${run}`;
    await admin((c) =>
      c.query(
        `CREATE SCHEMA ${schema}; CREATE TABLE ${schema}.qdc_stores (name text PRIMARY KEY, schema jsonb NOT NULL)`,
      ),
    );
    try {
      const conn = { connectionString: url, options: `-c search_path=${schema},public` };
      const store = await PgVectorStore.open(conn, "old_docs", SCHEMA);
      await store.writeState({ model: "m" });
      await store.close();
      const again = await PgVectorStore.open(conn, "old_docs");
      assert.deepEqual(await again.readState(), { model: "m" });
      await again.close();
    } finally {
      await admin((c) => c.query(`DROP SCHEMA ${schema} CASCADE`));
    }
  });
});
