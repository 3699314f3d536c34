/**
 * `qdc bench serve`'s arithmetic: a phase measured in several windows (the "during" phase, one
 * window per re-index progress point) is reported as one, over all its requests; ANN recall with
 * ties; where it finds the tiny run's models.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { tinyModels } from "../src/bench/common.js";
import { annFound, phaseOf, poolPhases } from "../src/bench/serve.js";

const window = (phase: string, seconds: number, latenciesMs: number[], failed: number, storeMs: number) =>
  phaseOf({
    phase,
    seconds,
    latenciesMs,
    failed,
    failures: failed ? [`500: ${phase}`] : [],
    // summed over the successful requests, as the load generator adds them up
    timings: {
      waitMs: 0,
      embedMs: latenciesMs.length,
      compensateMs: 0,
      storeMs: storeMs * latenciesMs.length,
      batch: 0,
    },
  });

describe("bench serve phases", () => {
  it("pools windows: requests over the summed seconds, percentiles over every latency, time split by requests", () => {
    // 4 requests in 2 s (one failed) and 6 in 1 s
    const a = window("during 10%", 2, [10, 20, 30], 1, 5);
    const b = window("during 50%", 1, [1, 2, 3, 4, 5, 100], 0, 20);
    assert.equal(a.qps, 1.5);
    const p = poolPhases("during", [a, b]);
    assert.equal(p.requests, 10);
    assert.equal(p.failed, 1);
    assert.equal(p.seconds, 3);
    assert.equal(p.qps, 3); // 9 answered in 3 s
    // sorted: 1 2 3 4 5 10 20 30 100; the median is the 5th, the 99th percentile the last
    assert.equal(p.p50Ms, 5);
    assert.equal(p.p99Ms, 100);
    // the mean store time per answered request: (3 × 5 + 6 × 20) / 9
    assert.equal(p.split.storeMs, 15);
    assert.equal(p.split.embedMs, 1);
    assert.deepEqual(p.failures, ["500: during 10%"]);
  });
});

describe("bench serve ANN recall", () => {
  const exact = [
    { id: "a", score: 0.9 },
    { id: "b", score: 0.8 },
    { id: "c", score: 0.7 },
    { id: "d", score: 0.7 }, // tied with the 3rd: as right as c
    { id: "e", score: 0.69 },
  ];
  it("counts the exact top-k", () => {
    assert.equal(annFound(exact, [{ id: "a" }, { id: "b" }, { id: "c" }], 3), 3);
    assert.equal(annFound(exact, [{ id: "a" }, { id: "e" }, { id: "x" }], 3), 1);
  });
  it("counts a document tied with the k-th, and each id once", () => {
    assert.equal(annFound(exact, [{ id: "a" }, { id: "b" }, { id: "d" }], 3), 3);
    assert.equal(annFound(exact, [{ id: "a" }, { id: "a" }, { id: "d" }], 3), 2);
    // a tie only within the tolerance
    assert.equal(annFound(exact, [{ id: "a" }, { id: "b" }, { id: "e" }], 3), 2);
    assert.equal(annFound(exact, [{ id: "a" }, { id: "b" }, { id: "e" }], 3, 0.02), 3);
  });
  it("looks at the first k of the ANN list only", () => {
    assert.equal(annFound(exact, [{ id: "x" }, { id: "y" }, { id: "z" }, { id: "a" }], 3), 0);
  });
});

describe("bench serve models", () => {
  const model = (dir: string) => {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "lineage.json"), "{}");
  };
  it("finds the tasks' models in the run, or in its first seed's folder", () => {
    const run = mkdtempSync(join(tmpdir(), "qdc-tiny-"));
    try {
      assert.throws(
        () => tinyModels(run),
        (e: Error) => e.message === `${join(run, "kd", "debian")}: missing; run the tiny benchmark first (npm start)`,
      );
      model(join(run, "seed-0", "kd", "debian"));
      model(join(run, "seed-0", "kd", "wordnet"));
      model(join(run, "seed-1", "kd", "debian"));
      assert.deepEqual(tinyModels(run), {
        oldDir: join(run, "seed-0", "kd", "debian"),
        newDir: join(run, "seed-0", "kd", "wordnet"),
      });
      // a run without seeds keeps its chain in kd/ itself
      model(join(run, "kd", "debian"));
      assert.throws(() => tinyModels(run), /kd\/wordnet: missing/);
      model(join(run, "kd", "wordnet"));
      assert.deepEqual(tinyModels(run), { oldDir: join(run, "kd", "debian"), newDir: join(run, "kd", "wordnet") });
    } finally {
      rmSync(run, { recursive: true, force: true });
    }
  });
});
