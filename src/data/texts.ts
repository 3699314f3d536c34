/**
 * Text inputs for tokenize/encode: `.txt` (one text per line) or `.jsonl` / `.jsonl.gz` (a `text`
 * field per row), read as a stream. Malformed rows fail with `file:line` and what is wrong.
 */
import { InputError, readJsonl, readLines } from "./lines.js";

export { InputError };

/** Yields the texts of a file in order. */
export async function* readTexts(file: string, opts: { field?: string } = {}): AsyncGenerator<string> {
  const field = opts.field ?? "text";
  const base = file.endsWith(".gz") ? file.slice(0, -3) : file;
  if (!(base.endsWith(".jsonl") || base.endsWith(".json"))) {
    for await (const [line] of readLines(file)) yield line;
    return;
  }
  for await (const [row, n] of readJsonl(file)) {
    const text = (row as Record<string, unknown> | null)?.[field];
    if (typeof text !== "string") {
      throw new InputError(file, n, `expected a string field '${field}', got ${JSON.stringify(text ?? null)}`);
    }
    yield text;
  }
}
/**
 * Texts with ids: `.jsonl` rows with `_id` (or `id`) and `text` (plus `title`, joined as BEIR does),
 * or `.txt` lines whose ids are their line numbers.
 */
export async function* readIdTexts(
  file: string,
): AsyncGenerator<{ id: string; text: string; row?: Record<string, unknown> }> {
  const base = file.endsWith(".gz") ? file.slice(0, -3) : file;
  if (!(base.endsWith(".jsonl") || base.endsWith(".json"))) {
    for await (const [line, n] of readLines(file)) yield { id: String(n), text: line };
    return;
  }
  for await (const [value, n] of readJsonl(file)) {
    const row = (value ?? {}) as Record<string, unknown>;
    const id = row._id ?? row.id;
    if (typeof id !== "string" && typeof id !== "number") throw new InputError(file, n, "missing '_id' (or 'id')");
    if (typeof row.text !== "string")
      throw new InputError(file, n, `expected a string field 'text', got ${JSON.stringify(row.text ?? null)}`);
    const title = typeof row.title === "string" ? row.title.trim() : "";
    yield { id: String(id), text: title ? `${title} ${row.text}` : row.text, row };
  }
}

/** All (id, text) pairs of a file, in order (see readIdTexts). */
export async function readAllIdTexts(file: string): Promise<{ id: string; text: string }[]> {
  const out: { id: string; text: string }[] = [];
  for await (const { id, text } of readIdTexts(file)) out.push({ id, text });
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
