/**
 * The embedded default store: a LanceDB table per index (one directory), with the model version on
 * every row. Search is exact until the table reaches `annThreshold` rows; then an IVF-PQ index on
 * the vectors (cosine) is built, and rows written after it are searched exactly alongside it
 * (LanceDB's default), so nothing is missed before the index is optimised again.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
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
  type VectorStore,
} from "./store.js";

const TABLE = "vectors";
const META = "qdc-store.json";
const VERSIONS = "qdc-versions.json";

/** A SQL string literal. */
export const sqlString = (s: string) => `'${s.replace(/'/g, "''")}'`;

function where(filter: Filter | undefined, version: string | undefined): string | undefined {
  const parts: string[] = [];
  if (version !== undefined) parts.push(`version = ${sqlString(version)}`);
  for (const [k, v] of Object.entries(filter ?? {}))
    parts.push(`${k} = ${typeof v === "number" ? String(v) : sqlString(v)}`);
  return parts.length ? parts.join(" AND ") : undefined;
}

export interface LanceOptions {
  /** rows from which the IVF-PQ index is built (default 100,000) */
  annThreshold?: number;
  /** IVF partitions probed per query (default: a quarter of the partitions, at least 20) */
  nprobes?: number;
  /** candidates re-ranked exactly per result (default 10) */
  refineFactor?: number;
}

export class LanceStore implements VectorStore {
  readonly kind = "lancedb";
  #indexed = false;
  #nprobes = 20;
  /** versions ever written (counted on demand; a scan of the version column would cost a full pass) */
  #known = new Set<string>();

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
    const conn = await lancedb.connect(dir);
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
      writeFileSync(metaPath, `${JSON.stringify(s)}\n`);
    }
    const store = new LanceStore(dir, s, table, {
      annThreshold: opts.annThreshold ?? 100000,
      nprobes: opts.nprobes ?? 0,
      refineFactor: opts.refineFactor ?? 10,
    });
    const indices = await table.listIndices();
    store.#indexed = indices.some((i) => i.columns.includes("vector"));
    if (store.#indexed) store.#nprobes = Math.max(20, Math.ceil(Math.sqrt(await table.countRows()) / 4));
    const versionsPath = join(dir, VERSIONS);
    if (existsSync(versionsPath))
      for (const v of JSON.parse(readFileSync(versionsPath, "utf8")) as string[]) store.#known.add(v);
    else if ((await table.countRows()) > 0) {
      // a table written by something else: learn its versions once
      for (const r of (await table.query().select(["version"]).toArray()) as { version: string }[])
        store.#known.add(r.version);
      store.#saveVersions();
    }
    return store;
  }

  get indexed(): boolean {
    return this.#indexed;
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

  #saveVersions(): void {
    const path = join(this.dir, VERSIONS);
    writeFileSync(`${path}.tmp`, JSON.stringify([...this.#known]));
    renameSync(`${path}.tmp`, path);
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
    if (!this.#indexed && (await this.table.countRows()) >= this.opts.annThreshold) await this.buildIndex();
  }

  async delete(ids: string[]): Promise<void> {
    if (!ids.length) return;
    await this.table.delete(`id IN (${ids.map(sqlString).join(", ")})`);
  }

  async search(vector: Float32Array, k: number, opts: SearchOptions = {}): Promise<StoreHit[]> {
    checkFilter(this.schema, opts.filter);
    let q = this.table
      .vectorSearch(Array.from(vector))
      .distanceType("cosine")
      .select(["id", "version", ...Object.keys(this.schema.fields), "_distance"])
      .limit(k);
    const w = where(opts.filter, opts.version);
    if (w) q = q.where(w);
    if (opts.exact || !this.#indexed) q = q.bypassVectorIndex();
    else q = q.nprobes(this.opts.nprobes || this.#nprobes).refineFactor(this.opts.refineFactor);
    const rows = (await q.toArray()) as Record<string, unknown>[];
    return rows.map((r) => ({
      id: String(r.id),
      version: String(r.version),
      score: 1 - Number(r._distance),
      fields: this.#fields(r),
    }));
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
    const out: Record<string, number> = {};
    for (const v of this.#known) {
      const n = await this.table.countRows(`version = ${sqlString(v)}`);
      if (n > 0) out[v] = n;
    }
    return out;
  }

  count(): Promise<number> {
    return this.table.countRows();
  }

  async buildIndex(): Promise<void> {
    const n = await this.table.countRows();
    if (n < 256) throw new Error(`an IVF-PQ index needs at least 256 rows, the store has ${n}`);
    const numPartitions = Math.max(1, Math.min(1024, Math.round(Math.sqrt(n))));
    this.#nprobes = Math.max(20, Math.ceil(numPartitions / 4));
    const numSubVectors =
      [96, 64, 48, 32, 24, 16, 12, 8, 6, 4, 2, 1].find((m) => this.schema.dim % m === 0 && this.schema.dim / m >= 4) ??
      1;
    await this.table.createIndex("vector", {
      config: lancedb.Index.ivfPq({ numPartitions, numSubVectors, distanceType: "cosine" }),
      replace: true,
    });
    this.#indexed = true;
  }

  async close(): Promise<void> {
    this.table.close();
  }
}
