/**
 * Text inputs for tokenize/encode: `.txt` (one text per line) or `.jsonl` / `.jsonl.gz` (a `text`
 * field per row), read as a stream. Malformed rows fail with `file:line` and what is wrong.
 */
import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import { createGunzip } from "node:zlib";

export class InputError extends Error {
  constructor(file: string, line: number, message: string) {
    super(`${file}:${line}: ${message}`);
    this.name = "InputError";
  }
}

/** Yields the texts of a file in order. */
export async function* readTexts(file: string, opts: { field?: string } = {}): AsyncGenerator<string> {
  const field = opts.field ?? "text";
  const gz = file.endsWith(".gz");
  const base = gz ? file.slice(0, -3) : file;
  const jsonl = base.endsWith(".jsonl") || base.endsWith(".json");
  let stream: NodeJS.ReadableStream = createReadStream(file);
  if (gz) stream = stream.pipe(createGunzip());
  const lines = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY });
  let n = 0;
  for await (const line of lines) {
    n++;
    if (!jsonl) {
      yield line;
      continue;
    }
    if (line.trim() === "") continue;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch (e) {
      throw new InputError(file, n, `not valid JSON (${(e as Error).message})`);
    }
    const text = (row as Record<string, unknown> | null)?.[field];
    if (typeof text !== "string")
      throw new InputError(file, n, `expected a string field '${field}', got ${JSON.stringify(text ?? null)}`);
    yield text;
  }
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
