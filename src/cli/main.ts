#!/usr/bin/env node
/** The `qdc` command. Subcommands load the engine lazily, so --help and --version always work. */
import { Command, Option } from "commander";
import { VERSION } from "../version.js";

const program = new Command();
program
  .name("qdc")
  .description("Continual learning of dense-retrieval embedding models without re-indexing (query drift compensation)")
  .version(VERSION, "-V, --version")
  .showHelpAfterError();

program
  .command("info")
  .description("print the tensor engine's facts: libtorch version, threads, CUDA")
  .option("--json", "machine-readable output")
  .action(async (opts: { json?: boolean }) => {
    const { engineInfo, cuda } = await import("../tensor/index.js");
    const info = engineInfo();
    const out = {
      qdc: VERSION,
      torch: info.torch,
      cudaBuild: info.cudaBuild,
      cuda: info.cuda,
      cudaDevices: info.cuda ? cuda.deviceCount() : 0,
      threads: info.threads,
    };
    if (opts.json) console.log(JSON.stringify(out));
    else for (const [k, v] of Object.entries(out)) console.log(`${k.padEnd(12)} ${v}`);
  });

const bench = program
  .command("bench")
  .description(
    "benchmarks: engine now; encode, train, drift, serve and the continual-retrieval benchmark as their issues land",
  );
bench
  .command("engine")
  .description("matmul GFLOP/s and per-op dispatch overhead, against PyTorch on this machine in the same run")
  .addOption(new Option("--device <device>", "cpu or cuda").default("cpu"))
  .option("--out <file>", "write the results as JSON here")
  .option("--no-peer", "skip the PyTorch peer")
  .option("--python <exe>", "Python with torch for the peer", "")
  .action(async (opts: { device: string; out?: string; peer: boolean; python: string }) => {
    const { runEngineBench } = await import("../bench/engine.js");
    await runEngineBench(opts);
  });
bench
  .command("run")
  .description("the continual dense-retrieval benchmark (configs: tiny, cpu, gpu, cdr)")
  .option("--config <name>", "benchmark configuration", "tiny")
  .action((opts: { config: string }) => {
    console.log(
      `qdc bench run --config ${opts.config}: the continual-retrieval benchmark is coming with the benchmark issue.`,
    );
    console.log("Available now: `qdc info`, `qdc bench engine`.");
  });

program.parseAsync(process.argv).catch((e: unknown) => {
  console.error(`qdc: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
