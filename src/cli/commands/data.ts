/** `qdc data build`: the offline benchmark data. */
import type { Command } from "commander";
import { nonNegativeInt, positiveInt } from "../options.js";

export function register(program: Command): void {
  const data = program.command("data").description("benchmark data built from Debian-packaged text");
  data
    .command("build")
    .description("build the offline continual-retrieval benchmark (BEIR folders + training pairs + general corpus)")
    .requiredOption("--out <dir>", "output folder")
    .option("--tasks <list>", "task sources in order", "debian,wordnet,foldoc,man,python")
    .option("--train-pairs <n>", "training pairs per task", positiveInt("--train-pairs"), 5000)
    .option("--test-queries <n>", "test queries per task", positiveInt("--test-queries"), 500)
    .option("--corpus <n>", "documents per task corpus", positiveInt("--corpus"), 10000)
    .option("--general-pairs <n>", "pairs of the general pre-training corpus", positiveInt("--general-pairs"), 20000)
    .option("--max-words <n>", "words per document", positiveInt("--max-words"), 128)
    .option("--seed <n>", "split seed", nonNegativeInt("--seed"), 0)
    .action(async (opts) => {
      const { buildBenchmark } = await import("../../corpora/build.js");
      const r = await buildBenchmark(
        {
          out: opts.out,
          tasks: String(opts.tasks).split(","),
          trainPairs: opts.trainPairs,
          testQueries: opts.testQueries,
          corpusSize: opts.corpus,
          generalPairs: opts.generalPairs,
          maxWords: opts.maxWords,
          seed: opts.seed,
        },
        (m) => console.error(m),
      );
      console.error(
        r.built ? `built ${opts.out} (see ${opts.out}/README.md)` : `${opts.out} is already built with these options`,
      );
    });
}
