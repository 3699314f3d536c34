/** `qdc eval`: a TREC run scored exactly as trec_eval. */
import type { Command } from "commander";

export function register(program: Command): void {
  program
    .command("eval")
    .description("score a TREC run against qrels exactly as trec_eval does")
    .requiredOption("--qrels <file>", "qrels: BEIR .tsv (query-id, corpus-id, score) or TREC (qid 0 docid rel)")
    .requiredOption("--run <file>", "TREC run (qid Q0 docid rank score tag)")
    .option(
      "-m, --measure <m>",
      "measure, repeatable: ndcg_cut.K, recall.K, map_cut.K, P.K, recip_rank[.K]",
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .option("-q, --per-query", "also print a line per query")
    .option("-c, --all-queries", "average over every judged query, counting those missing from the run as 0")
    .option("--json", "print JSON instead of trec_eval's text lines")
    .action(async (opts) => {
      const { readQrels } = await import("../../data/beir.js");
      const { readRun } = await import("../../eval/trec.js");
      const { evaluate, formatEvaluation, parseMeasures } = await import("../../eval/metrics.js");
      const specs: string[] = opts.measure.length
        ? opts.measure
        : ["ndcg_cut.10", "recall.100", "map_cut.100", "recip_rank.10"];
      const measures = specs.flatMap(parseMeasures);
      const e = evaluate(await readQrels(opts.qrels), await readRun(opts.run), measures, {
        allQueries: opts.allQueries,
      });
      if (opts.json) {
        const perQuery = opts.perQuery ? Object.fromEntries(e.perQuery) : undefined;
        process.stdout.write(`${JSON.stringify({ queries: e.queries, mean: e.mean, perQuery }, null, 1)}\n`);
      } else process.stdout.write(formatEvaluation(e, { perQuery: opts.perQuery }));
    });
}
