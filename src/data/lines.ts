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

/** The lines of a file with their numbers (gunzipped when the name ends in .gz). */
export async function* readLines(file: string): AsyncGenerator<[string, number]> {
  let stream: NodeJS.ReadableStream = createReadStream(file);
  if (file.endsWith(".gz")) stream = stream.pipe(createGunzip());
  const lines = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY });
  let n = 0;
  for await (const line of lines) yield [line, ++n];
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
