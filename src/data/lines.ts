/** Line-oriented input files: plain or gzipped (`.gz`), numbered from 1 for error messages. */
import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import { createGunzip } from "node:zlib";

export class InputError extends Error {
  constructor(file: string, line: number, message: string) {
    super(`${file}:${line}: ${message}`);
    this.name = "InputError";
  }
}

/** A failure to read `file` (after `lines` lines) as an error that names the file and says what to do. */
export function readError(file: string, lines: number, e: unknown): Error {
  const err = e as NodeJS.ErrnoException;
  switch (err?.code) {
    case "ENOENT":
      return new Error(`${file}: no such file`);
    case "EACCES":
      return new Error(`${file}: not readable (permission denied)`);
    case "EISDIR":
      return new Error(`${file}: a directory, not a file`);
    case "Z_DATA_ERROR":
      return new Error(
        `${file}: not a gzip file (${err.message})${lines ? ` after line ${lines}` : ""}; a plain text file must not end in .gz`,
      );
    case "Z_BUF_ERROR":
      return new Error(`${file}: the gzip data ends early, after line ${lines} (a truncated file: ${err.message})`);
    default:
      return err instanceof Error ? err : new Error(String(e));
  }
}

/** The lines of a file with their numbers (gunzipped when the name ends in .gz). */
export async function* readLines(file: string): AsyncGenerator<[string, number]> {
  const raw = createReadStream(file);
  let stream: NodeJS.ReadableStream = raw;
  if (file.endsWith(".gz")) {
    const gunzip = createGunzip();
    // an open error of the file reaches the reader through the gunzip stream
    raw.on("error", (e) => gunzip.destroy(e));
    stream = raw.pipe(gunzip);
  }
  const lines = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY });
  let n = 0;
  try {
    for await (const line of lines) yield [line, ++n];
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw readError(file, n, e);
  }
}

/** The JSON values of a JSONL file with their line numbers; blank lines are skipped. */
export async function* readJsonl(file: string): AsyncGenerator<[unknown, number]> {
  for await (const [line, n] of readLines(file)) {
    if (line.trim() === "") continue;
    try {
      yield [JSON.parse(line), n];
    } catch (e) {
      throw new InputError(file, n, `not valid JSON (${(e as Error).message})`);
    }
  }
}
