/**
 * `qdc bench drift`: the cost of compensating a query with each estimator (µs per query, one query
 * at a time and in batches of 1,000), and exact search throughput (queries/s) over 100k and 1M
 * random normalised vectors of 768 dimensions in the versioned index, with every shard in memory and
 * streamed from disk (the bounded-memory mode), with the peak extra resident memory of each.
 */

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fitCompensator } from "../drift/fit.js";
import { ExactIndex } from "../index/exact-index.js";
import { COMPENSATORS } from "../lineage/methods.js";
import { cuda, getNumThreads, normalize, randn, tidy } from "../tensor/index.js";
import { type BenchOptions, machineName, timePerCall } from "./common.js";

/** Resident set size now, and its peak since the last reset (Linux /proc). */
function rssBytes(): number {
  return process.memoryUsage().rss;
}
function peakRssBytes(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
  return m ? Number(m[1]) * 1024 : Number.NaN;
}
function resetPeakRss(): void {
  try {
    writeFileSync("/proc/self/clear_refs", "5");
  } catch {
    // not Linux, or not allowed: the peak then covers the whole process
  }
}

export async function runDriftBench(opts: BenchOptions): Promise<void> {
  const device = opts.device;
  const sync = device.startsWith("cuda") ? () => cuda.synchronize() : () => {};
  const D = 768;
  const minSeconds = opts.quick ? 0.3 : 1;
  const oldE = tidy(() => normalize(randn([4000, D], { seed: 1 })));
  const newE = tidy(() => normalize(oldE.add(randn([4000, D], { seed: 2 }).mul(0.1))));
  const compensation: Record<string, { usPerQuerySingle: number; usPerQueryBatch1000: number }> = {};
  for (const method of COMPENSATORS) {
    const c = fitCompensator(method, oldE, newE, { mlpEpochs: 2 });
    const one = newE.narrow(0, 0, 1);
    const batch = newE.narrow(0, 0, 1000);
    const single = timePerCall(() => c.apply(one).dispose(), sync, minSeconds);
    const many = timePerCall(() => c.apply(batch).dispose(), sync, minSeconds);
    compensation[method] = { usPerQuerySingle: single * 1e6, usPerQueryBatch1000: (many / 1000) * 1e6 };
    console.error(
      `[bench] ${method}: ${(single * 1e6).toFixed(1)} µs (1 query), ${((many / 1000) * 1e6).toFixed(2)} µs/query (batch 1000)`,
    );
    c.dispose();
  }
  const search: Record<
    string,
    { vectors: number; mode: string; batch: number; queriesPerSecond: number; peakExtraMiB: number }
  > = {};
  const work = mkdtempSync(join(tmpdir(), "qdc-bench-drift-"));
  try {
    for (const n of opts.quick ? [100000] : [100000, 1000000]) {
      const idx = ExactIndex.create(join(work, `idx-${n}`), D);
      const shard = 250000;
      for (let s = 0; s < n; s += shard) {
        const len = Math.min(shard, n - s);
        const emb = tidy(() => normalize(randn([len, D], { seed: 10 + s })));
        idx.addShard(
          emb,
          Array.from({ length: len }, (_, i) => `d${s + i}`),
          "v1",
          "bench",
        );
        emb.dispose();
      }
      // the same index searched with every shard in memory, and streamed from disk (bounded memory)
      for (const [mode, cacheBytes] of [
        ["in memory", Number.POSITIVE_INFINITY],
        ["streamed", 0],
      ] as const) {
        const opened = ExactIndex.open(join(work, `idx-${n}`), { cacheBytes });
        for (const batch of [64, 1024]) {
          const q = tidy(() => normalize(randn([batch, D], { seed: 3 })));
          opened.search(q, 10); // loads what the cache keeps
          resetPeakRss();
          const before = rssBytes();
          const t = timePerCall(() => opened.search(q, 10), sync, minSeconds);
          const peakExtra = peakRssBytes() - before;
          search[`${n} ${mode} batch ${batch}`] = {
            vectors: n,
            mode,
            batch,
            queriesPerSecond: batch / t,
            peakExtraMiB: peakExtra / 2 ** 20,
          };
          console.error(
            `[bench] exact search over ${n} × ${D}, ${mode}: ${(batch / t).toFixed(1)} queries/s (batches of ${batch}, k = 10), peak RSS +${(peakExtra / 2 ** 20).toFixed(0)} MiB during search`,
          );
          q.dispose();
        }
        opened.close();
      }
      idx.close();
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const result = { machine: machineName(device), device, threads: getNumThreads(), dim: D, compensation, search };
  console.log(`drift benchmark — ${result.machine}, ${result.threads} threads, ${D}-d`);
  console.log("| estimator | µs, 1 query | µs/query, batch 1000 |");
  console.log("|---|---|---|");
  for (const [m, r] of Object.entries(compensation))
    console.log(`| ${m} | ${r.usPerQuerySingle.toFixed(1)} | ${r.usPerQueryBatch1000.toFixed(2)} |`);
  console.log("| vectors | shards | batch | queries/s | peak RSS during search |");
  console.log("|---|---|---|---|---|");
  for (const r of Object.values(search))
    console.log(
      `| ${r.vectors} | ${r.mode} | ${r.batch} | ${r.queriesPerSecond.toFixed(1)} | +${r.peakExtraMiB.toFixed(0)} MiB |`,
    );
  if (opts.out) writeFileSync(opts.out, `${JSON.stringify(result, null, 2)}\n`);
}
