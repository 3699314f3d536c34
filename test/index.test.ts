/** The versioned exact index against a brute-force reference, including ties and mixed versions. */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { ExactIndex } from "../src/index/exact-index.js";
import { loadRows, normalize, randn, type Tensor, tensor, tidy } from "../src/index.js";

/** Top-k ids by a plain JS loop over all scores: descending, ties by insertion order. */
function bruteForce(q: number[][], docs: number[][], ids: string[], k: number): string[][] {
  return q.map((qv) => {
    const scored = docs.map((d, i) => ({ i, s: Math.fround(d.reduce((a, x, j) => a + x * (qv[j] as number), 0)) }));
    scored.sort((a, b) => b.s - a.s || a.i - b.i);
    return scored.slice(0, k).map((x) => ids[x.i] as string);
  });
}
const rows = (t: Tensor) => {
  const d = t.size(1);
  const flat = t.toArray();
  return Array.from({ length: t.size(0) }, (_, i) => flat.slice(i * d, (i + 1) * d));
};

describe("exact index", () => {
  it("returns the brute-force top-k across shards and chunks, ties in index order", () => {
    const dir = join(mkdtempSync(join(tmpdir(), "qdc-index-")), "idx");
    const idx = ExactIndex.create(dir, 8);
    // integer-valued vectors make exact ties certain
    const docs = tidy(() => randn([300, 8], { seed: 1 }).mul(2).round());
    const ids = Array.from({ length: 300 }, (_, i) => `d${i}`);
    idx.addShard(docs.narrow(0, 0, 120), ids.slice(0, 120), "v1", "/models/v1");
    idx.addShard(docs.narrow(0, 120, 180), ids.slice(120), "v1", "/models/v1");
    const q = tidy(() => randn([5, 8], { seed: 2 }).round());
    const reopened = ExactIndex.open(dir);
    assert.equal(reopened.size, 300);
    const got = reopened.search(q, 10, { chunkRows: 50 }).map((h) => h.map((x) => x.id));
    assert.deepEqual(got, bruteForce(rows(q), rows(docs), ids, 10));
    // k larger than the index returns everything
    assert.equal(reopened.search(q, 500)[0]!.length, 300);
    assert.throws(() => reopened.search(q, 0), /k must be a positive integer/);
    assert.throws(() => reopened.search(tensor([[1, 2]]), 3), /8-d vectors/);
  });

  it("searches each version's shards with its own queries and merges the results", () => {
    const dir = join(mkdtempSync(join(tmpdir(), "qdc-index-")), "idx");
    const idx = ExactIndex.create(dir, 4);
    const old = tidy(() => normalize(randn([50, 4], { seed: 3 })));
    const fresh = tidy(() => normalize(randn([50, 4], { seed: 4 })));
    const ids = Array.from({ length: 100 }, (_, i) => `d${i}`);
    idx.addShard(old, ids.slice(0, 50), "v1", "/m/v1");
    idx.addShard(fresh, ids.slice(50), "v2", "/m/v2");
    const qOld = tidy(() => normalize(randn([3, 4], { seed: 5 })));
    const qNew = tidy(() => normalize(randn([3, 4], { seed: 6 })));
    const hits = idx.search(qNew, 7, { transform: (v) => (v === "v1" ? qOld : qNew) });
    // reference: v1 rows scored with qOld, v2 rows with qNew
    const oldRows = rows(old);
    const newRows = rows(fresh);
    const qo = rows(qOld);
    const qn = rows(qNew);
    hits.forEach((h, m) => {
      const all = [
        ...oldRows.map((d, i) => ({ id: ids[i]!, s: Math.fround(d.reduce((a, x, j) => a + x * qo[m]![j]!, 0)) })),
        ...newRows.map((d, i) => ({ id: ids[50 + i]!, s: Math.fround(d.reduce((a, x, j) => a + x * qn[m]![j]!, 0)) })),
      ].sort((a, b) => b.s - a.s);
      assert.deepEqual(
        h.map((x) => x.id),
        all.slice(0, 7).map((x) => x.id),
      );
      for (const x of h) assert.equal(x.version, Number(x.id.slice(1)) < 50 ? "v1" : "v2");
    });
    assert.deepEqual(idx.versions, ["v1", "v2"]);
    // skipping a version searches only the other
    const onlyNew = idx.search(qNew, 5, { transform: (v) => (v === "v2" ? qNew : null) });
    assert.ok(onlyNew.every((h) => h.every((x) => x.version === "v2")));
    assert.throws(() => ExactIndex.create(dir, 4), /already exists/);
    assert.throws(() => ExactIndex.open(join(dir, "nope")), /not a qdc index/);
  });

  it("streams shards from disk beyond the cache budget with the same results", () => {
    const dir = join(mkdtempSync(join(tmpdir(), "qdc-index-")), "idx");
    const idx = ExactIndex.create(dir, 16);
    const docs = tidy(() => randn([500, 16], { seed: 7 }).mul(2).round());
    const ids = Array.from({ length: 500 }, (_, i) => `d${i}`);
    for (let s = 0; s < 5; s++)
      idx.addShard(docs.narrow(0, s * 100, 100), ids.slice(s * 100, (s + 1) * 100), "v1", "/m/v1");
    const q = tidy(() => randn([4, 16], { seed: 8 }).round());
    const expected = bruteForce(rows(q), rows(docs), ids, 12);
    // no cache at all: every chunk is read from its file
    const streamed = ExactIndex.open(dir, { cacheBytes: 0 });
    assert.deepEqual(
      streamed.search(q, 12, { chunkRows: 33 }).map((h) => h.map((x) => x.id)),
      expected,
    );
    // a budget of two shards: the rest streams
    const partial = ExactIndex.open(dir, { cacheBytes: 2 * 100 * 16 * 4 });
    assert.deepEqual(
      partial.search(q, 12).map((h) => h.map((x) => x.id)),
      expected,
    );
    const rowsOf = loadRows(join(dir, "shard-00001.safetensors"), "embeddings", 10, 3);
    assert.deepEqual(rowsOf.toArray(), docs.narrow(0, 110, 3).contiguous().toArray());
    assert.throws(
      () => loadRows(join(dir, "shard-00001.safetensors"), "embeddings", 99, 2),
      /outside tensor 'embeddings' of 100 rows/,
    );
    assert.throws(() => loadRows(join(dir, "shard-00001.safetensors"), "nope", 0, 1), /has no tensor 'nope'/);
  });

  it("replaces a shard through a new file and one manifest switch", () => {
    const dir = join(mkdtempSync(join(tmpdir(), "qdc-index-")), "idx");
    const idx = ExactIndex.create(dir, 4);
    const a = tidy(() => normalize(randn([10, 4], { seed: 9 })));
    const b = tidy(() => normalize(randn([10, 4], { seed: 10 })));
    const ids = Array.from({ length: 10 }, (_, i) => `d${i}`);
    idx.addShard(a, ids, "v1", "/m/v1");
    const q = b.narrow(0, 3, 1);
    assert.notEqual(idx.search(q, 1)[0]![0]!.id, "d3");
    idx.replaceShard(0, b, "v2", "/m/v2");
    const shard = idx.manifest.shards[0]!;
    assert.equal(shard.modelVersion, "v2");
    assert.notEqual(shard.file, "shard-00000.safetensors");
    assert.ok(!existsSync(join(dir, "shard-00000.safetensors")), "the old file is removed after the switch");
    const reopened = ExactIndex.open(dir);
    const hit = reopened.search(q, 1)[0]![0]!;
    assert.equal(hit.id, "d3");
    assert.equal(hit.version, "v2");
    assert.throws(() => idx.replaceShard(1, b, "v2", "/m/v2"), /no shard 1/);
    assert.throws(() => idx.replaceShard(0, b.narrow(0, 0, 5), "v2", "/m/v2"), /5 embeddings for 10 rows/);
  });
});
