/**
 * `qdc bench serve`'s arithmetic: a phase measured in several windows (the "during" phase, one
 * window per re-index progress point) is reported as one, over all its requests.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { phaseOf, poolPhases } from "../src/bench/serve.js";

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
