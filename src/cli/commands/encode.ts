/** `qdc tokenize` and `qdc encode`: token ids and embeddings of a text file. */
import { type Command, Option } from "commander";
import { positiveInt, prefixOf, withEncoding } from "../options.js";

export function register(program: Command): void {
  program
    .command("tokenize")
    .description("token ids of each input text, one JSON array per line (special tokens included)")
    .requiredOption("--model <dir>", "model directory (tokenizer.json or vocab.txt)")
    .requiredOption("--input <file>", "texts: .txt (one per line) or .jsonl with a 'text' field (.gz accepted)")
    .option("--max-length <n>", "truncate to n tokens including special tokens", positiveInt("--max-length"))
    .option("--output <file>", "write here instead of standard output")
    .action(async (opts: { model: string; input: string; maxLength?: number; output?: string }) => {
      const { Tokenizer } = await import("../../models/tokenizer.js");
      const { readTexts } = await import("../../data/texts.js");
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
      const { EmbeddingModel } = await import("../../models/embedding-model.js");
      const { encodeFile } = await import("../../models/encode-file.js");
      const { readTexts } = await import("../../data/texts.js");
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
}
