/** `qdc drift fit`: a compensator between two model versions. */
import { type Command, Option } from "commander";
import { FIT_METHODS } from "../../lineage/methods.js";
import { MODELS_HELP, prefixOf, withEncoding } from "../options.js";

export function register(program: Command): void {
  const drift = program.command("drift").description("query drift compensation between two model versions");
  withEncoding(
    drift
      .command("fit")
      .description("fit a compensator mapping the new model's queries into the old model's space")
      .requiredOption(
        "--old <ref>",
        "the older model (the one the index was built with): a directory, or an id under --models",
      )
      .requiredOption("--new <ref>", "the newer model: a directory, or an id under --models")
      .option("--models <dirs...>", MODELS_HELP)
      .requiredOption("--queries <file>", "training queries: .txt or .jsonl with 'text' (.gz accepted)")
      .option("--documents <file>", "also fit on these documents")
      .addOption(new Option("--method <m>", "estimator").choices(FIT_METHODS).default("mean"))
      .option("--qrels <file>", "with --corpus: auto ranks estimators by held-out retrieval (queries need ids)")
      .option("--corpus <file>", "documents for held-out retrieval: .jsonl with _id, text (and title)")
      .option(
        "--out <file>",
        "compensator .safetensors (default: <new>/drift/<method>.safetensors when --old is its parent, else <new>/drift/to-<old id>/<method>.safetensors, where searches and upgrades find it)",
      ),
    "query prompt",
  ).action(async (opts) => {
    const { basename } = await import("node:path");
    const { readAllIdTexts } = await import("../../data/texts.js");
    const { readQrels } = await import("../../data/beir.js");
    const { fitBetweenModels } = await import("../../drift/between-models.js");
    if ((opts.qrels === undefined) !== (opts.corpus === undefined))
      throw new Error("drift fit: give --qrels and --corpus together");
    // ids matter only with --qrels; otherwise any file `encode --input` reads will do
    const queries = await readAllIdTexts(opts.queries, { requireIds: opts.qrels !== undefined });
    const documents = opts.documents
      ? (await readAllIdTexts(opts.documents, { requireIds: false })).map((d) => d.text)
      : undefined;
    let relevance: { documents: string[]; relevant: number[][] } | undefined;
    if (opts.qrels) {
      const qrels = await readQrels(opts.qrels);
      const corpus = await readAllIdTexts(opts.corpus);
      const row = new Map(corpus.map((d, i) => [d.id, i]));
      const relevant = queries.map((q) =>
        [...(qrels.get(q.id) ?? new Map<string, number>())]
          .filter(([d, r]) => r >= 1 && row.has(d))
          .map(([d]) => row.get(d) as number),
      );
      if (!relevant.some((r) => r.length))
        throw new Error(`${opts.qrels}: no query of ${opts.queries} has a relevant document in ${opts.corpus}`);
      relevance = { documents: corpus.map((d) => d.text), relevant };
    }
    {
      const { locateModel, modelRoots } = await import("../../lineage/index.js");
      const roots = modelRoots(opts.models);
      opts.old = locateModel(opts.old, roots);
      opts.new = locateModel(opts.new, roots);
    }
    const method = opts.method as "auto";
    if (opts.out === undefined) {
      const { compensatorPath, edgePath, lineageOf, modelId } = await import("../../lineage/index.js");
      const oldId = modelId(opts.old);
      opts.out =
        lineageOf(opts.new)[1]?.id === oldId ? compensatorPath(opts.new, method) : edgePath(opts.new, oldId, method);
    }
    if (!basename(opts.out).endsWith(".safetensors")) throw new Error(`--out ${opts.out}: give a .safetensors file`);
    const r = fitBetweenModels({
      oldDir: opts.old,
      newDir: opts.new,
      queries: queries.map((q) => q.text),
      documents,
      relevance,
      methods: [method],
      outFiles: { [method]: opts.out },
      overwrite: true,
      device: opts.device,
      batchSize: opts.batchSize,
      maxLength: opts.maxLength,
      prefix: prefixOf(opts),
      fittedOn: { queries: opts.queries, documents: opts.documents ?? null, qrels: opts.qrels ?? null },
    });
    const picked = r.auto
      ? ` (auto picked ${r.auto.picked} by held-out ${r.auto.criterion}: ${JSON.stringify(r.auto.scores)})`
      : "";
    console.error(`fitted ${opts.method} on ${queries.length + (documents?.length ?? 0)} pairs → ${opts.out}${picked}`);
  });
}
