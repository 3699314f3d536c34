/**
 * TREC run files: `qid Q0 docid rank score tag` per line, read as trec_eval reads them
 * (get_trec_results.c): columns separated by whitespace, blank lines and `#` comment lines skipped,
 * the rank column ignored (results are ranked by score; see metrics.ts). Ids with whitespace cannot
 * be written: the writer refuses them, and a reader's line with too many columns says which id
 * probably held some.
 */
import { writeSync } from "node:fs";
import { InputError, readLines } from "../data/lines.js";
import { assertTrecId, trecColumns, whitespaceIdHint } from "../data/trec-format.js";
import type { Hit } from "../retrieval/hit.js";
import { writeAtomically } from "../tensor/index.js";
import { evaluate, type Measure, measureLabel, parseMeasures, type Qrels, type Run } from "./metrics.js";

export async function readRun(file: string): Promise<Run> {
  const run: Run = new Map();
  for await (const [line, n] of readLines(file)) {
    const cols = trecColumns(line);
    if (cols.length === 0 || (cols[0] as string).startsWith("#")) continue;
    if (cols.length !== 6)
      throw new InputError(
        file,
        n,
        `expected 6 columns (qid Q0 docid rank score tag), got ${cols.length}${whitespaceIdHint(cols, 6)}`,
      );
    const [qid, , doc, , scoreText] = cols as [string, string, string, string, string];
    const score = Number(scoreText);
    if (scoreText === "" || !Number.isFinite(score))
      throw new InputError(file, n, `score ${JSON.stringify(scoreText)} is not a number`);
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

/**
 * Writes a run atomically; scores with 6 decimals (trec_eval reads what is printed). Refuses, before
 * writing anything, ids that a TREC file cannot hold (whitespace; a query id starting with '#').
 */
export function writeRun(file: string, queryIds: string[], hits: RankedHit[][], tag = "qdc"): void {
  assertTrecId(file, tag, "run tag");
  hits.forEach((h, i) => {
    assertTrecId(file, queryIds[i] as string, "query id");
    for (const x of h) assertTrecId(file, x.id, "document id");
  });
  writeAtomically(file, (fd) => {
    hits.forEach((h, i) => {
      const qid = queryIds[i] as string;
      writeSync(fd, h.map((x, r) => `${qid} Q0 ${x.id} ${r + 1} ${x.score.toFixed(6)} ${tag}\n`).join(""));
    });
  });
}

/** The mean of one measure (e.g. "ndcg_cut.10"), as trec_eval computes it, over search hits. */
export function meanOfHits(qrels: Qrels, queryIds: string[], hits: RankedHit[][], measure: string): number {
  const e = evaluate(qrels, runFromHits(queryIds, hits), parseMeasures(measure));
  return e.mean[measureLabel(e.measures[0] as Measure)] as number;
}

/** In-memory run from search hits, with the scores as a run file would round them. */
export function runFromHits(queryIds: string[], hits: RankedHit[][]): Run {
  const run: Run = new Map();
  hits.forEach((h, i) => {
    run.set(queryIds[i] as string, new Map(h.map((x) => [x.id, Number(x.score.toFixed(6))])));
  });
  return run;
}
