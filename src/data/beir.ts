/**
 * BEIR folders (`corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`) as training rows: every
 * (query, relevant document) pair of the split with a positive score, without hard negatives.
 * Only the documents the qrels name are kept in memory.
 */
import { existsSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { InputError, readJsonl, readLines } from "./lines.js";
import type { TrainingRow } from "./pairs.js";
import { assertTrecId, trecColumns, whitespaceIdHint } from "./trec-format.js";

function requireFile(file: string): void {
  if (!existsSync(file))
    throw new Error(`${file}: missing (a BEIR folder has corpus.jsonl, queries.jsonl and qrels/<split>.tsv)`);
}

/**
 * Relevance judgments: BEIR's qrels/<split>.tsv (query-id, corpus-id, score, tab-separated; a
 * header line is skipped) or TREC's qrels, told apart by the first line (query-id, iteration, doc-id, relevance; separated by
 * whitespace; lines starting with `#` are comments, as in trec_eval 10). A (query, document) pair
 * judged twice with different scores is an error.
 */
export async function readQrels(file: string): Promise<Map<string, Map<string, number>>> {
  requireFile(file);
  const out = new Map<string, Map<string, number>>();
  // the first line decides: three tab-separated columns make a BEIR file, anything else TREC
  let beir: boolean | undefined;
  for await (const [line, n] of readLines(file)) {
    if (line.trim() === "") continue;
    if (beir === undefined) {
      beir = line.split("\t").length === 3;
      if (beir && Number.isNaN(Number(line.split("\t")[2]))) continue; // header
    }
    if (!beir && line.startsWith("#")) continue; // a TREC comment
    const cols = beir ? line.split("\t") : trecColumns(line);
    if (beir ? cols.length !== 3 : cols.length !== 4 && cols.length !== 3)
      throw new InputError(
        file,
        n,
        beir
          ? `expected 3 tab-separated columns (query-id, corpus-id, score) as on the first line, got ${cols.length}`
          : `expected 4 TREC columns (query-id 0 doc-id relevance), got ${cols.length}${whitespaceIdHint(cols, 4)}`,
      );
    if (cols.length === 4) cols.splice(1, 1); // TREC: drop the iteration column
    const scoreText = (cols[2] as string).trim();
    const score = Number(scoreText);
    if (scoreText === "" || !Number.isFinite(score))
      throw new InputError(file, n, `score ${JSON.stringify(cols[2])} is not a number`);
    const [q, d] = cols as [string, string];
    let docs = out.get(q);
    if (!docs) {
      docs = new Map();
      out.set(q, docs);
    }
    const prev = docs.get(d);
    if (prev !== undefined && prev !== score)
      throw new InputError(
        file,
        n,
        `query '${q}', document '${d}' is judged again with another score (${prev}, ${score})`,
      );
    docs.set(d, score);
  }
  return out;
}

/**
 * Writes BEIR qrels (query-id, corpus-id, score with a header, tab-separated) atomically. Ids are
 * those of TREC files: without whitespace (so that the judgments convert to TREC qrels and the runs
 * of their queries can be written; see trec-format.ts), refused otherwise before anything is written.
 */
export function writeQrels(file: string, rows: [query: string, doc: string, score: number][]): void {
  for (const [q, d] of rows) {
    assertTrecId(file, q, "query id");
    assertTrecId(file, d, "document id");
  }
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, `query-id\tcorpus-id\tscore\n${rows.map(([q, d, s]) => `${q}\t${d}\t${s}\n`).join("")}`);
  renameSync(tmp, file);
}

async function readJsonlById(
  file: string,
  keep: (id: string) => boolean,
  text: (row: Record<string, unknown>) => string,
): Promise<Map<string, string>> {
  requireFile(file);
  const out = new Map<string, string>();
  for await (const [value, n] of readJsonl(file)) {
    const row = (value ?? {}) as Record<string, unknown>;
    const id = row._id;
    if (typeof id !== "string" && typeof id !== "number") throw new InputError(file, n, "missing '_id'");
    if (keep(String(id))) out.set(String(id), text(row));
  }
  return out;
}

/** BERT-style document text: title and text joined by a space. */
export function beirDocumentText(row: Record<string, unknown>): string {
  const title = typeof row.title === "string" ? row.title.trim() : "";
  const body = typeof row.text === "string" ? row.text : "";
  return title ? `${title} ${body}` : body;
}

export async function* readBeirPairs(dir: string, split: string): AsyncGenerator<TrainingRow> {
  const qrelsFile = join(dir, "qrels", `${split}.tsv`);
  const qrels = await readQrels(qrelsFile);
  const wantedDocs = new Set<string>();
  for (const docs of qrels.values()) for (const [d, s] of docs) if (s > 0) wantedDocs.add(d);
  const queries = await readJsonlById(
    join(dir, "queries.jsonl"),
    (id) => qrels.has(id),
    (r) => String(r.text ?? ""),
  );
  const corpus = await readJsonlById(join(dir, "corpus.jsonl"), (id) => wantedDocs.has(id), beirDocumentText);
  for (const [qid, docs] of qrels) {
    const query = queries.get(qid);
    if (query === undefined) throw new Error(`${qrelsFile}: query '${qid}' is not in queries.jsonl`);
    for (const [did, score] of docs) {
      if (score <= 0) continue;
      const document = corpus.get(did);
      if (document === undefined) throw new Error(`${qrelsFile}: document '${did}' is not in corpus.jsonl`);
      if (!query.trim() || !document.trim()) continue;
      yield { query, document, negatives: [], source: `${qrelsFile} (${qid}, ${did})` };
    }
  }
}
