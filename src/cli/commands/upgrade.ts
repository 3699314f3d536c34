/** `qdc upgrade check`: what a model upgrade of a store will do. */
import { type Command, Option } from "commander";
import { FIT_METHODS } from "../../lineage/methods.js";
import { MODELS_HELP, positiveInt } from "../options.js";

export function register(program: Command): void {
  program
    .command("upgrade")
    .description("what a model upgrade of a store will do")
    .command("check")
    .description(
      "before the switch: overlap@10 of the candidate's compensated results with the current ones; with --qrels, nDCG@10 of both, and of the candidate on a re-embedded sub-corpus",
    )
    .requiredOption("--store <uri>", "store URI")
    .requiredOption("--model <ref>", "the candidate: a model directory or an id")
    .option("--current <ref>", "the model serving the store (default: the one the store records)")
    .option(
      "--queries <file>",
      "queries (.txt or .jsonl; with _id for --qrels), e.g. a query log; default: pseudo-queries of sampled stored documents",
    )
    .option("--qrels <file>", "relevance judgments for --queries: BEIR .tsv or TREC")
    .option("--sample <n>", "pseudo-queries drawn without --queries", positiveInt("--sample"), 200)
    .option(
      "--sub-corpus <n>",
      "documents re-embedded with the candidate (with --qrels)",
      positiveInt("--sub-corpus"),
      2000,
    )
    .addOption(
      new Option("--compensate <mode>", "how older rows are reached (default: as recorded, else mean)").choices(
        FIT_METHODS,
      ),
    )
    .option("--models <dirs...>", MODELS_HELP)
    .option("--json <file>", "also write the numbers as JSON")
    .option("--device <device>", "cpu, cuda or cuda:N", "cpu")
    .action(async (opts) => {
      const { writeFileSync } = await import("node:fs");
      const { openStore } = await import("../../store/open.js");
      const { locateModel, modelRoots } = await import("../../lineage/index.js");
      const { InlineEncoder } = await import("../../server/encoder.js");
      const { checkUpgrade, describeCheck } = await import("../../server/upgrade-check.js");
      const { readAllIdTexts } = await import("../../data/texts.js");
      const { readQrels } = await import("../../data/beir.js");
      if (opts.qrels && !opts.queries) throw new Error("upgrade check: --qrels needs the --queries it judges");
      const s = await openStore(opts.store);
      const encoder = new InlineEncoder();
      try {
        const recorded = await s.readState();
        const roots = modelRoots(opts.models);
        const ref = opts.current ?? recorded?.model;
        if (!ref) throw new Error(`${opts.store} records no served model: give the one that serves it (--current)`);
        const current = locateModel(ref, roots, opts.current ? undefined : recorded?.modelDir);
        const candidate = locateModel(opts.model, roots);
        const mode = opts.compensate ?? recorded?.compensation ?? "mean";
        const targets = Object.keys(await s.versions());
        const known = [...Object.values(recorded?.models ?? {}), current];
        const spec = (dir: string) => ({ dir, mode, roots, known, device: opts.device });
        const cur = await encoder.load(spec(current), targets);
        const cand = await encoder.load(spec(candidate), targets);
        const r = await checkUpgrade({
          store: s,
          encoder,
          current: cur.version,
          candidate: cand.version,
          queries: opts.queries ? await readAllIdTexts(opts.queries, { requireIds: Boolean(opts.qrels) }) : undefined,
          qrels: opts.qrels ? await readQrels(opts.qrels) : undefined,
          sample: opts.sample,
          subCorpus: opts.subCorpus,
        });
        console.log(`${cur.version} → ${cand.version}: ${describeCheck(r)} (${r.seconds.toFixed(1)} s)`);
        if (opts.json) writeFileSync(opts.json, `${JSON.stringify(r, null, 2)}\n`);
      } finally {
        await encoder.close();
        await s.close();
      }
    });
}
