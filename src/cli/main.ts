#!/usr/bin/env node
/**
 * The `qdc` command: one file per command under `commands/`, each a thin layer over the library
 * (options parsed and checked here, the work in the modules it imports). Subcommands load the
 * engine lazily, so --help and --version always work.
 */
import { Command } from "commander";
import { VERSION } from "../version.js";
import { register as benchCommand } from "./commands/bench.js";
import { register as dataCommand } from "./commands/data.js";
import { register as driftCommand } from "./commands/drift.js";
import { register as encodeCommand } from "./commands/encode.js";
import { register as evalCommand } from "./commands/eval.js";
import { register as indexCommand } from "./commands/index.js";
import { register as infoCommand } from "./commands/info.js";
import { register as migrateCommand } from "./commands/migrate.js";
import { register as serveCommand } from "./commands/serve.js";
import { register as storeCommand } from "./commands/store.js";
import { register as trainCommand } from "./commands/train.js";
import { register as upgradeCommand } from "./commands/upgrade.js";

const program = new Command();
program
  .name("qdc")
  .description("Continual learning of dense-retrieval embedding models without re-indexing (query drift compensation)")
  .version(VERSION, "-V, --version")
  .showHelpAfterError();

for (const register of [
  infoCommand,
  encodeCommand,
  driftCommand,
  indexCommand,
  evalCommand,
  storeCommand,
  upgradeCommand,
  migrateCommand,
  serveCommand,
  trainCommand,
  benchCommand,
  dataCommand,
])
  register(program);

program.parseAsync(process.argv).catch((e: unknown) => {
  console.error(`qdc: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
