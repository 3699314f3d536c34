/** `qdc index build / reembed` and `qdc search`: the versioned exact index. */
import { type Command, Option } from "commander";
import { COMPENSATION_MODES } from "../../lineage/methods.js";
import { MODELS_HELP, positiveInt, prefixOf, withEncoding } from "../options.js";

export function register(program: Command): void {
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
    const { versionOf } = await import("../../lineage/index.js");
    const { EmbeddingModel } = await import("../../models/embedding-model.js");
    const { readIdTexts, chunked } = await import("../../data/texts.js");
    const { ExactIndex } = await import("../../index/exact-index.js");
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
    const { versionId, versionOf } = await import("../../lineage/index.js");
    const { EmbeddingModel } = await import("../../models/embedding-model.js");
    const { readIdTexts } = await import("../../data/texts.js");
    const { ExactIndex } = await import("../../index/exact-index.js");
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
    const { EmbeddingModel } = await import("../../models/embedding-model.js");
    const { readAllIdTexts } = await import("../../data/texts.js");
    const { ExactIndex } = await import("../../index/exact-index.js");
    const { QueryRouter } = await import("../../retrieval/router.js");
    const { writeRun } = await import("../../eval/trec.js");
    const idx = ExactIndex.open(opts.index);
    const model = EmbeddingModel.load(opts.model, { device: opts.device });
    // every version in the index must be reachable before any work is done, with queries of the
    // index's dimension (a model of another size reaches it through a map into its space)
    const { modelRoots, rememberModel } = await import("../../lineage/index.js");
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
    const { tidy } = await import("../../tensor/index.js");
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
}
