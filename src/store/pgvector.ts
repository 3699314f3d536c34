/**
 * The scale-out store: PostgreSQL with pgvector through `pg`. One table per index with a version
 * column, an HNSW index on the vectors (cosine) once the table is large, and a btree on the
 * version. For corpora beyond one machine the table can be partitioned (or distributed with Citus)
 * on `id`; the queries here do not depend on it.
 */
import pg from "pg";
import {
  checkFilter,
  checkRows,
  checkSchema,
  type SearchOptions,
  type StoreHit,
  type StoreRow,
  type StoreSchema,
  type StoreState,
  type VectorStore,
} from "./store.js";

const vectorLiteral = (v: ArrayLike<number>) => `[${Array.from(v).join(",")}]`;
const parseVector = (s: string) => Float32Array.from(s.slice(1, -1).split(",").map(Number));

export interface PgOptions {
  /** rows from which the HNSW index is built (default 100,000) */
  annThreshold?: number;
  /** hnsw.ef_search for queries (default 100) */
  efSearch?: number;
}

export class PgVectorStore implements VectorStore {
  readonly kind = "pgvector";
  #indexed = false;

  private constructor(
    private readonly pool: pg.Pool,
    readonly table: string,
    readonly schema: StoreSchema,
    private readonly opts: Required<PgOptions>,
  ) {}

  /** Connects (a connection string or pool config) and opens table `table`, creating it with `schema`. */
  static async open(
    connection: string | pg.PoolConfig,
    table: string,
    schema?: StoreSchema,
    opts: PgOptions = {},
  ): Promise<PgVectorStore> {
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(table))
      throw new Error(`table name '${table}' must be a lower-case SQL identifier`);
    const pool = new pg.Pool(
      typeof connection === "string" ? { connectionString: connection, max: 4 } : { max: 4, ...connection },
    );
    try {
      await pool.query("CREATE EXTENSION IF NOT EXISTS vector");
      await pool.query("CREATE TABLE IF NOT EXISTS qdc_stores (name text PRIMARY KEY, schema jsonb NOT NULL)");
      const existing = await pool.query("SELECT schema FROM qdc_stores WHERE name = $1", [table]);
      let s: StoreSchema;
      if (existing.rows.length) {
        s = existing.rows[0].schema as StoreSchema;
        if (schema && JSON.stringify(schema) !== JSON.stringify(s))
          throw new Error(`table ${table} exists with schema ${JSON.stringify(s)}, not ${JSON.stringify(schema)}`);
      } else {
        if (!schema)
          throw new Error(`no qdc store '${table}' in this database (create one with a schema: \`qdc store load\`)`);
        checkSchema(schema);
        s = schema;
        const cols = Object.entries(s.fields).map(([k, t]) => `, ${k} ${t === "number" ? "double precision" : "text"}`);
        await pool.query("BEGIN");
        await pool.query(
          `CREATE TABLE ${table} (id text PRIMARY KEY, version text NOT NULL, text text NOT NULL, embedding vector(${s.dim}) NOT NULL${cols.join("")})`,
        );
        await pool.query(`CREATE INDEX ${table}_version ON ${table} (version)`);
        await pool.query("INSERT INTO qdc_stores (name, schema) VALUES ($1, $2)", [table, JSON.stringify(s)]);
        await pool.query("COMMIT");
      }
      const store = new PgVectorStore(pool, table, s, {
        annThreshold: opts.annThreshold ?? 100000,
        efSearch: opts.efSearch ?? 100,
      });
      const idx = await pool.query("SELECT 1 FROM pg_indexes WHERE tablename = $1 AND indexname = $2", [
        table,
        `${table}_hnsw`,
      ]);
      store.#indexed = idx.rows.length > 0;
      return store;
    } catch (e) {
      await pool.query("ROLLBACK").catch(() => {});
      await pool.end();
      throw e;
    }
  }

  get indexed(): boolean {
    return this.#indexed;
  }

  #fieldNames(): string[] {
    return Object.keys(this.schema.fields);
  }

  #row(r: Record<string, unknown>): StoreRow {
    const fields: Record<string, string | number> = {};
    for (const k of this.#fieldNames()) if (r[k] !== null && r[k] !== undefined) fields[k] = r[k] as string | number;
    return {
      id: String(r.id),
      version: String(r.version),
      text: String(r.text),
      vector: parseVector(String(r.embedding)),
      fields,
    };
  }

  async upsert(rows: StoreRow[]): Promise<void> {
    if (!rows.length) return;
    checkRows(this.schema, rows);
    const names = ["id", "version", "text", "embedding", ...this.#fieldNames()];
    const values: unknown[] = [];
    const tuples = rows.map((r, i) => {
      const vals = [
        r.id,
        r.version,
        r.text,
        vectorLiteral(r.vector),
        ...this.#fieldNames().map((k) => r.fields?.[k] ?? null),
      ];
      values.push(...vals);
      return `(${vals.map((_, j) => `$${i * names.length + j + 1}`).join(", ")})`;
    });
    const updates = names
      .slice(1)
      .map((n) => `${n} = EXCLUDED.${n}`)
      .join(", ");
    await this.pool.query(
      `INSERT INTO ${this.table} (${names.join(", ")}) VALUES ${tuples.join(", ")} ON CONFLICT (id) DO UPDATE SET ${updates}`,
      values,
    );
    if (!this.#indexed && (await this.count()) >= this.opts.annThreshold) await this.buildIndex();
  }

  async delete(ids: string[]): Promise<void> {
    if (ids.length) await this.pool.query(`DELETE FROM ${this.table} WHERE id = ANY($1)`, [ids]);
  }

  async search(vector: Float32Array, k: number, opts: SearchOptions = {}): Promise<StoreHit[]> {
    checkFilter(this.schema, opts.filter);
    const params: unknown[] = [vectorLiteral(vector), k];
    const conds: string[] = [];
    if (opts.version !== undefined) {
      params.push(opts.version);
      conds.push(`version = $${params.length}`);
    }
    for (const [f, v] of Object.entries(opts.filter ?? {})) {
      params.push(v);
      conds.push(`${f} = $${params.length}`);
    }
    const sql = `SELECT id, version, 1 - (embedding <=> $1) AS score${this.#fieldNames()
      .map((f) => `, ${f}`)
      .join(
        "",
      )} FROM ${this.table}${conds.length ? ` WHERE ${conds.join(" AND ")}` : ""} ORDER BY embedding <=> $1 LIMIT $2`;
    const client = await this.pool.connect();
    try {
      await client.query("BEGIN");
      // exact: no index scan; approximate: the HNSW index with this ef_search
      if (opts.exact || !this.#indexed) await client.query("SET LOCAL enable_indexscan = off");
      else await client.query(`SET LOCAL hnsw.ef_search = ${Math.max(this.opts.efSearch, k)}`);
      const r = await client.query(sql, params);
      await client.query("COMMIT");
      return r.rows.map((row: Record<string, unknown>) => ({
        id: String(row.id),
        version: String(row.version),
        score: Number(row.score),
        fields: this.#row({ ...row, text: "", embedding: "[]" }).fields ?? {},
      }));
    } catch (e) {
      await client.query("ROLLBACK").catch(() => {});
      throw e;
    } finally {
      client.release();
    }
  }

  async searchMany(vectors: Float32Array[], k: number, opts: SearchOptions = {}): Promise<StoreHit[][]> {
    return Promise.all(vectors.map((v) => this.search(v, k, opts)));
  }
  async readState(): Promise<StoreState | null> {
    return null;
  }
  async writeState(_state: StoreState): Promise<void> {}
  async optimize(): Promise<void> {}

  async get(ids: string[]): Promise<StoreRow[]> {
    if (!ids.length) return [];
    const r = await this.pool.query(`SELECT * FROM ${this.table} WHERE id = ANY($1)`, [ids]);
    return r.rows.map((row: Record<string, unknown>) => this.#row(row));
  }

  async stale(version: string, limit: number): Promise<StoreRow[]> {
    const r = await this.pool.query(`SELECT * FROM ${this.table} WHERE version <> $1 ORDER BY id LIMIT $2`, [
      version,
      limit,
    ]);
    return r.rows.map((row: Record<string, unknown>) => this.#row(row));
  }

  async *iterate(version: string, batch: number): AsyncGenerator<StoreRow[]> {
    let after = "";
    for (;;) {
      const r = await this.pool.query(
        `SELECT * FROM ${this.table} WHERE version = $1 AND id > $2 ORDER BY id LIMIT $3`,
        [version, after, batch],
      );
      if (!r.rows.length) return;
      const rows = r.rows.map((row: Record<string, unknown>) => this.#row(row));
      yield rows;
      after = (rows[rows.length - 1] as StoreRow).id;
    }
  }

  async versions(): Promise<Record<string, number>> {
    const r = await this.pool.query(`SELECT version, count(*)::int AS n FROM ${this.table} GROUP BY version`);
    return Object.fromEntries(r.rows.map((row: { version: string; n: number }) => [row.version, row.n]));
  }

  async count(): Promise<number> {
    const r = await this.pool.query(`SELECT count(*)::int AS n FROM ${this.table}`);
    return r.rows[0].n as number;
  }

  async buildIndex(): Promise<void> {
    await this.pool.query(
      `CREATE INDEX IF NOT EXISTS ${this.table}_hnsw ON ${this.table} USING hnsw (embedding vector_cosine_ops)`,
    );
    this.#indexed = true;
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
