/** `qdc migrate`: path versions of earlier releases to content ids. */
import type { Command } from "commander";

export function register(program: Command): void {
  program
    .command("migrate")
    .description(
      "rewrite what earlier releases wrote with model paths: lineage records under --models to parent ids, stores' rows and state to model ids",
    )
    .requiredOption("--models <dirs...>", "folders whose model directories' lineage records are rewritten")
    .option("--store <uris...>", "stores whose path versions are retagged with their models' ids")
    .action(async (opts) => {
      const { migrateRecords } = await import("../../lineage/index.js");
      const { migrateStore } = await import("../../store/migrate.js");
      const { openStore } = await import("../../store/open.js");
      let problems = 0;
      for (const root of opts.models as string[]) {
        const r = migrateRecords(root);
        for (const [dir, id] of Object.entries(r.migrated))
          console.error(`${dir}: lineage record rewritten (id ${id})`);
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
}
