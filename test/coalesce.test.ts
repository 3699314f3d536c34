/** Concurrent store calls joined into fewer: same answers, only like calls joined, errors kept to their calls. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CoalescingSearcher } from "../src/retrieval/coalesce.js";
import type { SearchOptions, StoreHit } from "../src/store/store.js";

/** A store whose hits name the query vector (its first value), recording each call's size and options. */
function fakeStore(fail?: (vectors: Float32Array[]) => boolean) {
  const calls: { n: number; k: number; opts: SearchOptions }[] = [];
  return {
    calls,
    async searchMany(vectors: Float32Array[], k: number, opts: SearchOptions = {}): Promise<StoreHit[][]> {
      calls.push({ n: vectors.length, k, opts });
      await new Promise((r) => setTimeout(r, 5));
      if (fail?.(vectors)) throw new Error(`store failed on ${vectors.map((v) => v[0]).join(",")}`);
      return vectors.map((v) =>
        Array.from({ length: k }, (_, j) => ({
          id: `q${v[0]}-${j}`,
          version: opts.version ?? "v",
          score: 1 - j / 10,
          fields: {},
        })),
      );
    },
  };
}
const vec = (i: number) => Float32Array.of(i, 0, 0);

describe("coalescing store searcher", () => {
  it("joins calls made together into calls of at most maxBatch vectors, each answered with its own hits", async () => {
    const store = fakeStore();
    const s = new CoalescingSearcher(store, 4);
    const asks = [[1], [2, 3], [4], [5], [6]].map((ids) => ids.map(vec));
    const got = await Promise.all(asks.map((vs) => s.searchMany(vs, 3, { version: "a" })));
    // whole calls packed in order: [1, 2, 3, 4] then [5, 6]
    assert.deepEqual(
      store.calls.map((c) => c.n),
      [4, 2],
    );
    asks.forEach((vs, i) => {
      assert.equal(got[i]!.length, vs.length);
      for (const [j, v] of vs.entries())
        assert.deepEqual(
          got[i]![j]!.map((h) => h.id),
          [0, 1, 2].map((r) => `q${v[0]}-${r}`),
        );
    });
  });

  it("joins only calls with the same k, version, exactness and filter", async () => {
    const store = fakeStore();
    const s = new CoalescingSearcher(store, 8);
    const got = await Promise.all([
      s.searchMany([vec(1)], 3, { version: "a" }),
      s.searchMany([vec(2)], 3, { version: "b" }),
      s.searchMany([vec(3)], 5, { version: "a" }),
      s.searchMany([vec(4)], 3, { version: "a", filter: { lang: "en" } }),
      s.searchMany([vec(5)], 3, { version: "a", exact: true }),
      s.searchMany([vec(6)], 3, { version: "a" }),
    ]);
    assert.equal(store.calls.length, 5);
    assert.deepEqual(
      store.calls.map((c) => [c.n, c.k, c.opts.version, c.opts.exact ?? false, JSON.stringify(c.opts.filter ?? null)]),
      [
        [2, 3, "a", false, "null"],
        [1, 3, "b", false, "null"],
        [1, 5, "a", false, "null"],
        [1, 3, "a", false, '{"lang":"en"}'],
        [1, 3, "a", true, "null"],
      ],
    );
    assert.equal(got[2]![0]!.length, 5);
    assert.equal(got[1]![0]![0]!.version, "b");
    assert.equal(got[5]![0]![0]!.id, "q6-0");
  });

  it("passes calls on alone with maxBatch 1, and refuses a batch that is not a positive integer", async () => {
    const store = fakeStore();
    const s = new CoalescingSearcher(store, 1);
    await Promise.all([s.searchMany([vec(1)], 2), s.searchMany([vec(2)], 2)]);
    assert.deepEqual(
      store.calls.map((c) => c.n),
      [1, 1],
    );
    assert.throws(() => new CoalescingSearcher(store, 0), /maxBatch must be a positive integer, got 0/);
  });

  it("fails only the calls joined with a failing one", async () => {
    const store = fakeStore((vs) => vs.some((v) => v[0] === 2));
    const s = new CoalescingSearcher(store, 2);
    const got = await Promise.allSettled([1, 2, 3, 4].map((i) => s.searchMany([vec(i)], 1)));
    assert.deepEqual(
      got.map((r) => r.status),
      ["rejected", "rejected", "fulfilled", "fulfilled"],
    );
    assert.match(String((got[0] as PromiseRejectedResult).reason), /store failed on 1,2/);
    // later calls are not held back by the failure
    assert.equal((await s.searchMany([vec(7)], 1))[0]![0]!.id, "q7-0");
  });
});
