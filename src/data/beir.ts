/**
 * BEIR folders (`corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`) as training rows: every
 * (query, relevant document) pair of the split with a positive score, without hard negatives.
 * Only the documents the qrels name are kept in memory.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { InputError, readJsonl, readLines } from "./lines.js";
import type { TrainingRow } from "./pairs.js";

function requireFile(file: string): void {
  if (!existsSync(file))
    throw new Error(`${file}: missing (a BEIR folder has corpus.jsonl, queries.jsonl and qrels/<split>.tsv)`);
}

/**
 * Relevance judgments: BEIR's qrels/<split>.tsv (query-id, corpus-id, score; a header line is
 * skipped) or TREC's qrels (query-id, iteration, doc-id, relevance; whitespace separated).
 */
export async function readQrels(file: string): Promise<Map<string, Map<string, number>>> {
  requireFile(file);
  const out = new Map<string, Map<string, number>>();
  for await (const [line, n] of readLines(file)) {
    if (line.trim() === "") continue;
    const cols = line.includes("\t") ? line.split("\t") : line.trim().split(/\s+/);
    if (cols.length === 4) cols.splice(1, 1); // TREC: drop the iteration column
    if (n === 1 && Number.isNaN(Number(cols[2]))) continue; // header
    if (cols.length !== 3)
      throw new InputError(
        file,
        n,
        `expected 3 tab-separated columns (query-id, corpus-id, score) or 4 TREC columns (query-id, 0, doc-id, relevance), got ${cols.length}`,
      );
    const score = Number(cols[2]);
    if (!Number.isFinite(score)) throw new InputError(file, n, `score ${JSON.stringify(cols[2])} is not a number`);
    const q = cols[0] as string;
    if (!out.has(q)) out.set(q, new Map());
    (out.get(q) as Map<string, number>).set(cols[1] as string, score);
  }
  return out;
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
