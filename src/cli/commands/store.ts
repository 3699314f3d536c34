/** `qdc store load / reindex`: vector stores for the service. */
import { type Command, InvalidArgumentError } from "commander";
import { MODELS_HELP, positiveInt } from "../options.js";

/** `--worker i/n`: worker i (0-based) of n */
function workerPart(value: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(value);
  const index = Number(m?.[1]);
  const count = Number(m?.[2]);
  if (!m || !(count >= 1) || index >= count)
    throw new InvalidArgumentError(`--worker takes i/n with 0 ≤ i < n (worker i of n), got '${value}'`);
  return { index, count };
}

export function register(program: Command): void {
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
      const { openStore } = await import("../../store/open.js");
      const { checkCorpus, loadCorpus, parseFields } = await import("../../server/load.js");
      const { readConfig } = await import("../../models/config.js");
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
    .description(
      "re-embed every row of older versions with --model, resumably (what the service does in the background)",
    )
    .requiredOption("--store <uri>", "store URI")
    .option("--model <dir>", "the model to re-embed with: a directory or an id (default: the model the store records)")
    .option("--models <dirs...>", MODELS_HELP)
    .option("--batch-size <n>", "documents per forward pass", positiveInt("--batch-size"), 64)
    .option("--write-rows <n>", "documents per store write", positiveInt("--write-rows"), 1024)
    .option("--device <device>", "cpu, cuda or cuda:N", "cpu")
    .option(
      "--worker <i/n>",
      "one of n workers (0-based i) re-embedding the store at once: this one takes its n-th of the ids (both stores)",
      workerPart,
    )
    .option(
      "--lease <seconds>",
      "pgvector: take rows by claiming them for this long (any number of workers share the rows; a dead worker's rows are taken over once its claims expire)",
      positiveInt("--lease"),
    )
    .action(async (opts) => {
      const { openStore } = await import("../../store/open.js");
      const { SearchService } = await import("../../server/service.js");
      const { Reindexer } = await import("../../server/reindex.js");
      const { hostname } = await import("node:os");
      const { randomUUID } = await import("node:crypto");
      const s = await openStore(opts.store);
      if (opts.lease && s.kind !== "pgvector") {
        await s.close();
        throw new Error(`--lease: a ${s.kind} store takes no claims; give each worker its part with --worker I/N`);
      }
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
        worker:
          opts.worker || opts.lease
            ? {
                part: opts.worker,
                claim: opts.lease
                  ? { owner: `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`, seconds: opts.lease }
                  : undefined,
              }
            : undefined,
      });
      if (opts.worker && s.kind !== "pgvector") {
        // LanceDB workers beside a service's running re-index could write one row twice: refused
        const { REINDEX_LEASE } = await import("../../server/reindex.js");
        const held = await s.lease(REINDEX_LEASE, r.owner, 1);
        if (held.owner === r.owner) await s.releaseLease(REINDEX_LEASE, r.owner);
        else {
          await service.close();
          throw new Error(
            `the re-index of this store runs in ${held.owner}: pause it there before starting LanceDB workers (they would write rows beside it)`,
          );
        }
      }
      const other = await r.acquire();
      if (other) {
        await service.close();
        throw new Error(
          `the re-index of this store runs in ${other.owner} (its lease lasts until ${new Date(other.until).toISOString()}): ${s.kind === "pgvector" ? "work beside it with --lease S (claimed rows; an upsert replaces by id), or wait for it" : "wait for it, or pause it there and run workers with --worker I/N (LanceDB workers beside a running re-index could write one row twice)"}`,
        );
      }
      if (r.status.state !== "running") r.start();
      const st = await r.settled();
      await service.close();
      if (st.state === "failed") throw new Error(`re-index failed: ${st.error}`);
    });
}
