/**
 * Vector stores behind one small interface: rows carry their embedding model's version, so a
 * store can hold vectors of several model versions during a background re-index. Every row has an
 * id (unique: an upsert replaces the row), its vector, the version that embedded it, its text (so
 * it can be re-embedded) and optional filterable fields declared in the store's schema.
 */

import type { FieldValue, Hit } from "../retrieval/hit.js";

export type { FieldValue } from "../retrieval/hit.js";
export type FieldType = "string" | "number";

export interface StoreSchema {
  dim: number;
  /** filterable fields and their types */
  fields: Record<string, FieldType>;
}

export interface StoreRow {
  id: string;
  vector: Float32Array | number[];
  version: string;
  text: string;
  fields?: Record<string, FieldValue>;
}

/** A store's hit always carries the row's fields. */
export type StoreHit = Hit & { fields: Record<string, FieldValue> };

/** Equality on declared fields, all of which must hold. */
export type Filter = Record<string, FieldValue>;

export interface SearchOptions {
  filter?: Filter;
  /** only rows of this version */
  version?: string;
  /** exact search even where an ANN index exists */
  exact?: boolean;
}

/**
 * What a search service records in its store so that a restart (or another replica) finds the
 * model it was serving and the re-index it was running. Written as one JSON document, replaced
 * atomically; the store does not interpret it.
 */
export interface StoreState {
  /** the model version being served (its id; a directory in states of earlier releases) */
  model: string;
  /** where that model's directory was when it was recorded (a hint: found by id when moved) */
  modelDir?: string;
  /** the model served before it (what a rollback returns to) */
  previous?: string;
  /** models served on this store, id → directory (hints for finding them again) */
  models?: Record<string, string>;
  /** how rows of older versions are reached ("mean", "procrustes", …) */
  compensation?: string;
  /** the background re-index, as the service last saw it */
  reindex?: Record<string, unknown>;
  /** the last `qdc store load`: what it loads and how far it got (`complete` once every row is in) */
  load?: LoadState;
  updatedAt?: string;
}

export interface LoadState {
  /** the corpus file (absolute) and its size:mtime when the load began */
  corpus: string;
  stamp: string;
  /** the model version embedding it */
  model: string;
  rows: number;
  done: number;
  complete: boolean;
  updatedAt: string;
}

/**
 * Which stale rows a re-index worker takes (several workers re-embed one store at once, with no
 * coordination beyond the store).
 */
export interface StaleOptions {
  /**
   * a deterministic share of the ids: worker `index` of `count` takes the ids whose MD5 (hex) falls
   * in its `index`-th of `count` equal ranges (`idPart`); both stores
   */
  part?: { index: number; count: number };
  /**
   * rows claimed for `owner` until `seconds` from now (pgvector): rows another owner holds an
   * unexpired claim on are left out, so any number of workers share the rows; a worker that died
   * leaves its rows to the others once its claims expire. LanceDB refuses claims (use `part`).
   */
  claim?: { owner: string; seconds: number };
}

/**
 * A named lease of a store (the service's background re-index: one replica runs it): who holds it
 * and until when (ms since the epoch, on the store's clock: the database's for pgvector, the
 * machine's for LanceDB). A holder that stalls past its lease loses it to the next taker; the
 * re-index renews its lease right before every write, so two holders' writes could meet only if a
 * write outlasted the whole lease.
 */
export interface Lease {
  owner: string;
  until: number;
}

export interface LeaseOptions {
  /** take the lease even while this owner holds it (a holder known to be dead: its process is gone) */
  replace?: string;
}

/** The MD5 range bounds (8 hex digits) of part `index` of `count`: [lo, hi), hi null for the last. */
export function partBounds(index: number, count: number): { lo: string; hi: string | null } {
  if (!Number.isInteger(count) || count < 1 || !Number.isInteger(index) || index < 0 || index >= count)
    throw new Error(`a worker part is index/count with 0 ≤ index < count, got ${index}/${count}`);
  const at = (i: number) =>
    Math.floor((i * 2 ** 32) / count)
      .toString(16)
      .padStart(8, "0");
  return { lo: at(index), hi: index + 1 < count ? at(index + 1) : null };
}

export interface OptimizeOptions {
  /**
   * a long rewrite (a re-index, a load) has just ended: an ANN index that earlier optimizes left
   * in several segments (each searched in turn) is trained again as one
   */
  final?: boolean;
}

export interface VectorStore {
  readonly schema: StoreSchema;
  /** "lancedb", "pgvector" */
  readonly kind: string;
  upsert(rows: StoreRow[]): Promise<void>;
  delete(ids: string[]): Promise<void>;
  search(vector: Float32Array, k: number, opts?: SearchOptions): Promise<StoreHit[]>;
  /**
   * Top-k of several query vectors with the same options, in one round trip where the store
   * allows (results in the order of `vectors`; each list exactly as `search` would return it).
   */
  searchMany(vectors: Float32Array[], k: number, opts?: SearchOptions): Promise<StoreHit[][]>;
  /** the service state recorded in the store (null when none was written) */
  readState(): Promise<StoreState | null>;
  /** replaces the recorded service state atomically */
  writeState(state: StoreState): Promise<void>;
  /**
   * merges `patch` into the recorded state atomically, key by key at the top level (the others
   * kept): a replica's re-index progress and another replica's model switch never undo each other
   */
  patchState(patch: Partial<StoreState>): Promise<void>;
  /**
   * Housekeeping after many rewrites (a finished re-index): compacts storage, brings every row
   * into the ANN index where one exists, and drops what older table versions kept alive.
   */
  optimize(opts?: OptimizeOptions): Promise<void>;
  /**
   * Rows a long rewrite (a re-index) should write between two `optimize` calls to keep searches
   * fast; `Infinity`: only once at the end (the store keeps itself in shape meanwhile).
   */
  readonly optimizeEvery: number;
  /** rows by id (missing ids are left out) */
  get(ids: string[]): Promise<StoreRow[]>;
  /**
   * up to `limit` rows whose version is not `version` (what a re-index still has to do); with
   * `opts`, only a worker's part, or rows claimed for a worker (see StaleOptions)
   */
  stale(version: string, limit: number, opts?: StaleOptions): Promise<StoreRow[]>;
  /** gives up `owner`'s claims on `ids` (rows written: a no-op where the store takes no claims) */
  releaseClaims(owner: string, ids: string[]): Promise<void>;
  /** extends `owner`'s claims on `ids` to `seconds` from now (a no-op where the store takes no claims) */
  renewClaims(owner: string, ids: string[], seconds: number): Promise<void>;
  /**
   * takes the lease `name` for `owner` until `seconds` from now when it is free, expired,
   * already `owner`'s (a renewal) or `opts.replace`'s; returns the holder after the attempt (`owner` when taken)
   */
  lease(name: string, owner: string, seconds: number, opts?: LeaseOptions): Promise<Lease>;
  /** gives up `owner`'s lease `name` (a no-op when another owner holds it) */
  releaseLease(name: string, owner: string): Promise<void>;
  /** all rows of a version, in batches */
  iterate(version: string, batch: number): AsyncGenerator<StoreRow[]>;
  /** rows per version */
  versions(): Promise<Record<string, number>>;
  /**
   * retags every row of version `from` as `to` (`qdc migrate`: path versions to ids): in one commit
   * on pgvector; LanceDB moves the rows between its per-version tables in chunks (rerun to complete)
   */
  renameVersion(from: string, to: string): Promise<void>;
  count(): Promise<number>;
  /** builds the ANN index now (stores build it themselves once they are large) */
  buildIndex(): Promise<void>;
  readonly indexed: boolean;
  close(): Promise<void>;
}

export class FilterError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FilterError";
  }
}

/** Checks a filter against the schema: unknown fields and wrong types are errors. */
export function checkFilter(schema: StoreSchema, filter: Filter | undefined): void {
  if (!filter) return;
  for (const [k, v] of Object.entries(filter)) {
    const type = Object.hasOwn(schema.fields, k) ? schema.fields[k] : undefined;
    if (!type) {
      const known = Object.keys(schema.fields);
      throw new FilterError(
        `unknown filter field '${k}' (the store has ${known.length ? known.join(", ") : "no filterable fields"})`,
      );
    }
    if (typeof v !== type) throw new FilterError(`filter field '${k}' is a ${type}, got ${JSON.stringify(v)}`);
    if (typeof v === "number" && !Number.isFinite(v))
      throw new FilterError(`filter field '${k}' must be a finite number, got ${v}`);
    if (typeof v === "string" && v.includes("\u0000"))
      throw new FilterError(`filter field '${k}' contains a NUL character, which no store can match`);
  }
}

/** A lease is taken by someone, for a positive time (both stores' `lease`). */
export function checkLease(owner: string, seconds: number): void {
  if (!owner || !(seconds > 0)) throw new Error(`a lease needs an owner and seconds > 0, got ${owner}, ${seconds}`);
}

/** Checks rows against the schema before writing. */
export function checkRows(schema: StoreSchema, rows: StoreRow[]): void {
  const ids = new Set<string>();
  for (const r of rows) {
    if (typeof r.id !== "string" || r.id === "")
      throw new Error(`a row needs a non-empty string id, got ${JSON.stringify(r.id)}`);
    // one upsert writes an id once (LanceDB would store both rows, and refuse every later merge)
    if (ids.has(r.id)) throw new Error(`row '${r.id}' appears twice in one write: give each id once`);
    ids.add(r.id);
    if (r.vector.length !== schema.dim)
      throw new Error(`row '${r.id}': vector has ${r.vector.length} dimensions, the store holds ${schema.dim}`);
    for (const x of r.vector) if (!Number.isFinite(x)) throw new Error(`row '${r.id}': vector has a non-finite value`);
    for (const [k, v] of Object.entries(r.fields ?? {})) {
      if (!Object.hasOwn(schema.fields, k)) throw new Error(`row '${r.id}': field '${k}' is not in the store's schema`);
      if (typeof v !== schema.fields[k]) throw new Error(`row '${r.id}': field '${k}' must be a ${schema.fields[k]}`);
    }
  }
}

/** Field names become column names: letters, digits and underscores, not starting with a digit. */
export function checkSchema(schema: StoreSchema): void {
  if (!Number.isInteger(schema.dim) || schema.dim < 1 || schema.dim > 65536)
    throw new Error(`vector dimension must be an integer in [1, 65536], got ${schema.dim}`);
  for (const [k, t] of Object.entries(schema.fields)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(k) || ["id", "vector", "version", "text", "embedding"].includes(k))
      throw new Error(`field name '${k}' is not allowed (letters, digits, _; not id/vector/version/text)`);
    if (t !== "string" && t !== "number") throw new Error(`field '${k}': type must be string or number`);
  }
}
