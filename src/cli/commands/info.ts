/** `qdc info`: the tensor engine's facts. */
import type { Command } from "commander";
import { VERSION } from "../../version.js";

export function register(program: Command): void {
  program
    .command("info")
    .description("print the tensor engine's facts: libtorch version, threads, CUDA")
    .option("--json", "machine-readable output")
    .action(async (opts: { json?: boolean }) => {
      const { engineInfo, cuda } = await import("../../tensor/index.js");
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
}
