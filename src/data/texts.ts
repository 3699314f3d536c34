/**
 * Text inputs, one home for every command that reads texts: `.txt` (one text per line) or `.jsonl`
 * / `.json` (a `text` field per row), either gzipped (`.gz`), read as a stream. Malformed rows fail
 * with `file:line` and what is wrong. `readTexts` gives the texts alone (tokenize, encode);
 * `readIdTexts` gives them with ids (index build, search, drift fit).
 */
import { InputError, readJsonl, readLines } from "./lines.js";

export { InputError };

/** Whether a file is read as JSONL (by its name, `.gz` aside). */
export function isJsonl(file: string): boolean {
  const base = file.endsWith(".gz") ? file.slice(0, -3) : file;
  return base.endsWith(".jsonl") || base.endsWith(".json");
}

function rowField(file: string, n: number, row: Record<string, unknown>, field: string): string {
  const text = row[field];
  if (typeof text !== "string")
    throw new InputError(file, n, `expected a string field '${field}', got ${JSON.stringify(text ?? null)}`);
  return text;
}

/** Yields the texts of a file in order (`field` of JSONL rows, default `text`). */
export async function* readTexts(file: string, opts: { field?: string } = {}): AsyncGenerator<string> {
  const field = opts.field ?? "text";
  if (!isJsonl(file)) {
    for await (const [line] of readLines(file)) yield line;
    return;
  }
  for await (const [row, n] of readJsonl(file)) yield rowField(file, n, (row ?? {}) as Record<string, unknown>, field);
}

export interface IdTextOptions {
  /**
   * JSONL rows must have `_id` (or `id`) (default). When false, a row without one gets its line
   * number, as `.txt` lines do, so that any file `readTexts` accepts is accepted.
   */
  requireIds?: boolean;
}

/**
 * Texts with ids: the files `readTexts` reads; JSONL rows with `_id` (or `id`) and `text` (plus
 * `title`, joined as BEIR does), `.txt` lines with their line numbers as ids.
 */
export async function* readIdTexts(
  file: string,
  opts: IdTextOptions = {},
): AsyncGenerator<{ id: string; text: string; row?: Record<string, unknown>; line: number }> {
  if (!isJsonl(file)) {
    for await (const [line, n] of readLines(file)) yield { id: String(n), text: line, line: n };
    return;
  }
  for await (const [value, n] of readJsonl(file)) {
    const row = (value ?? {}) as Record<string, unknown>;
    const id = row._id ?? row.id;
    if (typeof id !== "string" && typeof id !== "number") {
      if (opts.requireIds !== false || id !== undefined) throw new InputError(file, n, "missing '_id' (or 'id')");
    }
    const text = rowField(file, n, row, "text");
    const title = typeof row.title === "string" ? row.title.trim() : "";
    yield { id: id === undefined ? String(n) : String(id), text: title ? `${title} ${text}` : text, row, line: n };
  }
}

/** All (id, text) pairs of a file, in order (see readIdTexts). */
export async function readAllIdTexts(file: string, opts: IdTextOptions = {}): Promise<{ id: string; text: string }[]> {
  const out: { id: string; text: string }[] = [];
  for await (const { id, text } of readIdTexts(file, opts)) out.push({ id, text });
  return out;
}

/** Groups an async stream into arrays of `size`. */
export async function* chunked<T>(items: AsyncIterable<T>, size: number): AsyncGenerator<T[]> {
  let buf: T[] = [];
  for await (const x of items) {
    buf.push(x);
    if (buf.length === size) {
      yield buf;
      buf = [];
    }
  }
  if (buf.length) yield buf;
}
