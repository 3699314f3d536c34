/** TREC run files: `qid Q0 docid rank score tag` per line. */
import { writeSync } from "node:fs";
import { InputError, readLines } from "../data/lines.js";
import type { Hit } from "../retrieval/hit.js";
import { writeAtomically } from "../tensor/index.js";
import type { Run } from "./metrics.js";

export async function readRun(file: string): Promise<Run> {
  const run: Run = new Map();
  for await (const [line, n] of readLines(file)) {
    if (line.trim() === "") continue;
    const cols = line.trim().split(/\s+/);
    if (cols.length !== 6)
      throw new InputError(file, n, `expected 6 columns (qid Q0 docid rank score tag), got ${cols.length}`);
    const [qid, , doc, , scoreText] = cols as [string, string, string, string, string];
    const score = Number(scoreText);
    if (!Number.isFinite(score)) throw new InputError(file, n, `score ${JSON.stringify(scoreText)} is not a number`);
    let q = run.get(qid);
    if (!q) {
      q = new Map();
      run.set(qid, q);
    }
    if (q.has(doc)) throw new InputError(file, n, `document '${doc}' appears twice for query '${qid}'`);
    q.set(doc, score);
  }
  return run;
}

/** What a run needs of a hit. */
export type RankedHit = Pick<Hit, "id" | "score">;

/** Writes a run atomically; scores with 6 decimals (trec_eval reads what is printed). */
export function writeRun(file: string, queryIds: string[], hits: RankedHit[][], tag = "qdc"): void {
  writeAtomically(file, (fd) => {
    hits.forEach((h, i) => {
      const qid = queryIds[i] as string;
      writeSync(fd, h.map((x, r) => `${qid} Q0 ${x.id} ${r + 1} ${x.score.toFixed(6)} ${tag}\n`).join(""));
    });
  });
}

/** In-memory run from search hits, with the scores as a run file would round them. */
export function runFromHits(queryIds: string[], hits: RankedHit[][]): Run {
  const run: Run = new Map();
  hits.forEach((h, i) => {
    run.set(queryIds[i] as string, new Map(h.map((x) => [x.id, Number(x.score.toFixed(6))])));
  });
  return run;
}
