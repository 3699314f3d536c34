/**
 * Records of earlier releases name a model's parent by its path; `migrateRecords` rewrites every
 * such record under a root to the parent's id and relative path (`qdc migrate`), so the run folder
 * can then be moved. A record whose parent path is gone is reported and left as it is.
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { isModelId } from "./identity.js";
import { readLineage, writeLineage } from "./record.js";
import { modelDirs } from "./registry.js";

export interface RecordMigration {
  /** records rewritten: model directory → its id */
  migrated: Record<string, string>;
  /** records already in the current form */
  current: number;
  /** records left as they are, with why */
  skipped: Record<string, string>;
}

export function migrateRecords(root: string): RecordMigration {
  const out: RecordMigration = { migrated: {}, current: 0, skipped: {} };
  for (const dir of modelDirs(root)) {
    const rec = readLineage(dir);
    if (!rec) continue; // a model of its own: its id is computed where it is needed
    const { id, files, parent, ...extra } = rec;
    if (typeof id === "string" && isModelId(id) && (parent === null || typeof parent === "object")) {
      out.current++;
      continue;
    }
    let parentDir: string | null = null;
    if (typeof parent === "string") {
      parentDir = resolve(dir, parent);
      if (!existsSync(parentDir)) {
        out.skipped[dir] = `its parent ${parentDir} is not there`;
        continue;
      }
    }
    out.migrated[dir] = writeLineage(dir, parentDir, extra).id as string;
  }
  return out;
}
