#!/usr/bin/env node
/** The `qdc` command. Subcommands load the engine lazily, so --help and --version always work. */
import { Command, InvalidArgumentError, Option } from "commander";
import type { BenchOptions } from "../bench/common.js";
import { COMPENSATION_MODES, FIT_METHODS } from "../lineage/methods.js";
import { VERSION } from "../version.js";

const MODELS_HELP =
  "folders searched (recursively) for models named by id: a moved parent, a recorded model (default: QDC_MODELS)";

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

function positiveInt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer, got '${v}'`);
    return n;
  };
}

/** The options of every command that embeds texts: prompt prefix, token budget, batch size, device. */
function withEncoding(cmd: Command, prompt: string): Command {
  return cmd
    .option("--prefix <str>", `prepend this instead of the model's ${prompt}`)
    .option("--no-prefix", "prepend nothing")
    .option("--max-length <n>", "tokens per text including special tokens", positiveInt("--max-length"))
    .option("--batch-size <n>", "texts per forward pass", positiveInt("--batch-size"), 64)
    .option("--device <device>", "cpu, cuda or cuda:N", "cpu");
}

/** `--prefix STR` / `--no-prefix` / neither, as EncodeOptions.prefix. */
function prefixOf(opts: { prefix?: string | boolean }): string | false | undefined {
  return opts.prefix === false ? false : typeof opts.prefix === "string" ? opts.prefix : undefined;
}

program
  .command("tokenize")
  .description("token ids of each input text, one JSON array per line (special tokens included)")
  .requiredOption("--model <dir>", "model directory (tokenizer.json or vocab.txt)")
  .requiredOption("--input <file>", "texts: .txt (one per line) or .jsonl with a 'text' field (.gz accepted)")
  .option("--max-length <n>", "truncate to n tokens including special tokens", positiveInt("--max-length"))
  .option("--output <file>", "write here instead of standard output")
  .action(async (opts: { model: string; input: string; maxLength?: number; output?: string }) => {
    const { Tokenizer } = await import("../models/tokenizer.js");
    const { readTexts } = await import("../data/texts.js");
    const { createWriteStream } = await import("node:fs");
    const tok = Tokenizer.fromDir(opts.model);
    const max = opts.maxLength ?? tok.modelMaxLength;
    const out: NodeJS.WritableStream = opts.output ? createWriteStream(opts.output) : process.stdout;
    for await (const text of readTexts(opts.input)) {
      if (!out.write(`${JSON.stringify(tok.encode(text, max))}\n`))
        await new Promise<void>((r) => out.once("drain", () => r()));
    }
    if (opts.output) await new Promise<void>((r) => out.end(() => r()));
  });

withEncoding(
  program
    .command("encode")
    .description(
      "embed every input text into a safetensors file (tensor 'embeddings', float32, input order); resumable",
    )
    .requiredOption("--model <dir>", "model directory in Hugging Face format")
    .requiredOption("--input <file>", "texts: .txt (one per line) or .jsonl with a 'text' field (.gz accepted)")
    .requiredOption("--output <file>", "output .safetensors file")
    .addOption(
      new Option("--kind <kind>", "which prompt to prepend").choices(["query", "document"]).default("document"),
    )
    .option("--chunk-size <n>", "texts per resumable chunk on disk", positiveInt("--chunk-size"), 20000),
  "prompt for --kind",
).action(
  async (opts: {
    model: string;
    input: string;
    output: string;
    kind: "query" | "document";
    prefix: string | boolean;
    maxLength?: number;
    batchSize: number;
    chunkSize: number;
    device: string;
  }) => {
    const { EmbeddingModel } = await import("../models/embedding-model.js");
    const { encodeFile } = await import("../models/encode-file.js");
    const { readTexts } = await import("../data/texts.js");
    const cliProgress = (await import("cli-progress")).default;
    let total = 0;
    for await (const _ of readTexts(opts.input)) total++;
    const model = EmbeddingModel.load(opts.model, { device: opts.device });
    const bar = new cliProgress.SingleBar(
      {
        format: "encode {bar} {value}/{total} texts | {speed} texts/s | ETA {eta_formatted}",
        stream: process.stderr,
        etaBuffer: 50,
      },
      cliProgress.Presets.shades_classic,
    );
    const t0 = Date.now();
    bar.start(total, 0, { speed: "0" });
    const result = await encodeFile(model, opts.input, opts.output, {
      kind: opts.kind,
      prefix: prefixOf(opts),
      maxLength: opts.maxLength,
      batchSize: opts.batchSize,
      chunkSize: opts.chunkSize,
      progress: false,
      onProgress: (done) => bar.update(done, { speed: (done / Math.max(1e-3, (Date.now() - t0) / 1000)).toFixed(1) }),
    });
    bar.stop();
    console.error(
      `encoded ${result.rows} texts → ${opts.output} [${result.rows}, ${result.dim}] in ${result.seconds.toFixed(1)} s` +
        (result.resumedChunks ? ` (${result.resumedChunks} chunk(s) resumed)` : ""),
    );
  },
);

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
  const { readAllIdTexts } = await import("../data/texts.js");
  const { readQrels } = await import("../data/beir.js");
  const { fitBetweenModels } = await import("../drift/between-models.js");
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
    const { locateModel, modelRoots } = await import("../lineage/index.js");
    const roots = modelRoots(opts.models);
    opts.old = locateModel(opts.old, roots);
    opts.new = locateModel(opts.new, roots);
  }
  const method = opts.method as "auto";
  if (opts.out === undefined) {
    const { compensatorPath, edgePath, lineageOf, modelId } = await import("../lineage/index.js");
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

const index = program.command("index").description("versioned exact indexes of document embeddings");
withEncoding(
  index
    .command("build")
    .description("embed a corpus once into a new index (safetensors shards + manifest)")
    .requiredOption("--model <dir>", "model directory (its content id is the index's model version)")
    .requiredOption("--corpus <file>", "documents: .jsonl with _id, text (and title), or .txt (ids = line numbers)")
    .requiredOption("--out <dir>", "new index directory")
    .option("--shard-size <n>", "documents per shard", positiveInt("--shard-size"), 100000),
  "document prompt",
).action(async (opts) => {
  const { resolve } = await import("node:path");
  const { versionOf } = await import("../lineage/index.js");
  const { EmbeddingModel } = await import("../models/embedding-model.js");
  const { readIdTexts, chunked } = await import("../data/texts.js");
  const { ExactIndex } = await import("../index/exact-index.js");
  const model = EmbeddingModel.load(opts.model, { device: opts.device });
  const idx = ExactIndex.create(opts.out, model.dimension);
  const prefix = prefixOf(opts);
  let n = 0;
  for await (const docs of chunked(readIdTexts(opts.corpus), opts.shardSize)) {
    const emb = model.encode(
      docs.map((d) => d.text),
      {
        kind: "document",
        batchSize: opts.batchSize,
        maxLength: opts.maxLength,
        prefix,
        progress: process.stderr.isTTY === true,
      },
    );
    idx.addShard(
      emb,
      docs.map((d) => d.id),
      versionOf(opts.model),
      resolve(opts.model),
    );
    emb.dispose();
    n += docs.length;
  }
  console.error(`indexed ${n} documents with ${versionOf(opts.model)} (${resolve(opts.model)}) → ${opts.out}`);
});

withEncoding(
  index
    .command("reembed")
    .description("re-embed the shards of older versions with a newer model, one shard at a time (resumable)")
    .requiredOption("--index <dir>", "index directory")
    .requiredOption("--model <dir>", "the model to re-embed with (becomes those shards' version)")
    .requiredOption("--corpus <file>", "the corpus the index was built from (ids must match)")
    .option("--max-shards <n>", "re-embed at most this many shards now", positiveInt("--max-shards")),
  "document prompt",
).action(async (opts) => {
  const { resolve } = await import("node:path");
  const { versionId, versionOf } = await import("../lineage/index.js");
  const { EmbeddingModel } = await import("../models/embedding-model.js");
  const { readIdTexts } = await import("../data/texts.js");
  const { ExactIndex } = await import("../index/exact-index.js");
  const idx = ExactIndex.open(opts.index);
  const version = versionOf(opts.model);
  // a shard of a path version (earlier releases) is stale unless that path holds this very model
  const stale = idx.manifest.shards
    .map((s, i) => ({ s, i }))
    .filter(({ s }) => s.modelVersion !== version && versionId(s.modelVersion) !== version)
    .slice(0, opts.maxShards ?? Number.POSITIVE_INFINITY);
  if (!stale.length) {
    console.error(`every shard of ${opts.index} is already at ${version}`);
    return;
  }
  const wanted = new Set(stale.flatMap(({ s }) => idx.shardIds(s)));
  const texts = new Map<string, string>();
  for await (const d of readIdTexts(opts.corpus)) if (wanted.has(d.id)) texts.set(d.id, d.text);
  const model = EmbeddingModel.load(opts.model, { device: opts.device });
  if (model.dimension !== idx.manifest.dim)
    throw new Error(`the model embeds ${model.dimension}-d vectors, the index holds ${idx.manifest.dim}-d ones`);
  const t0 = performance.now();
  let done = 0;
  for (const { s, i } of stale) {
    const ids = idx.shardIds(s);
    const missing = ids.find((id) => !texts.has(id));
    if (missing !== undefined)
      throw new Error(`${opts.corpus}: document '${missing}' of shard ${i} is not in the corpus`);
    const emb = model.encode(
      ids.map((id) => texts.get(id) as string),
      { kind: "document", batchSize: opts.batchSize, maxLength: opts.maxLength, prefix: prefixOf(opts) },
    );
    idx.replaceShard(i, emb, version, resolve(opts.model));
    emb.dispose();
    done += ids.length;
    const secs = (performance.now() - t0) / 1000;
    console.error(`shard ${i}: ${ids.length} documents re-embedded (${(done / secs).toFixed(1)} docs/s)`);
  }
  const left = idx.manifest.shards.filter((s) => s.modelVersion !== version).length;
  console.error(`re-embedded ${done} documents with ${version}; ${left} shard(s) of older versions left`);
});

withEncoding(
  program
    .command("search")
    .description("exact top-k search of an index; queries of a newer model are compensated along its lineage")
    .requiredOption("--index <dir>", "index directory")
    .requiredOption("--model <dir>", "query model (the index's model or a descendant)")
    .requiredOption("--queries <file>", "queries: .jsonl with _id and text, or .txt (ids = line numbers)")
    .requiredOption("--output <file>", "TREC run file")
    .addOption(
      new Option("--compensate <mode>", "how queries reach older shards").choices(COMPENSATION_MODES).default("mean"),
    )
    .option("-k <n>", "results per query", positiveInt("-k"), 100)
    .option("--run-name <name>", "last column of the TREC run", "qdc")
    .option("--models <dirs...>", MODELS_HELP),
  "query prompt",
).action(async (opts) => {
  const { EmbeddingModel } = await import("../models/embedding-model.js");
  const { readAllIdTexts } = await import("../data/texts.js");
  const { ExactIndex } = await import("../index/exact-index.js");
  const { QueryRouter } = await import("../retrieval/router.js");
  const { writeRun } = await import("../eval/trec.js");
  const idx = ExactIndex.open(opts.index);
  const model = EmbeddingModel.load(opts.model, { device: opts.device });
  // every version in the index must be reachable before any work is done, with queries of the
  // index's dimension (a model of another size reaches it through a map into its space)
  const { modelRoots, rememberModel } = await import("../lineage/index.js");
  // the shards' models, where they still are, are found without a root
  const { existsSync } = await import("node:fs");
  for (const s of idx.manifest.shards)
    if (s.modelDir && existsSync(s.modelDir))
      try {
        rememberModel(s.modelDir);
      } catch {
        // not a model directory any more
      }
  const router = new QueryRouter(opts.model, opts.compensate, modelRoots(opts.models));
  router.check(idx.versions);
  const { tidy } = await import("../tensor/index.js");
  for (const v of idx.versions) {
    const width = tidy(() =>
      router
        .chain(v)(model.encode(["x"], { kind: "query" }))
        .size(1),
    );
    if (width !== idx.manifest.dim)
      throw new Error(
        `the model's queries reach rows of ${v} as ${width}-d vectors (the model embeds ${model.dimension}-d ones), the index holds ${idx.manifest.dim}-d ones${opts.compensate === "none" ? ": compensate with a map into its space (--compensate procrustes|affine|mlp|local)" : ""}`,
      );
  }
  const queries = await readAllIdTexts(opts.queries);
  const prefix = prefixOf(opts);
  const emb = model.encode(
    queries.map((q) => q.text),
    { kind: "query", batchSize: opts.batchSize, maxLength: opts.maxLength, prefix },
  );
  // ExactIndex.search asks for each version's queries once
  const hits = idx.search(emb, opts.k, { transform: (v) => router.chain(v)(emb) });
  writeRun(
    opts.output,
    queries.map((q) => q.id),
    hits,
    opts.runName,
  );
  const how = [...new Set(idx.versions.map((v) => router.compensation(v)))].join(", ");
  console.error(`searched ${queries.length} queries (compensation: ${how}) → ${opts.output}`);
});

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
    const { readQrels } = await import("../data/beir.js");
    const { readRun } = await import("../eval/trec.js");
    const { evaluate, formatEvaluation, parseMeasures } = await import("../eval/metrics.js");
    const specs: string[] = opts.measure.length
      ? opts.measure
      : ["ndcg_cut.10", "recall.100", "map_cut.100", "recip_rank.10"];
    const measures = specs.flatMap(parseMeasures);
    const e = evaluate(await readQrels(opts.qrels), await readRun(opts.run), measures, { allQueries: opts.allQueries });
    if (opts.json) {
      const perQuery = opts.perQuery ? Object.fromEntries(e.perQuery) : undefined;
      process.stdout.write(`${JSON.stringify({ queries: e.queries, mean: e.mean, perQuery }, null, 1)}\n`);
    } else process.stdout.write(formatEvaluation(e, { perQuery: opts.perQuery }));
  });

const store = program
  .command("store")
  .description("vector stores (LanceDB directory, or postgres://…#table) for the search service");
store
  .command("load")
  .description("embed a corpus into a store (created with the model's dimension and --fields)")
  .requiredOption("--store <uri>", "a directory (LanceDB) or postgres://user@host/db#table (pgvector)")
  .requiredOption("--model <dir>", "model directory (its content id is the rows' version)")
  .requiredOption("--corpus <file>", "documents: .jsonl with _id, text (and title, and the --fields)")
  .option("--fields <list>", "filterable fields taken from the corpus rows: name:string,name:number")
  .option("--batch-size <n>", "texts per forward pass", positiveInt("--batch-size"), 32)
  .option("--max-length <n>", "tokens per text", positiveInt("--max-length"))
  .option("--ann-threshold <n>", "rows from which the ANN index is built", positiveInt("--ann-threshold"), 100000)
  .option("--device <device>", "cpu, cuda or cuda:N", "cpu")
  .action(async (opts) => {
    const { openStore } = await import("../store/open.js");
    const { checkCorpus, loadCorpus, parseFields } = await import("../server/load.js");
    const { readConfig } = await import("../models/config.js");
    const { join } = await import("node:path");
    const dim = readConfig(join(opts.model, "config.json")).hiddenSize;
    const schema = { dim, fields: parseFields(opts.fields) };
    // the whole corpus is checked before the store is created or written
    const rows = await checkCorpus(opts.corpus, schema);
    const s = await openStore(opts.store, schema, { annThreshold: opts.annThreshold });
    try {
      const n = await loadCorpus(s, opts.model, opts.corpus, {
        checkedRows: rows,
        batchSize: opts.batchSize,
        maxLength: opts.maxLength,
        device: opts.device,
        onProgress: (done, secs) => console.error(`loaded ${done} documents (${(done / secs).toFixed(1)} docs/s)`),
        onResume: (rows) =>
          console.error(`${opts.store}: an earlier load of this corpus wrote ${rows} rows; going on after them`),
        crashAfterWrites: process.env.QDC_TEST_CRASH_AFTER_WRITES
          ? Number(process.env.QDC_TEST_CRASH_AFTER_WRITES)
          : undefined,
      });
      console.error(
        `${opts.store}: ${n} documents with ${opts.model}; ${await s.count()} rows, ANN index: ${s.indexed}`,
      );
    } finally {
      await s.close();
    }
  });

store
  .command("reindex")
  .description("re-embed every row of older versions with --model, resumably (what the service does in the background)")
  .requiredOption("--store <uri>", "store URI")
  .option("--model <dir>", "the model to re-embed with: a directory or an id (default: the model the store records)")
  .option("--models <dirs...>", MODELS_HELP)
  .option("--batch-size <n>", "documents per forward pass", positiveInt("--batch-size"), 64)
  .option("--write-rows <n>", "documents per store write", positiveInt("--write-rows"), 1024)
  .option("--device <device>", "cpu, cuda or cuda:N", "cpu")
  .action(async (opts) => {
    const { openStore } = await import("../store/open.js");
    const { SearchService } = await import("../server/service.js");
    const { Reindexer } = await import("../server/reindex.js");
    const s = await openStore(opts.store);
    // one process does the work here: no encoder processes
    const service = await SearchService.create({
      store: s,
      modelDir: opts.model,
      modelRoots: opts.models,
      device: opts.device,
      encoder: "inline",
    });
    const crash = process.env.QDC_TEST_CRASH_AFTER_WRITES;
    const r = new Reindexer(service, {
      batchSize: opts.batchSize,
      writeRows: opts.writeRows,
      resume: false,
      log: (st) =>
        console.error(
          `reindex ${st.state}: ${st.done} done, ${st.remaining ?? "?"} left (${st.docsPerSecond.toFixed(1)} docs/s)`,
        ),
      crashAfterWrites: crash ? Number(crash) : undefined,
    });
    if (r.status.state !== "running") r.start();
    const st = await r.settled();
    await service.close();
    if (st.state === "failed") throw new Error(`re-index failed: ${st.error}`);
  });

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
    const { openStore } = await import("../store/open.js");
    const { locateModel, modelRoots } = await import("../lineage/index.js");
    const { InlineEncoder } = await import("../server/encoder.js");
    const { checkUpgrade, describeCheck } = await import("../server/upgrade-check.js");
    const { readAllIdTexts } = await import("../data/texts.js");
    const { readQrels } = await import("../data/beir.js");
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

program
  .command("migrate")
  .description(
    "rewrite what earlier releases wrote with model paths: lineage records under --models to parent ids, stores' rows and state to model ids",
  )
  .requiredOption("--models <dirs...>", "folders whose model directories' lineage records are rewritten")
  .option("--store <uris...>", "stores whose path versions are retagged with their models' ids")
  .action(async (opts) => {
    const { migrateRecords } = await import("../lineage/index.js");
    const { migrateStore } = await import("../store/migrate.js");
    const { openStore } = await import("../store/open.js");
    let problems = 0;
    for (const root of opts.models as string[]) {
      const r = migrateRecords(root);
      for (const [dir, id] of Object.entries(r.migrated)) console.error(`${dir}: lineage record rewritten (id ${id})`);
      for (const [dir, why] of Object.entries(r.skipped)) console.error(`${dir}: left as it is: ${why}`);
      problems += Object.keys(r.skipped).length;
      console.error(
        `${root}: ${Object.keys(r.migrated).length} lineage record(s) rewritten, ${r.current} already current, ${Object.keys(r.skipped).length} left`,
      );
    }
    for (const uri of (opts.store ?? []) as string[]) {
      const s = await openStore(uri);
      try {
        const r = await migrateStore(s);
        for (const [path, id] of Object.entries(r.retagged)) console.error(`${uri}: rows of ${path} retagged ${id}`);
        for (const path of r.missing)
          console.error(`${uri}: rows of ${path} left as they are: no model there (restore it and migrate again)`);
        problems += r.missing.length;
        console.error(
          `${uri}: ${Object.keys(r.retagged).length} version(s) retagged${r.state ? ", state rewritten" : ""}`,
        );
      } finally {
        await s.close();
      }
    }
    if (problems) process.exitCode = 1;
  });

program
  .command("serve")
  .description("the search service: HTTP search over a store, zero-downtime model upgrades, background re-index")
  .option("--store <uri>", "store URI: a directory (LanceDB) or postgres://user@host/db#table (pgvector)")
  .option("--index <uri>", "the same as --store")
  .option(
    "--model <dir>",
    "the model to serve: a directory or an id (default: the one the store records from its last service)",
  )
  .option("--models <dirs...>", MODELS_HELP)
  .option("--port <n>", "TCP port", nonNegativeInt("--port"), 8080)
  .option("--host <host>", "address to listen on", "127.0.0.1")
  .option("--token <token>", "bearer token for /admin (default: QDC_ADMIN_TOKEN)")
  .addOption(
    new Option(
      "--compensate <mode>",
      "how older rows are reached (default: as recorded in the store, else mean)",
    ).choices(FIT_METHODS),
  )
  .option("--reindex-batch <n>", "documents per forward pass of the re-indexer", positiveInt("--reindex-batch"), 64)
  .option("--reindex-write <n>", "documents per store write of the re-indexer", positiveInt("--reindex-write"), 1024)
  .addOption(
    new Option("--encoder <where>", "where models run: a child process (event loop stays free) or inline")
      .choices(["process", "inline"])
      .default("process"),
  )
  .option("--encoder-threads <n>", "libtorch threads of the query encoder process", positiveInt("--encoder-threads"), 1)
  .option("--max-batch <n>", "most query texts in one batched forward pass", positiveInt("--max-batch"), 64)
  .option("--ef <n>", "HNSW candidate list per search (LanceDB ef, pgvector hnsw.ef_search)", positiveInt("--ef"))
  .option(
    "--upgrade-min-overlap <x>",
    "refuse an upgrade whose compensated results keep less than this share of the current top-10 (0–1)",
    number("--upgrade-min-overlap"),
  )
  .option("--upgrade-queries <file>", "queries that check uses (default: pseudo-queries of 200 stored documents)")
  .option("--allow-incomplete", "serve a store whose last `qdc store load` did not finish")
  .option("--device <device>", "cpu, cuda or cuda:N", "cpu")
  .action(async (opts) => {
    const { openStore } = await import("../store/open.js");
    const { SearchService } = await import("../server/service.js");
    const { Reindexer } = await import("../server/reindex.js");
    const { buildApp } = await import("../server/http.js");
    const min = opts.upgradeMinOverlap;
    if (min !== undefined && !(min >= 0 && min <= 1))
      throw new Error(`--upgrade-min-overlap must be a share from 0 to 1, got ${min}`);
    opts.store ??= opts.index;
    if (!opts.store) throw new Error("serve: give --store (or --index)");
    const s = await openStore(opts.store, undefined, { ef: opts.ef });
    const service = await SearchService.create({
      store: s,
      modelDir: opts.model,
      modelRoots: opts.models,
      allowIncomplete: opts.allowIncomplete,
      device: opts.device,
      upgradeCheck: {
        minOverlap: opts.upgradeMinOverlap,
        queries: opts.upgradeQueries
          ? await (await import("../data/texts.js")).readAllIdTexts(opts.upgradeQueries, { requireIds: false })
          : undefined,
      },
      compensate: opts.compensate,
      encoder: opts.encoder,
      encoderThreads: opts.encoderThreads,
      maxBatch: opts.maxBatch,
    });
    const reindexer = new Reindexer(service, { batchSize: opts.reindexBatch, writeRows: opts.reindexWrite });
    const app = buildApp(service, reindexer, { token: opts.token ?? process.env.QDC_ADMIN_TOKEN });
    const address = await app.listen({ port: opts.port, host: opts.host });
    const rs = reindexer.status;
    console.error(
      `qdc serve: ${address} (model ${service.model.version} at ${service.model.dir}, ${s.kind} store, ${await s.count()} rows${rs.state === "running" ? `, resuming the re-index to ${rs.target}` : ""})`,
    );
    const stop = async () => {
      // requests in flight get 10 s to finish (store queries have their own timeouts)
      setTimeout(() => {
        console.error("qdc serve: requests still running after 10 s; exiting");
        process.exit(1);
      }, 10000).unref();
      reindexer.pause();
      await app.close();
      await reindexer.settled();
      await service.close();
      process.exit(0);
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });

function number(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === "" || !Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number, got '${v}'`);
    return n;
  };
}
function nonNegativeInt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0)
      throw new InvalidArgumentError(`${name} must be a non-negative integer, got '${v}'`);
    return n;
  };
}

program
  .command("train")
  .description(
    "fine-tune an embedding model contrastively (InfoNCE + optional embedding distillation); resumable.\n" +
      "Either --config run.yaml (the continual runner: tasks in order) or the flags for one task.",
  )
  .option("--config <file>", "YAML run file: tasks in order, each from the previous task's model")
  .option("--data <files...>", "training rows: JSONL or JSONL.gz {query, document, negatives}")
  .option("--beir <dir>", "train on a BEIR folder's qrels pairs instead of --data")
  .option("--split <name>", "BEIR split for --beir", "train")
  .option("--init <dir>", "starting model directory")
  .option("--out <dir>", "trained model directory (with train.log.jsonl and checkpoint/)")
  .option("--batch-size <n>", "queries per step", positiveInt("--batch-size"), 32)
  .option(
    "--negatives <k>",
    "hard negatives per query (default: the fewest any training row carries)",
    nonNegativeInt("--negatives"),
  )
  .option("--lr <x>", "peak learning rate", number("--lr"), 2e-5)
  .option("--warmup <n>", "warm-up steps", nonNegativeInt("--warmup"), 0)
  .option("--steps <n>", "optimiser steps", positiveInt("--steps"))
  .option("--weight-decay <x>", "AdamW weight decay (not on biases and 1-d parameters)", number("--weight-decay"), 0.01)
  .option("--kd-query <w>", "weight of query embedding distillation (0: off)", number("--kd-query"), 0)
  .option("--kd-doc <w>", "weight of document embedding distillation (0: off)", number("--kd-doc"), 0)
  .option("--logit-scale <s>", "InfoNCE logit scale", number("--logit-scale"), 50)
  .option("--trainable-scale", "learn the logit scale (starting from --logit-scale)")
  .option(
    "--grad-cache <n>",
    "GradCache: embed at most n texts per forward pass (exact loss, bounded memory)",
    positiveInt("--grad-cache"),
  )
  .addOption(
    new Option("--precision <p>", "bf16 compute with float32 master weights, or fp32 (auto: bf16 on CUDA)")
      .choices(["auto", "bf16", "fp32"])
      .default("auto"),
  )
  .option("--bidirectional", "add the document→query InfoNCE term")
  .option("--clip <x>", "gradient-norm clipping (0: off)", number("--clip"), 1.0)
  .option("--accumulation <n>", "micro-batches per step", positiveInt("--accumulation"), 1)
  .option("--no-shuffle", "read rows in file order")
  .option("--no-prefix", "do not prepend the model's query/document prompts")
  .option("--seed <n>", "random seed", nonNegativeInt("--seed"), 0)
  .option("--max-length <n>", "tokens per text", positiveInt("--max-length"), 128)
  .option("--checkpoint-every <n>", "steps between checkpoints", positiveInt("--checkpoint-every"))
  .option("--resume", "continue from the checkpoint in --out")
  .option("--device <device>", "cpu, cuda or cuda:N", "cpu")
  .action(async (opts) => {
    if (opts.config) {
      const { readRunConfig, runContinual } = await import("../train/continual.js");
      const { driftAfterTask } = await import("../drift/task-drift.js");
      const config = readRunConfig(opts.config);
      const log = (m: string) => console.error(m);
      const dirs = await runContinual(config, {
        progress: process.stderr.isTTY === true,
        log,
        afterTask: driftAfterTask(config.drift, { device: config.device, log }),
      });
      console.error(`run finished: ${dirs.join(", ")}`);
      return;
    }
    const missing = ["init", "out", "steps"].filter((k) => opts[k] === undefined);
    if (!opts.data && !opts.beir) missing.unshift("data (or --beir)");
    if (missing.length)
      throw new Error(`train: give --config, or the flags ${missing.map((m) => `--${m}`).join(", ")}`);
    const { train } = await import("../train/trainer.js");
    const data = opts.beir ? { beir: opts.beir, split: opts.split } : opts.data;
    if (opts.negatives === undefined) {
      const { RowStream } = await import("../data/pairs.js");
      opts.negatives = await new RowStream(data).negativesCarried();
      console.error(
        `train: ${opts.negatives} hard negative(s) per query (the fewest any row carries; --negatives to choose)`,
      );
    }
    const r = await train({
      data,
      init: opts.init,
      out: opts.out,
      batchSize: opts.batchSize,
      negatives: opts.negatives,
      lr: opts.lr,
      warmup: opts.warmup,
      steps: opts.steps,
      weightDecay: opts.weightDecay,
      kdQuery: opts.kdQuery,
      kdDoc: opts.kdDoc,
      logitScale: opts.logitScale,
      trainableScale: opts.trainableScale ?? false,
      gradCacheChunk: opts.gradCache,
      precision: opts.precision,
      bidirectional: opts.bidirectional ?? false,
      clip: opts.clip,
      accumulation: opts.accumulation,
      shuffle: opts.shuffle,
      prefix: opts.prefix,
      seed: opts.seed,
      maxLength: opts.maxLength,
      checkpointEvery: opts.checkpointEvery,
      resume: opts.resume ?? false,
      device: opts.device,
      progress: process.stderr.isTTY === true,
    });
    console.error(
      `trained ${r.steps} steps${r.resumedFrom ? ` (resumed at step ${r.resumedFrom})` : ""} → ${opts.out}`,
    );
  });

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
  (await import("../bench/engine.js")).runEngineBench(o),
);
benchCommand(
  "encode",
  "documents/s of encoding with random-init BERTs (4×256 and base), same weights on both sides",
  async (o) => (await import("../bench/encode.js")).runEncodeBench(o),
);
benchCommand("train", "time of one contrastive training step (BERT 4×256 on CPU, BERT-base on CUDA)", async (o) =>
  (await import("../bench/train.js")).runTrainBench(o),
);
benchCommand(
  "drift",
  "µs per query of each drift compensator, and exact search queries/s over 100k and 1M vectors",
  async (o) => (await import("../bench/drift.js")).runDriftBench(o),
);
bench
  .command("adapters")
  .description(
    "any-to-any upgrades: the share of an independently trained, wider model's re-indexed nDCG@10 each cross-dimension adapter recovers over the old model's index, per task and pooled, with µs/query",
  )
  .option("--config <name|file>", "benchmark config whose offline tasks and base model are used", "tiny")
  .option("--hidden <n>", "model B's width (default 1.5 × A's)", positiveInt("--hidden"))
  .option(
    "--pairs <n>",
    "training queries and training documents per task fitted on, with its corpus (default 2000)",
    positiveInt("--pairs"),
  )
  .addOption(new Option("--device <device>", "cpu or cuda").default("cpu"))
  .option("--out <file>", "write the results as JSON here")
  .option("--quick", "fewer pairs and shorter timing (for smoke runs)")
  .action(async (o) => (await import("../bench/adapters.js")).runAdapterBench({ ...o, peer: false, python: "" }));
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
    (await import("../bench/serve.js")).runServeBench({
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
  .action(async (opts: { config: string; out?: string; device?: string }) => {
    const { readBenchmarkConfig } = await import("../eval/config.js");
    const { runBenchmark } = await import("../eval/protocol.js");
    const { formatMarkdown } = await import("../eval/report.js");
    const config = readBenchmarkConfig(opts.config, { out: opts.out });
    if (opts.device) config.device = opts.device;
    const report = await runBenchmark(config, { progress: process.stderr.isTTY === true });
    process.stdout.write(formatMarkdown(report));
    console.error(`results: ${config.out}/results.md, results.json, figure.svg`);
  });

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
    const { buildBenchmark } = await import("../corpora/build.js");
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

program.parseAsync(process.argv).catch((e: unknown) => {
  console.error(`qdc: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
