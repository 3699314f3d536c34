/**
 * The benchmark's statistics and re-index curve helpers against hand-computed values: mean and
 * sample std, the paired bootstrap and sign-flip test on differences whose distributions are known
 * exactly, the mixed-version merge, the 90%-of-the-gain fraction, the service's retrieval order
 * and the predicted drift of documents.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { predictDrift, sampleResiduals } from "../src/drift/predicted-drift.js";
import { fractionReaching, mixedHits } from "../src/eval/reindex-curves.js";
import { meanStd, pairedTest, quantile, seedQueryInterval } from "../src/eval/stats.js";
import { calibrate, calibrateHits } from "../src/retrieval/calibration.js";
import type { Hit } from "../src/retrieval/hit.js";
import { byScore, countRetrievals, retrievedFirst } from "../src/retrieval/reindex-order.js";
import { tensor } from "../src/tensor/index.js";

describe("benchmark statistics", () => {
  it("mean and sample standard deviation", () => {
    const m = meanStd([2, 4, 4, 4, 5, 5, 7, 9]);
    assert.equal(m.mean, 5);
    assert.ok(Math.abs((m.std as number) - Math.sqrt(32 / 7)) < 1e-12);
    assert.deepEqual(meanStd([0.3]), { mean: 0.3, std: null, n: 1 });
    assert.deepEqual(meanStd([]), { mean: null, std: null, n: 0 });
  });

  it("quantiles interpolate between order statistics", () => {
    assert.equal(quantile([1, 2, 3, 4, 5], 0.5), 3);
    assert.equal(quantile([1, 2, 3, 4], 0.5), 2.5);
    assert.equal(quantile([10, 20], 0.25), 12.5);
  });

  it("paired test: a constant difference, and one whose sign-flip distribution is known", () => {
    const c = pairedTest([0.2, 0.2, 0.2], { seed: 7 });
    assert.ok(Math.abs(c.delta - 0.2) < 1e-12);
    assert.ok(Math.abs(c.ci95[0] - 0.2) < 1e-12 && Math.abs(c.ci95[1] - 0.2) < 1e-12);
    // |mean| of sign-flipped [1, 1, 1, 1] reaches 1 only with all signs equal: P = 2/16
    const p = pairedTest([1, 1, 1, 1], { seed: 3, resamples: 20_000 }).p;
    assert.ok(Math.abs(p - 0.125) < 0.01, `p ${p}`);
    // a difference far from 0 over many queries: tiny p, an interval away from 0
    const d = Array.from({ length: 400 }, (_, i) => 0.05 + ((i * 37) % 11) / 100 - 0.05);
    const t = pairedTest(d, { seed: 1 });
    assert.ok(t.p < 0.001 && t.ci95[0] > 0, JSON.stringify(t));
    // symmetric differences around 0: the interval holds 0 and p is large
    const s = pairedTest(
      Array.from({ length: 200 }, (_, i) => (i % 2 ? 1 : -1) * (i % 7)),
      { seed: 2 },
    );
    assert.ok(s.ci95[0] < 0 && s.ci95[1] > 0 && s.p > 0.5, JSON.stringify(s));
    assert.throws(() => pairedTest([]), /at least one unit/);
  });

  it("the seeds × queries interval covers the spread between seeds that the queries-only one misses", () => {
    // two seeds, constant per seed: seed draws (0,0) → 1, (1,1) → 3, mixed → 2
    const d = [
      [1, 1, 1],
      [3, 3, 3],
    ];
    assert.deepEqual(seedQueryInterval(d, { seed: 5 }), [1, 3]);
    const q = pairedTest([2, 2, 2], { seed: 5 }).ci95;
    assert.ok(Math.abs(q[0] - 2) < 1e-12 && Math.abs(q[1] - 2) < 1e-12);
    assert.throws(() => seedQueryInterval([[1, 2], [3]]), /seeds × queries matrix/);
  });
});

describe("re-index curves", () => {
  const h = (id: string, score: number, version: string): Hit => ({ id, score, version });
  it("mixes versions as the service does: each version's own documents, merged by score", () => {
    // documents a–d; b and d re-embedded
    const oldRanked = [[h("a", 0.9, "o"), h("b", 0.8, "o"), h("c", 0.7, "o"), h("d", 0.1, "o")]];
    const newRanked = [[h("c", 0.95, "n"), h("d", 0.85, "n"), h("a", 0.6, "n"), h("b", 0.5, "n")]];
    const mixed = mixedHits(oldRanked, newRanked, new Set(["b", "d"]), 3);
    assert.deepEqual(
      mixed[0]?.map((x) => `${x.id}:${x.version}`),
      ["a:o", "d:n", "c:o"],
    );
    assert.deepEqual(
      mixedHits(oldRanked, newRanked, new Set(), 2)[0]?.map((x) => x.id),
      ["a", "b"],
    );
    assert.deepEqual(
      mixedHits(oldRanked, newRanked, new Set(["a", "b", "c", "d"]), 2)[0]?.map((x) => x.id),
      ["c", "d"],
    );
  });

  it("calibration maps a query's older-version scores onto the current model's scale", () => {
    // reference: the same two documents in both versions; old scores [1, 0] (mean .5, sd .5)
    const ref = {
      old: [new Float32Array([1, 0]), new Float32Array([0, 1])],
      new: [new Float32Array([1, 0]), new Float32Array([0, 1])],
    };
    const c = calibrate(
      [new Float32Array([1, 0]), new Float32Array([1, 0])],
      [new Float32Array([2, 1]), new Float32Array([3, 1])],
      ref,
    );
    // new scores [2, 1]: mean 1.5, sd .5 → a 1, b 1; [3, 1]: mean 2, sd 1 → a 2, b 1
    assert.deepEqual([...c.scale], [1, 2]);
    assert.deepEqual([...c.shift], [1, 1]);
    const hits = calibrateHits([[h("x", 0.5, "o")], [h("x", 0.5, "o")]], c);
    assert.deepEqual(
      hits.map((l) => l[0]?.score),
      [1.5, 2],
    );
    // after calibration a re-embedded row no longer wins on its version's scale alone
    const old = [[h("a", 0.5, "o")]];
    const fresh = [[h("b", 0.9, "n")]];
    assert.equal(mixedHits(old, fresh, new Set(["b"]), 1)[0]?.[0]?.id, "b");
    assert.equal(
      mixedHits(old, fresh, new Set(["b"]), 1, { scale: new Float32Array([1]), shift: new Float32Array([0.5]) })[0]?.[0]
        ?.id,
      "a",
    );
    assert.throws(
      () => calibrate([], [], { old: [new Float32Array(2)], new: [new Float32Array(2)] }),
      /≥ 2 reference documents/,
    );
  });

  it("the smallest fraction reaching 90% of a full re-index's gain, or never", () => {
    const fr = [0, 0.05, 0.1, 0.25, 0.5, 1];
    assert.equal(fractionReaching(fr, [0.3, 0.32, 0.35, 0.39, 0.395, 0.4]), 0.25);
    assert.equal(fractionReaching(fr, [0.3, 0.39, 0.39, 0.39, 0.39, 0.4]), 0.05);
    assert.equal(fractionReaching(fr, [0.3, 0.3, 0.3, 0.3, 0.3, 0.4]), 1);
    assert.equal(fractionReaching(fr, [0.4, 0.39, 0.38, 0.37, 0.36, 0.35]), null);
    assert.equal(fractionReaching(fr, [0.4, 0.4, 0.4, 0.4, 0.4, 0.4]), null);
  });

  it("most retrieved first, ties in first-retrieved order, then the rest as given", () => {
    const counts = new Map<string, number>();
    countRetrievals(counts, [[h("c", 1, "v"), h("a", 1, "v")], [h("a", 1, "v"), h("e", 1, "v")], [h("x", 1, "v")]]);
    assert.deepEqual(retrievedFirst(["a", "b", "c", "d", "e"], counts), ["a", "c", "e", "b", "d"]);
    assert.deepEqual(byScore(["p", "q", "r"], [0.1, 0.5, 0.1]), ["q", "p", "r"]);
  });

  it("predicted drift: the mean residual of a document's nearest sample documents", () => {
    // sample in 2-d: two documents near the x axis moved a lot, two near the y axis not at all
    const old = tensor([
      [1, 0],
      [0.96, 0.28],
      [0, 1],
      [0.28, 0.96],
    ]);
    const mapped = tensor([
      [0, 1],
      [0.6, 0.8],
      [0, 1],
      [0.28, 0.96],
    ]);
    const r = sampleResiduals(old, mapped);
    const expect = [1 - 0, 1 - (0.96 * 0.6 + 0.28 * 0.8), 0, 0];
    for (const [i, v] of r.entries()) assert.ok(Math.abs(v - (expect[i] as number)) < 1e-6, `residual ${i}: ${v}`);
    const corpus = tensor([
      [0.99, 0.1],
      [0.1, 0.99],
    ]);
    const p = predictDrift(corpus, old, r, 2);
    assert.ok(Math.abs((p[0] as number) - ((expect[0] as number) + (expect[1] as number)) / 2) < 1e-6);
    assert.ok(Math.abs(p[1] as number) < 1e-6);
    assert.throws(() => predictDrift(corpus, old, r.slice(0, 3)), /3 residuals for 4 sample documents/);
  });
});
