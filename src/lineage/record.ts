/**
 * The lineage record of a model directory, `lineage.json`: the model's content id (with the stamps
 * of the files it was computed from), its parent's id and where the parent was relative to it, and
 * whatever the command that made it adds (task, run, time). Written by every command that creates a
 * model (`qdc train`, the continual runner, `EmbeddingModel.save`).
 *
 *     { "id": "3fa2c1d09b7e4a55", "files": {…}, "parent": { "id": "…", "path": "../t1" }, "task": "t2" }
 *
 * Records of earlier qdc releases hold the parent as a path (`"parent": "/runs/kd/t1"`); they are
 * read as before and rewritten by `qdc migrate`.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { contentId, identityFiles, stampsOf } from "./identity.js";

export const LINEAGE_FILE = "lineage.json";

export interface LineageRecord {
  id?: string;
  files?: Record<string, string>;
  /** the parent: its id and relative path (a path alone in records of earlier releases) */
  parent?: { id: string; path?: string } | string | null;
  [extra: string]: unknown;
}

/** The record in `dir`, or null when it has none; a corrupt record is an error naming the file. */
export function readLineage(dir: string): LineageRecord | null {
  const file = join(dir, LINEAGE_FILE);
  if (!existsSync(file)) return null;
  let record: unknown;
  try {
    record = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw new Error(
      `${file}: not a readable lineage record (${(e as Error).message}); it holds the model's id and parent as {"id": ID, "parent": {"id": ID, "path": DIR}}`,
    );
  }
  if (!record || typeof record !== "object" || Array.isArray(record))
    throw new Error(`${file}: a lineage record is a JSON object, got ${JSON.stringify(record)}`);
  return record as LineageRecord;
}

/** The content id of the model in `dir` (cached in its lineage record). */
export function modelId(dir: string): string {
  return contentId(dir, readLineage(dir) ?? undefined);
}

/**
 * Writes `dir`'s lineage record: its id, `parent` (a model directory, or null for a model of its
 * own) by id and relative path, and `extra` fields. Replaces the file atomically.
 */
export function writeLineage(dir: string, parent: string | null, extra: Record<string, unknown> = {}): LineageRecord {
  const abs = resolve(dir);
  const files = identityFiles(abs);
  const record: LineageRecord = {
    ...extra,
    id: contentId(abs, undefined, true),
    files: stampsOf(abs, files),
    parent: parent === null ? null : { id: modelId(parent), path: relative(abs, resolve(parent)) || "." },
  };
  const file = join(abs, LINEAGE_FILE);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(record, null, 2)}\n`);
  renameSync(tmp, file);
  return record;
}
