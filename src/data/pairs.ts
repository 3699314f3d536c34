/**
 * Training rows for contrastive fine-tuning: contrastors-style JSONL (or .jsonl.gz) rows
 * `{"query", "document", "negatives": [...]}`, one file or several shards, read as a stream. A
 * malformed row, or one with an empty query or document, fails with `file:line` and what is wrong.
 * `RowStream` turns them into batches: epochs wrap around, optional seeded shuffling through a
 * bounded buffer (constant memory), and a position that a resumed run skips to.
 */
import { existsSync } from "node:fs";
import { readBeirPairs } from "./beir.js";
import { InputError, readJsonl } from "./lines.js";
import { Rng } from "./rng.js";

export interface TrainingRow {
  query: string;
  document: string;
  negatives: string[];
  /** where it came from, for error messages */
  source: string;
}

export interface RowOptions {
  /** Prepended to queries / documents (e.g. "search_query: "); none by default. */
  queryPrefix?: string;
  documentPrefix?: string;
}

function validate(raw: unknown, file: string, line: number): Omit<TrainingRow, "source"> {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw))
    throw new InputError(file, line, "a row must be a JSON object");
  const r = raw as Record<string, unknown>;
  for (const key of ["query", "document"] as const) {
    if (typeof r[key] !== "string")
      throw new InputError(file, line, `'${key}' must be a string, got ${JSON.stringify(r[key] ?? null)}`);
    if ((r[key] as string).trim() === "") throw new InputError(file, line, `empty '${key}'`);
  }
  const neg = r.negatives ?? [];
  if (!Array.isArray(neg) || neg.some((n) => typeof n !== "string"))
    throw new InputError(file, line, "'negatives' must be a list of strings");
  return { query: r.query as string, document: r.document as string, negatives: neg as string[] };
}

/** Yields the rows of the files in order. */
export async function* readRows(files: string[], opts: RowOptions = {}): AsyncGenerator<TrainingRow> {
  const qp = opts.queryPrefix ?? "";
  const dp = opts.documentPrefix ?? "";
  for (const file of files) {
    if (!existsSync(file)) throw new Error(`${file}: no such training file`);
    for await (const [raw, n] of readJsonl(file)) {
      const row = validate(raw, file, n);
      yield {
        query: qp + row.query,
        document: dp + row.document,
        negatives: row.negatives.map((d) => dp + d),
        source: `${file}:${n}`,
      };
    }
  }
}

export interface StreamPosition {
  epoch: number;
  /** rows handed out in this epoch */
  rows: number;
}

/** Where training rows come from: JSONL files, or a BEIR folder's split turned into pairs. */
export type RowSource = string[] | { beir: string; split: string };

/** Batches over the rows, epoch after epoch. */
export class RowStream {
  readonly #source: RowSource;
  readonly #files: string[];
  readonly #opts: RowOptions;
  readonly #shuffle: boolean;
  readonly #bufferSize: number;
  readonly #seed: number;
  #iter: AsyncGenerator<TrainingRow> | null = null;
  position: StreamPosition = { epoch: 0, rows: 0 };

  constructor(source: RowSource, opts: RowOptions & { shuffle?: boolean; shuffleBuffer?: number; seed?: number } = {}) {
    if (Array.isArray(source) && source.length === 0) throw new Error("no training files given");
    this.#source = source;
    this.#files = Array.isArray(source) ? source : [source.beir];
    this.#opts = opts;
    this.#shuffle = opts.shuffle ?? true;
    this.#bufferSize = opts.shuffleBuffer ?? 10000;
    this.#seed = opts.seed ?? 0;
  }

  #rows(): AsyncGenerator<TrainingRow> {
    const src = this.#source;
    if (Array.isArray(src)) return readRows(src, this.#opts);
    const qp = this.#opts.queryPrefix ?? "";
    const dp = this.#opts.documentPrefix ?? "";
    return (async function* () {
      for await (const r of readBeirPairs(src.beir, src.split))
        yield { ...r, query: qp + r.query, document: dp + r.document };
    })();
  }

  /** Rows in one pass over the source. */
  async count(): Promise<number> {
    let n = 0;
    for await (const _ of this.#rows()) n++;
    return n;
  }

  /** The fewest hard negatives any row carries (0 for no rows): what every query can be given. */
  async negativesCarried(): Promise<number> {
    let least = Number.POSITIVE_INFINITY;
    for await (const r of this.#rows()) {
      least = Math.min(least, r.negatives.length);
      if (least === 0) return 0;
    }
    return Number.isFinite(least) ? least : 0;
  }

  async *#epoch(epoch: number): AsyncGenerator<TrainingRow> {
    const rows = this.#rows();
    if (!this.#shuffle) {
      yield* rows;
      return;
    }
    // shuffle buffer: keep up to bufferSize rows, emit a random one as each new row arrives
    const rng = new Rng(this.#seed * 1000003 + epoch);
    const buf: TrainingRow[] = [];
    for await (const row of rows) {
      if (buf.length < this.#bufferSize) {
        buf.push(row);
        continue;
      }
      const i = rng.int(buf.length);
      const out = buf[i] as TrainingRow;
      buf[i] = row;
      yield out;
    }
    while (buf.length) {
      const i = rng.int(buf.length);
      const out = buf[i] as TrainingRow;
      buf[i] = buf[buf.length - 1] as TrainingRow;
      buf.pop();
      yield out;
    }
  }

  async #nextRow(): Promise<TrainingRow> {
    for (let attempt = 0; attempt < 2; attempt++) {
      if (!this.#iter) this.#iter = this.#epoch(this.position.epoch);
      const r = await this.#iter.next();
      if (!r.done) {
        this.position.rows++;
        return r.value;
      }
      if (this.position.rows === 0) break;
      this.position = { epoch: this.position.epoch + 1, rows: 0 };
      this.#iter = null;
    }
    throw new Error(`${this.#files.join(", ")}: no training rows`);
  }

  /** The next `n` rows (crossing into the next epoch when one ends). */
  async next(n: number): Promise<TrainingRow[]> {
    const out: TrainingRow[] = [];
    for (let i = 0; i < n; i++) out.push(await this.#nextRow());
    return out;
  }

  /** Moves to a saved position by replaying that epoch's order (deterministic for a given seed). */
  async seek(pos: StreamPosition): Promise<void> {
    this.position = { epoch: pos.epoch, rows: 0 };
    this.#iter = this.#epoch(pos.epoch);
    for (let i = 0; i < pos.rows; i++) {
      const r = await this.#iter.next();
      if (r.done)
        throw new Error(
          `cannot resume: epoch ${pos.epoch} has fewer than ${pos.rows} rows now (training data changed?)`,
        );
      this.position.rows++;
    }
  }
}
