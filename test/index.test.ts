/** The versioned exact index against a brute-force reference, including ties and mixed versions. */
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { ExactIndex } from "../src/index/exact-index.js";
import { normalize, randn, type Tensor, tensor, tidy } from "../src/index.js";

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
      for (const x of h) assert.equal(x.modelVersion, Number(x.id.slice(1)) < 50 ? "v1" : "v2");
    });
    assert.deepEqual(idx.versions, ["v1", "v2"]);
    // skipping a version searches only the other
    const onlyNew = idx.search(qNew, 5, { transform: (v) => (v === "v2" ? qNew : null) });
    assert.ok(onlyNew.every((h) => h.every((x) => x.modelVersion === "v2")));
    assert.throws(() => ExactIndex.create(dir, 4), /already exists/);
    assert.throws(() => ExactIndex.open(join(dir, "nope")), /not a qdc index/);
  });
});
