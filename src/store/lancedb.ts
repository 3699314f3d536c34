/**
 * The embedded default store: a LanceDB table per index (one directory), with the model version on
 * every row. Search is exact until the table reaches `annThreshold` rows; then an ANN index on the
 * vectors (cosine; IVF over the raw vectors by default) is built, and rows written after
 * it are searched exactly alongside it (LanceDB's default), so nothing is missed before `optimize`
 * brings them into the index. A btree on `id` serves the merge-insert joins of upserts, a bitmap on
 * `version` the searches of one version while a re-index runs.
 *
 * Several processes may open the same directory: reads see others' writes within `refreshSeconds`,
 * and the versions file (every version ever written) is re-read when it changes.
 */

import { fork } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as lancedb from "@lancedb/lancedb";
import { Field, FixedSizeList, Float32, Float64, Schema, Utf8 } from "apache-arrow";
import {
  checkFilter,
  checkRows,
  checkSchema,
  type Filter,
  type SearchOptions,
  type StoreHit,
  type StoreRow,
  type StoreSchema,
  type StoreState,
  type VectorStore,
} from "./store.js";

// `indexStats` leaves out the IVF centroids (qdc reads only row and segment counts) and LanceDB
// stops warning about including them
process.env.LANCE_INCLUDE_VECTOR_CENTROIDS ??= "false";

const TABLE = "vectors";
const META = "qdc-store.json";
const VERSIONS = "qdc-versions.json";
const STATE = "qdc-state.json";
/** when the last optimize runs started and finished (for the cleanup of old table versions) */
const MAINTENANCE = "qdc-maintenance.json";

export interface OptimizeRun {
  startedAt: number;
  finishedAt: number;
}

/**
 * The creation time before which table versions may be deleted, or null for none. A version's age
 * says nothing about how long ago it stopped being the latest (a version written an hour ago is
 * current until the next commit, and readers use it until then): only versions created before an
 * optimize run started are known to be superseded — by that run's commits, at the latest when it
 * finished. So the bound is the start of the latest run that finished at least `keepMs` ago.
 */
export function cleanupBefore(runs: OptimizeRun[], now: number, keepMs: number): number | null {
  let best: number | null = null;
  for (const r of runs) if (r.finishedAt <= now - keepMs && (best === null || r.startedAt > best)) best = r.startedAt;
  return best;
}

let tmpSeq = 0;
/** A temporary name beside `path`, unique to this process and call. */
const tmpName = (path: string) => `${path}.${process.pid}.${++tmpSeq}.tmp`;

/** Writes a file whole or not at all (a reader sees the old or the new content). */
function writeAtomic(path: string, text: string): void {
  const tmp = tmpName(path);
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

/** A SQL string literal. */
export const sqlString = (s: string) => `'${s.replace(/'/g, "''")}'`;

function where(filter: Filter | undefined, version: string | undefined): string | undefined {
  const parts: string[] = [];
  if (version !== undefined) parts.push(`version = ${sqlString(version)}`);
  for (const [k, v] of Object.entries(filter ?? {}))
    parts.push(`${k} = ${typeof v === "number" ? String(v) : sqlString(v)}`);
  return parts.length ? parts.join(" AND ") : undefined;
}

/**
 * The ANN index: "ivf-flat" (IVF over the raw vectors: exact scores, built in seconds),
 * "hnsw-sq" (IVF_HNSW_SQ with one partition: an HNSW graph over 8-bit quantised vectors, whose
 * scores are approximate unless `refineFactor` ≥ 1) or "ivf-pq" (IVF with product quantisation:
 * small, but slow to build and re-ranked to reach a useful recall). Measured on 100k 128-d
 * vectors (2 cores), ivf-flat with 40 of 316 partitions probed had recall@10 0.98 at ~4 ms/query,
 * hnsw-sq 0.95 at ef 80 (similar speed, 86 s to build), ivf-pq 9 ms/query and 4 min to build.
 */
export type LanceIndex = "hnsw-sq" | "ivf-pq" | "ivf-flat";

/** LanceDB's names of the index types (`listIndices`) */
const INDEX_TYPES: Record<string, LanceIndex> = { IvfHnswSq: "hnsw-sq", IvfPq: "ivf-pq", IvfFlat: "ivf-flat" };

/** IVF partitions for `n` rows: about √n */
const partitions = (n: number) => Math.max(1, Math.min(1024, Math.round(Math.sqrt(n))));
/** partitions probed by default: an eighth, at least 20 */
const probes = (n: number) => Math.max(20, Math.ceil(partitions(n) / 8));

export interface LanceOptions {
  /** rows from which the ANN index is built (default 100,000) */
  annThreshold?: number;
  /**
   * the ANN index `buildIndex` builds (default "hnsw-sq": on the benchmark's real embeddings, 100k ×
   * 128-d, it reached recall@10 0.96 at 290 QPS with 8 callers on 2 cores, where IVF_FLAT needed half
   * its partitions probed for 0.95 at 240 QPS; IVF-PQ was slower still)
   */
  index?: LanceIndex;
  /** HNSW candidate list per query (default 400) */
  ef?: number;
  /** HNSW graph degree and build-time candidate list (default 32 and 300) */
  m?: number;
  efConstruction?: number;
  /** IVF partitions probed per query (default: an eighth of the partitions, at least 20) */
  nprobes?: number;
  /** candidates re-ranked on the raw vectors per result; 0 re-ranks nothing (default 10 for ivf-pq, 2 for hnsw-sq, else 0) */
  refineFactor?: number;
  /** how old (seconds) this store's view of what other processes wrote may be (default 1) */
  refreshSeconds?: number;
  /**
   * ANN index segments (`optimize` adds one for the rows written since the last) beyond which
   * `optimize` trains the index again as one (default 4)
   */
  maxIndexSegments?: number;
  /**
   * where `optimize` runs: "process" (default), a child process at OS niceness `maintenanceNice`
   * (default 10), or "inline", this one
   */
  maintenance?: "process" | "inline";
  maintenanceNice?: number;
  /**
   * how long (ms) a table version must have been superseded before `optimize` deletes its files
   * (default 60,000): readers that have not refreshed yet, or a query in flight, still use it
   */
  keepVersionsMs?: number;
}

/** Runs `optimizeHere` on the store in `dir` in a niced child process; rejects with its error. */
function runMaintenance(dir: string, opts: Required<LanceOptions>, indexed: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(new URL("./lance-maintenance.js", import.meta.url)), [], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      serialization: "advanced",
      env: { ...process.env, QDC_NICE: String(opts.maintenanceNice) },
    });
    let error: string | null = null;
    child.on("message", (m: { error?: string }) => {
      if (m.error) error = m.error;
    });
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      if (code === 0 && !error) resolve();
      else
        reject(
          new Error(`LanceDB optimize of ${dir} failed: ${error ?? `maintenance process exited (${signal ?? code})`}`),
        );
    });
    child.send({ dir, opts: { ...opts, maintenance: "inline" }, indexed });
  });
}

export class LanceStore implements VectorStore {
  readonly kind = "lancedb";
  /**
   * rewritten rows are outside the ANN index until an optimize, and every search scans them
   * exactly (20,000 such rows cut the search rate to about a third), but each optimize adds one
   * more index segment that every search walks until the re-index ends (measured on 100k rows:
   * 16,384 rows between optimizes cost 13–27 ms of CPU per two-version request over a re-index;
   * 8,192 with a rebuild every 4 segments 11–31 ms)
   */
  readonly optimizeEvery = 16384;
  /** the ANN index on the vectors, if any (as found in the table: another process may have built it) */
  #index: LanceIndex | undefined;
  /** when the table was last asked whether it has an ANN index (while it has none) */
  #indexCheckedAt = 0;
  #nprobes = 20;
  /** a btree on `id` exists */
  #idIndexed = false;
  /** a bitmap index on `version` exists */
  #versionIndexed = false;
  /** versions ever written (counted on demand; a scan of the version column would cost a full pass) */
  #known = new Set<string>();
  /** mtime and size of the versions file when last read */
  #versionsStamp = "";

  private constructor(
    readonly dir: string,
    readonly schema: StoreSchema,
    private readonly table: lancedb.Table,
    private readonly opts: Required<LanceOptions>,
  ) {}

  /** Opens the store in `dir`, creating it with `schema` if it does not exist. */
  static async open(dir: string, schema?: StoreSchema, opts: LanceOptions = {}): Promise<LanceStore> {
    const metaPath = join(dir, META);
    let s: StoreSchema;
    if (existsSync(metaPath)) {
      s = JSON.parse(readFileSync(metaPath, "utf8")) as StoreSchema;
      if (schema && JSON.stringify(schema) !== JSON.stringify(s))
        throw new Error(`${dir}: the store exists with schema ${JSON.stringify(s)}, not ${JSON.stringify(schema)}`);
    } else {
      if (!schema) throw new Error(`${dir}: no qdc store here (create one with a schema: \`qdc store load\`)`);
      checkSchema(schema);
      s = schema;
    }
    mkdirSync(dir, { recursive: true });
    const refreshSeconds = opts.refreshSeconds ?? 1;
    const conn = await lancedb.connect(dir, { readConsistencyInterval: refreshSeconds });
    let table: lancedb.Table;
    if ((await conn.tableNames()).includes(TABLE)) table = await conn.openTable(TABLE);
    else {
      const fields = [
        new Field("id", new Utf8(), false),
        new Field("version", new Utf8(), false),
        new Field("text", new Utf8(), false),
        new Field("vector", new FixedSizeList(s.dim, new Field("item", new Float32(), true)), false),
        ...Object.entries(s.fields).map(([k, t]) => new Field(k, t === "number" ? new Float64() : new Utf8(), true)),
      ];
      table = await conn.createEmptyTable(TABLE, new Schema(fields), { mode: "create" });
      writeAtomic(metaPath, `${JSON.stringify(s)}\n`);
    }
    const index = opts.index ?? "hnsw-sq";
    const store = new LanceStore(dir, s, table, {
      annThreshold: opts.annThreshold ?? 100000,
      index,
      ef: opts.ef ?? 400,
      m: opts.m ?? 32,
      efConstruction: opts.efConstruction ?? 300,
      nprobes: opts.nprobes ?? 0,
      refineFactor: opts.refineFactor ?? (index === "ivf-pq" ? 10 : index === "hnsw-sq" ? 2 : 0),
      refreshSeconds,
      maxIndexSegments: opts.maxIndexSegments ?? 4,
      maintenance: opts.maintenance ?? "process",
      maintenanceNice: opts.maintenanceNice ?? 10,
      keepVersionsMs: opts.keepVersionsMs ?? 60_000,
    });
    await store.#checkIndices();
    store.#loadVersions();
    if (!store.#versionsStamp && (await table.countRows()) > 0) {
      // a table written by something else: learn its versions once
      for (const r of (await table.query().select(["version"]).toArray()) as { version: string }[])
        store.#known.add(r.version);
      store.#saveVersions();
    }
    return store;
  }

  get indexed(): boolean {
    return this.#index !== undefined;
  }

  /** Learns which indices the table has (another process may have built them). */
  async #checkIndices(): Promise<void> {
    const indices = await this.table.listIndices();
    const vector = indices.find((i) => i.columns.includes("vector"));
    this.#idIndexed = indices.some((i) => i.columns.includes("id"));
    this.#versionIndexed = indices.some((i) => i.columns.includes("version"));
    this.#indexCheckedAt = Date.now();
    if (!vector) return;
    this.#index = INDEX_TYPES[vector.indexType] ?? this.opts.index;
    this.#nprobes = probes(await this.table.countRows());
  }

  #record(r: StoreRow): Record<string, unknown> {
    const rec: Record<string, unknown> = { id: r.id, version: r.version, text: r.text, vector: Array.from(r.vector) };
    for (const k of Object.keys(this.schema.fields)) rec[k] = r.fields?.[k] ?? null;
    return rec;
  }

  #row(rec: Record<string, unknown>): StoreRow {
    const v = rec.vector as ArrayLike<number> | { toArray(): ArrayLike<number> };
    const vector = Float32Array.from("toArray" in v ? v.toArray() : v);
    return {
      id: String(rec.id),
      version: String(rec.version),
      text: String(rec.text),
      vector,
      fields: this.#fields(rec),
    };
  }

  #fields(rec: Record<string, unknown>): Record<string, string | number> {
    const out: Record<string, string | number> = {};
    for (const k of Object.keys(this.schema.fields))
      if (rec[k] !== null && rec[k] !== undefined) out[k] = rec[k] as string | number;
    return out;
  }

  /** Adds the versions listed in the versions file, if it changed since it was last read. */
  #loadVersions(): void {
    const path = join(this.dir, VERSIONS);
    let stamp: string;
    try {
      const st = statSync(path);
      stamp = `${st.mtimeMs}:${st.size}`;
    } catch {
      return;
    }
    if (stamp === this.#versionsStamp) return;
    for (const v of JSON.parse(readFileSync(path, "utf8")) as string[]) this.#known.add(v);
    this.#versionsStamp = stamp;
  }

  /** Records the known versions, keeping those other processes recorded. */
  #saveVersions(): void {
    this.#loadVersions();
    const path = join(this.dir, VERSIONS);
    writeAtomic(path, JSON.stringify([...this.#known]));
    const st = statSync(path);
    this.#versionsStamp = `${st.mtimeMs}:${st.size}`;
  }

  async upsert(rows: StoreRow[]): Promise<void> {
    if (!rows.length) return;
    checkRows(this.schema, rows);
    const fresh = [...new Set(rows.map((r) => r.version))].filter((v) => !this.#known.has(v));
    if (fresh.length) {
      // recorded before the rows are written, so a crash never hides a version
      for (const v of fresh) this.#known.add(v);
      this.#saveVersions();
    }
    await this.table
      .mergeInsert("id")
      .whenMatchedUpdateAll()
      .whenNotMatchedInsertAll()
      .execute(rows.map((r) => this.#record(r)));
    if (!this.#idIndexed) {
      // the join key of later merge-inserts; `optimize` brings later rows into it
      await this.table.createIndex("id", { config: lancedb.Index.btree(), replace: true });
      this.#idIndexed = true;
    }
    if (!this.#versionIndexed) {
      // a search of one version (while a re-index runs) reads the row mask from the bitmap instead
      // of comparing the version string of every row (measured: filtered search at 0.5x the
      // unfiltered QPS without it, on a par with it)
      await this.table.createIndex("version", { config: lancedb.Index.bitmap(), replace: true });
      this.#versionIndexed = true;
    }
    if (!this.indexed && (await this.table.countRows()) >= this.opts.annThreshold) await this.buildIndex();
  }

  async delete(ids: string[]): Promise<void> {
    if (!ids.length) return;
    await this.table.delete(`id IN (${ids.map(sqlString).join(", ")})`);
  }

  /** Top-k per query vector of `vectors` with the options of `search`, in one LanceDB query (each list by score). */
  async #query(vectors: Float32Array[], k: number, opts: SearchOptions): Promise<StoreHit[][]> {
    checkFilter(this.schema, opts.filter);
    if (!this.indexed && Date.now() - this.#indexCheckedAt > this.opts.refreshSeconds * 1000)
      await this.#checkIndices();
    let q = this.table.vectorSearch(vectors[0] as Float32Array);
    for (let i = 1; i < vectors.length; i++) q = q.addQueryVector(vectors[i] as Float32Array);
    q = q
      .distanceType("cosine")
      .select(["id", "version", ...Object.keys(this.schema.fields), "_distance"])
      .limit(k);
    const w = where(opts.filter, opts.version);
    if (w) q = q.where(w);
    if (opts.exact || !this.#index) q = q.bypassVectorIndex();
    else {
      if (this.#index === "hnsw-sq") q = q.ef(Math.max(this.opts.ef, k));
      else q = q.nprobes(this.opts.nprobes || this.#nprobes);
      if (this.opts.refineFactor > 0) q = q.refineFactor(this.opts.refineFactor);
    }
    // read column by column from the Arrow result (`toArray` builds a JS object per row through
    // Arrow's row proxies: measured 577 vs 733 QPS for the same search, 8 callers, 100k rows)
    const table = await q.toArrow();
    const col = (name: string) => table.getChild(name);
    const ids = col("id");
    const versions = col("version");
    const distances = col("_distance");
    // with several query vectors, each row says which one it answers
    const queryIndex = vectors.length > 1 ? col("query_index") : null;
    const fields = Object.keys(this.schema.fields).map((f) => [f, col(f)] as const);
    const out: StoreHit[][] = vectors.map(() => []);
    for (let i = 0; i < table.numRows; i++) {
      const f: Record<string, string | number> = {};
      for (const [name, c] of fields) {
        const v = c?.get(i);
        if (v !== null && v !== undefined) f[name] = v as string | number;
      }
      out[queryIndex ? Number(queryIndex.get(i)) : 0]?.push({
        id: String(ids?.get(i)),
        version: String(versions?.get(i)),
        score: 1 - Number(distances?.get(i)),
        fields: f,
      });
    }
    for (const hits of out) hits.sort((a, b) => b.score - a.score);
    return out;
  }

  async search(vector: Float32Array, k: number, opts: SearchOptions = {}): Promise<StoreHit[]> {
    return (await this.#query([vector], k, opts))[0] as StoreHit[];
  }

  async searchMany(vectors: Float32Array[], k: number, opts: SearchOptions = {}): Promise<StoreHit[][]> {
    if (!vectors.length) return [];
    return this.#query(vectors, k, opts);
  }

  async get(ids: string[]): Promise<StoreRow[]> {
    if (!ids.length) return [];
    const rows = await this.table
      .query()
      .where(`id IN (${ids.map(sqlString).join(", ")})`)
      .toArray();
    return (rows as Record<string, unknown>[]).map((r) => this.#row(r));
  }

  async stale(version: string, limit: number): Promise<StoreRow[]> {
    const rows = await this.table
      .query()
      .where(`version != ${sqlString(version)}`)
      .limit(limit)
      .toArray();
    return (rows as Record<string, unknown>[]).map((r) => this.#row(r));
  }

  async *iterate(version: string, batch: number): AsyncGenerator<StoreRow[]> {
    // a snapshot: later writes do not move the pages
    const total = await this.table.countRows(`version = ${sqlString(version)}`);
    for (let offset = 0; offset < total; offset += batch) {
      const rows = await this.table
        .query()
        .where(`version = ${sqlString(version)}`)
        .offset(offset)
        .limit(batch)
        .toArray();
      if (!rows.length) return;
      yield (rows as Record<string, unknown>[]).map((r) => this.#row(r));
    }
  }

  async versions(): Promise<Record<string, number>> {
    this.#loadVersions();
    const out: Record<string, number> = {};
    for (const v of this.#known) {
      const n = await this.table.countRows(`version = ${sqlString(v)}`);
      if (n > 0) out[v] = n;
    }
    return out;
  }

  async renameVersion(from: string, to: string): Promise<void> {
    if (!this.#known.has(to)) {
      // recorded before the rows are retagged, so a crash never hides a version
      this.#known.add(to);
      this.#saveVersions();
    }
    await this.table.update({ where: `version = ${sqlString(from)}`, values: { version: to } });
  }

  count(): Promise<number> {
    return this.table.countRows();
  }

  async buildIndex(): Promise<void> {
    const n = await this.table.countRows();
    if (n < 256) throw new Error(`an ANN index needs at least 256 rows, the store has ${n}`);
    const numPartitions = partitions(n);
    let config: lancedb.Index;
    if (this.opts.index === "hnsw-sq")
      // one graph: IVF partitions would only split it (and need probing); SQ keeps it in memory
      config = lancedb.Index.hnswSq({
        numPartitions: 1,
        distanceType: "cosine",
        m: this.opts.m,
        efConstruction: this.opts.efConstruction,
      });
    else if (this.opts.index === "ivf-flat") config = lancedb.Index.ivfFlat({ numPartitions, distanceType: "cosine" });
    else {
      const numSubVectors =
        [96, 64, 48, 32, 24, 16, 12, 8, 6, 4, 2, 1].find(
          (m) => this.schema.dim % m === 0 && this.schema.dim / m >= 4,
        ) ?? 1;
      config = lancedb.Index.ivfPq({ numPartitions, numSubVectors, distanceType: "cosine" });
    }
    await this.table.createIndex("vector", { config, replace: true });
    this.#index = this.opts.index;
    this.#nprobes = probes(n);
  }

  async #vectorIndex(): Promise<lancedb.IndexConfig | undefined> {
    return (await this.table.listIndices()).find((i) => i.columns.includes("vector"));
  }

  /**
   * Compaction and index upkeep (see `optimizeHere`), by default in a niced child process that
   * opens the same directory: LanceDB's compaction and index builds take every core of the
   * process that runs them, and in the service's process they stalled its searches (a 30 s
   * index build stopped them all). This handle reads the result as soon as the child is done.
   */
  async optimize(): Promise<void> {
    if (this.opts.maintenance === "inline") return this.optimizeHere();
    // the index this handle knows of: a re-index that rewrote every row leaves LanceDB without it
    await runMaintenance(this.dir, { ...this.opts, index: this.#index ?? this.opts.index }, this.#index !== undefined);
    await this.table.checkoutLatest();
    await this.#checkIndices();
  }

  /** `optimize` in this process; `indexed`: the store had an ANN index (to train again if lost). */
  async optimizeHere(indexed = this.#index !== undefined): Promise<void> {
    if (indexed) this.#index ??= this.opts.index;
    const before = await this.#vectorIndex();
    // compacts fragments, adds unindexed rows to every index (vectors, ids, versions) and drops the
    // files of table versions no reader can still be on (`cleanupBefore`); another writer's commit
    // in between (a conflict) is answered by running it again on the new table version
    const startedAt = Date.now();
    const runsPath = join(this.dir, MAINTENANCE);
    let runs: OptimizeRun[] = [];
    try {
      runs = JSON.parse(readFileSync(runsPath, "utf8")) as OptimizeRun[];
    } catch {
      // none yet (or unreadable): no run is known, so no version is old enough to delete
    }
    const bound = cleanupBefore(runs, startedAt, this.opts.keepVersionsMs);
    // with no bound, nothing is old enough: LanceDB keeps versions younger than the date given
    const cleanupOlderThan = new Date(bound ?? 0);
    try {
      await this.table.optimize({ cleanupOlderThan });
    } catch (e) {
      if (!/conflict|preempted|retry/i.test((e as Error).message)) throw e;
      await this.table.optimize({ cleanupOlderThan });
    }
    if (!this.#index) return this.#recordRun(runsPath, runs, startedAt);
    const after = await this.#vectorIndex();
    // the ANN index is trained again (one graph over every row) when LanceDB has dropped it (none
    // of its rows left), and, while the store holds one version only, when
    // - most rows were written since it was built: its training no longer fits the vectors;
    // - each optimize added the new rows as one more segment, and a search walks every segment:
    //   past `maxIndexSegments` the segments cost more than a rebuild saves.
    // While a re-index leaves several versions in the store it is not: each segment added meanwhile
    // holds rows of the new version only, whereas one graph over both makes every search of one
    // version a filtered walk of a graph mostly of the other (measured on 100k rows, a third
    // re-indexed: 31 ms of CPU per request of two version searches after such a rebuild, 14 ms with
    // the versions in separate segments). The re-index's last optimize trains it anew.
    const segments = after ? ((await this.table.indexStats(after.name))?.numIndices ?? 1) : 0;
    const mixed = Object.keys(await this.versions()).length > 1;
    if (
      !before ||
      !after ||
      (!mixed &&
        ((before.numUnindexedRows ?? 0) > (before.numIndexedRows ?? 0) || segments > this.opts.maxIndexSegments))
    )
      await this.buildIndex();
    this.#recordRun(runsPath, runs, startedAt);
  }

  /** Adds a finished optimize run to the maintenance file (the last 20 are kept). */
  #recordRun(runsPath: string, runs: OptimizeRun[], startedAt: number): void {
    writeAtomic(runsPath, JSON.stringify([...runs, { startedAt, finishedAt: Date.now() }].slice(-20)));
  }

  async readState(): Promise<StoreState | null> {
    try {
      return JSON.parse(await readFile(join(this.dir, STATE), "utf8")) as StoreState;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw e;
    }
  }

  async writeState(state: StoreState): Promise<void> {
    const path = join(this.dir, STATE);
    const tmp = tmpName(path);
    await writeFile(tmp, `${JSON.stringify(state)}\n`);
    await rename(tmp, path);
  }

  async close(): Promise<void> {
    this.table.close();
  }
}
