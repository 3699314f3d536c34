/** `qdc serve`: the search service. */
import { type Command, Option } from "commander";
import { FIT_METHODS } from "../../lineage/methods.js";
import { MODELS_HELP, nonNegativeInt, number, positiveInt, share } from "../options.js";

export function register(program: Command): void {
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
    .option(
      "--reindex-share <x>",
      "share of the time the re-index may work while searches come in (0 < x ≤ 1)",
      share("--reindex-share"),
      0.25,
    )
    .addOption(
      new Option("--encoder <where>", "where models run: a child process (event loop stays free) or inline")
        .choices(["process", "inline"])
        .default("process"),
    )
    .option(
      "--encoder-threads <n>",
      "libtorch threads of the query encoder process",
      positiveInt("--encoder-threads"),
      1,
    )
    .option("--max-batch <n>", "most query texts in one batched forward pass", positiveInt("--max-batch"), 64)
    .option("--ef <n>", "HNSW candidate list per search (LanceDB ef, pgvector hnsw.ef_search)", positiveInt("--ef"))
    .option(
      "--upgrade-min-overlap <x>",
      "refuse an upgrade whose compensated results keep less than this share of the current top-10 (0–1)",
      number("--upgrade-min-overlap"),
    )
    .option("--upgrade-queries <file>", "queries that check uses (default: pseudo-queries of 200 stored documents)")
    .option(
      "--follow <seconds>",
      "replicas: how often to look at the store for another replica's upgrade or rollback, or a re-index to take over (0: never)",
      number("--follow"),
      5,
    )
    .option(
      "--reindex-lease <seconds>",
      "the store's re-index lease (one replica re-indexes; another takes over once a dead one's lease expires)",
      positiveInt("--reindex-lease"),
      30,
    )
    .option("--allow-incomplete", "serve a store whose last `qdc store load` did not finish")
    .option("--device <device>", "cpu, cuda or cuda:N", "cpu")
    .action(async (opts) => {
      const { openStore } = await import("../../store/open.js");
      const { SearchService } = await import("../../server/service.js");
      const { Reindexer } = await import("../../server/reindex.js");
      const { buildApp } = await import("../../server/http.js");
      const { followStore } = await import("../../server/follow.js");
      if (!(opts.follow >= 0)) throw new Error(`--follow must be seconds ≥ 0, got ${opts.follow}`);
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
            ? await (await import("../../data/texts.js")).readAllIdTexts(opts.upgradeQueries, { requireIds: false })
            : undefined,
        },
        compensate: opts.compensate,
        encoder: opts.encoder,
        encoderThreads: opts.encoderThreads,
        maxBatch: opts.maxBatch,
      });
      const reindexer = new Reindexer(service, {
        batchSize: opts.reindexBatch,
        writeRows: opts.reindexWrite,
        share: opts.reindexShare,
        lease: opts.reindexLease,
      });
      const follower = opts.follow > 0 ? followStore(service, reindexer, opts.follow) : null;
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
        await follower?.stop();
        await app.close();
        // recorded as running still: a restart, or another replica, goes on with it
        await reindexer.stop();
        await service.close();
        process.exit(0);
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
}
