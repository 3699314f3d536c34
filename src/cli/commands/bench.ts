/** `qdc bench …`: the benchmarks. */
import { type Command, InvalidArgumentError, Option } from "commander";
import type { BenchOptions } from "../../bench/common.js";
import { positiveInt } from "../options.js";

export function register(program: Command): void {
  const bench = program
    .command("bench")
    .description(
      "benchmarks against PyTorch on the same machine in the same run; the continual-retrieval benchmark as its issue lands",
    );

  /** A benchmark subcommand with the options they all share. */
  function benchCommand(name: string, description: string, run: (opts: BenchOptions) => Promise<void>): void {
    bench
      .command(name)
      .description(description)
      .addOption(new Option("--device <device>", "cpu or cuda").default("cpu"))
      .option("--out <file>", "write the results as JSON here")
      .option("--no-peer", "skip the PyTorch peer")
      .option("--python <exe>", "Python with torch for the peer", "")
      .option("--quick", "shorter timing (for smoke runs)")
      .action(run);
  }

  benchCommand("engine", "matmul GFLOP/s and per-op dispatch overhead", async (o) =>
    (await import("../../bench/engine.js")).runEngineBench(o),
  );
  benchCommand(
    "encode",
    "documents/s of encoding with random-init BERTs (4×256 and base), same weights on both sides",
    async (o) => (await import("../../bench/encode.js")).runEncodeBench(o),
  );
  benchCommand("train", "time of one contrastive training step (BERT 4×256 on CPU, BERT-base on CUDA)", async (o) =>
    (await import("../../bench/train.js")).runTrainBench(o),
  );
  benchCommand(
    "drift",
    "µs per query of each drift compensator, and exact search queries/s over 100k and 1M vectors",
    async (o) => (await import("../../bench/drift.js")).runDriftBench(o),
  );
  bench
    .command("adapters")
    .description(
      "any-to-any upgrades: the share of an independently trained, wider model's re-indexed nDCG@10 each cross-dimension adapter recovers over the old model's index, per task and pooled, with µs/query",
    )
    .option("--config <name|file>", "benchmark config whose offline tasks and base model are used", "tiny")
    .option("--hidden <n>", "model B's width (default 1.5 × A's)", positiveInt("--hidden"))
    .option("--old <dir>", "measure this model (A, whose index is searched) instead of the pre-trained one")
    .option("--new <dir>", "and this one (B, mapped into A's space)")
    .option(
      "--pairs <n>",
      "training queries and training documents per task fitted on, with its corpus (default 2000)",
      positiveInt("--pairs"),
    )
    .addOption(new Option("--device <device>", "cpu or cuda").default("cpu"))
    .option("--out <file>", "write the results as JSON here")
    .option("--quick", "fewer pairs and shorter timing (for smoke runs)")
    .action(async (o) => (await import("../../bench/adapters.js")).runAdapterBench({ ...o, peer: false, python: "" }));
  bench
    .command("serve")
    .description(
      "the search service under load: QPS and latency before, during and after an upgrade with re-index; exact vs ANN recall",
    )
    .option("--docs <n>", "documents in the store", positiveInt("--docs"), 100000)
    .option("--run <dir>", "the tiny benchmark's run folder (its FT+KD models of tasks 1 and 2)", "runs/bench-tiny")
    .option("--pg <url>", "PostgreSQL with pgvector for the pgvector run (default QDC_PG_URL; none: LanceDB only)")
    .option("--clients <n>", "concurrent HTTP clients", positiveInt("--clients"), 8)
    .option("--stores <list>", "stores to run: lancedb,pgvector", (v: string) => v.split(","))
    .option("--seconds <n>", "length of the before and after windows", positiveInt("--seconds"))
    .option("--ef <n>", "HNSW ef to serve with (default: the smallest reaching recall@10 0.95)", positiveInt("--ef"))
    .option(
      "--during-at <list>",
      "re-index progress (fractions) at which the windows of the 'during' phase start",
      (v: string) => {
        const xs = v.split(",").map((x) => (x.trim() === "" ? Number.NaN : Number(x)));
        if (xs.some((x) => !(x >= 0 && x < 1)))
          throw new InvalidArgumentError(`--during-at: fractions in [0, 1) separated by commas, got '${v}'`);
        return xs.sort((a, b) => a - b);
      },
    )
    .option("--out <file>", "write the results as JSON here")
    .option("--quick", "5k documents and 5 s windows")
    .action(async (o) =>
      (await import("../../bench/serve.js")).runServeBench({
        ...o,
        docs: o.quick && o.docs === 100000 ? undefined : o.docs,
        device: "cpu",
        peer: false,
        python: "",
      }),
    );
  bench
    .command("run")
    .description(
      "the continual dense-retrieval benchmark: data, base model, FT / FT+KD / joint training, indexes, evaluation, report",
    )
    .option("--config <name|file>", "tiny, cpu, gpu, cdr, or a YAML run file", "tiny")
    .option("--out <dir>", "run folder (default: the config's out)")
    .option("--device <device>", "override the config's device (cpu, cuda)")
    .option("--seeds <list>", "override the config's training seeds, e.g. 0 (one quick run) or 0,1,2", (v: string) => {
      const seeds = v.split(",").map((x) => x.trim());
      if (!seeds.length || seeds.some((x) => !/^\d+$/.test(x)))
        throw new InvalidArgumentError(`--seeds takes non-negative integers separated by commas, got '${v}'`);
      return seeds.map(Number);
    })
    .action(async (opts: { config: string; out?: string; device?: string; seeds?: number[] }) => {
      const { readBenchmarkConfig } = await import("../../eval/config.js");
      const { runBenchmark } = await import("../../eval/protocol.js");
      const { formatMarkdown } = await import("../../eval/report.js");
      const config = readBenchmarkConfig(opts.config, { out: opts.out });
      if (opts.device) config.device = opts.device;
      if (opts.seeds) config.seeds = opts.seeds as [number, ...number[]];
      const report = await runBenchmark(config, { progress: process.stderr.isTTY === true });
      process.stdout.write(formatMarkdown(report));
      console.error(`results: ${config.out}/results.md, results.json, figure.svg`);
    });
}
