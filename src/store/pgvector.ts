/**
 * The scale-out store: PostgreSQL with pgvector through `pg`. One table per index with a version
 * column and a btree on the version; once the table is large, an HNSW index (cosine) per model
 * version — a partial index `WHERE version = '…'` — so that a search of one version during a
 * re-index walks a graph of that version's rows alone instead of filtering a graph of all of them,
 * and a version's graph is dropped once its last row has been re-embedded. For corpora beyond one
 * machine the table can be partitioned (or distributed with Citus) on `id`; the queries here do
 * not depend on it.
 */
import { createHash } from "node:crypto";
import pg from "pg";
import {
  checkFilter,
  checkLease,
  checkRows,
  checkSchema,
  type Lease,
  type LeaseOptions,
  type OptimizeOptions,
  partBounds,
  type SearchOptions,
  type StaleOptions,
  type StoreHit,
  type StoreRow,
  type StoreSchema,
  type StoreState,
  type VectorStore,
} from "./store.js";

/** rows per INSERT statement of an upsert */
const UPSERT_ROWS = 128;
/** rows a handle writes between two ANALYZEs of the version column (see `#keepStatistics`) */
const ANALYZE_ROWS = 4096;

const vectorLiteral = (v: ArrayLike<number>) => `[${Array.from(v).join(",")}]`;
const { escapeLiteral } = pg as unknown as { escapeLiteral: (s: string) => string };

/** how often a store looks again at which per-version indexes exist (another process may add one) */
const INDEX_REFRESH_MS = 1000;

/**
 * The name of version `version`'s HNSW index on `table`: from a hash of both, so that every process
 * agrees and the name fits PostgreSQL's 63 characters whatever the table and version are. The
 * version itself is the index's comment (read back at open).
 */
export function versionIndexName(table: string, version: string): string {
  return `qdc_hnsw_${createHash("sha256").update(`${table}\0${version}`).digest("hex").slice(0, 24)}`;
}
const parseVector = (s: string) => Float32Array.from(s.slice(1, -1).split(",").map(Number));

export interface PgOptions {
  /** rows from which the HNSW index is built (default 100,000) */
  annThreshold?: number;
  /** hnsw.ef_search for queries, set once per connection (default 64; raised to k where k is larger) */
  efSearch?: number;
  /**
   * server-side statement_timeout of every query on the pool, in ms (default 10,000); the client
   * gives up a little later still. Index builds and VACUUM run on their own connection without it.
   */
  statementTimeoutMs?: number;
  /** pool size (default 8) */
  maxConnections?: number;
  /**
   * HNSW graph degree and build-time candidate list (pgvector's m and ef_construction; default 16
   * and 256, pgvector's own are 16 and 64). Measured on the serve benchmark's real embeddings (100k
   * × 128-d, 8 callers, 2 cores): 16/64 reached recall@10 0.935 at ef_search 400 (143 QPS); 16/256
   * 0.942 at 250 (246 QPS) and 0.966 at 400 (158 QPS), built in 84 s instead of 22; 32/128 0.958
   * at 160 (158 QPS), built in 97 s
   */
  m?: number;
  efConstruction?: number;
}

/** Errors after which the same read is worth one more try on a fresh connection. */
const CONNECTION_CODES = new Set([
  "57P01",
  "57P02",
  "57P03",
  "08000",
  "08003",
  "08006",
  "ECONNRESET",
  "ECONNREFUSED",
  "EPIPE",
]);
export function isConnectionError(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  const code = (e as { code?: unknown }).code;
  if (typeof code === "string" && CONNECTION_CODES.has(code)) return true;
  return /Connection terminated|not queryable|ECONNRESET|ECONNREFUSED/.test(e.message);
}

/**
 * pgvector's HNSW scan, resuming an iterative scan (hnsw.iterative_scan), can meet an element that
 * VACUUM (autovacuum, during a re-index that rewrites many rows) deleted since the scan's previous
 * step and fail with "cannot load deleted element" (pgvector 0.8.x): the same search on a fresh
 * snapshot succeeds.
 */
export function isTransientScanError(e: unknown): boolean {
  return e instanceof Error && /cannot load deleted element/.test(e.message);
}

/** an upsert's version lost its index between the check and the write (see `upsert`) */
class IndexGone extends Error {
  constructor() {
    super("a version's HNSW index was dropped during the write, twice in a row");
  }
}

const warn = (event: string, fields: Record<string, unknown>) =>
  process.stderr.write(`${JSON.stringify({ level: "warn", event, ...fields, time: new Date().toISOString() })}\n`);

/** per connection: its `SET hnsw.ef_search`, awaited before its first query (pg 9 drops query queueing) */
const settingUp = new WeakMap<pg.PoolClient, Promise<void>>();

async function connect(pool: pg.Pool): Promise<pg.PoolClient> {
  const client = await pool.connect();
  await settingUp.get(client);
  return client;
}

/**
 * `run` inside BEGIN … COMMIT on one connection (`begin` may add statements after BEGIN, e.g.
 * `SET LOCAL`); on an error: ROLLBACK, the connection discarded, the error passed on.
 */
async function transaction<T>(pool: pg.Pool, run: (c: pg.PoolClient) => Promise<T>, begin = "BEGIN"): Promise<T> {
  const client = await connect(pool);
  try {
    await client.query(begin);
    const r = await run(client);
    await client.query("COMMIT");
    client.release();
    return r;
  } catch (e) {
    await client.query("ROLLBACK").catch(() => {});
    client.release(true);
    throw e;
  }
}

/** pool.query, after the connection's setup. */
async function query(pool: pg.Pool, sql: string, params?: unknown[]): Promise<pg.QueryResult> {
  const client = await connect(pool);
  try {
    const r = await client.query(sql, params);
    client.release();
    return r;
  } catch (e) {
    client.release(e as Error);
    throw e;
  }
}

export class PgVectorStore implements VectorStore {
  readonly kind = "pgvector";
  /**
   * pgvector indexes every write, so a re-index needs no optimize until its end: a VACUUM in the
   * middle of one (16,384 of 100k rows rewritten, HNSW ef_construction 256) ran for more than
   * 3 minutes at a full core, repairing the graph around the dead rows, and held the re-index up
   * meanwhile; autovacuum does that work throttled, as PostgreSQL intends, where the store's own
   * ANALYZEs leave it time (`#keepStatistics` cancels one that holds the table)
   */
  readonly optimizeEvery = Number.POSITIVE_INFINITY;
  /** version → its HNSW index, as last read from the catalogue */
  #annIndexes = new Map<string, string>();
  /** the one HNSW index over every row that stores of earlier releases have (replaced by optimize) */
  #legacyIndex = false;
  #indexesAt = Number.NEGATIVE_INFINITY;
  /** when this handle last built or dropped an index (a catalogue read begun before is stale) */
  #indexesChangedAt = Number.NEGATIVE_INFINITY;
  #invalidIndexes = new Set<string>();
  #refreshing: { at: number; done: Promise<void> } | null = null;
  /** rows this handle wrote since its last ANALYZE of the version column, and the versions it analyzed with */
  #sinceAnalyze = 0;
  #analyzed = new Set<string>();

  private constructor(
    private readonly pool: pg.Pool,
    /** how to open a connection of its own (index builds, VACUUM: no timeouts) */
    private readonly connection: pg.ClientConfig,
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
    const o: Required<PgOptions> = {
      annThreshold: opts.annThreshold ?? 100000,
      efSearch: opts.efSearch ?? 64,
      statementTimeoutMs: opts.statementTimeoutMs ?? 10000,
      maxConnections: opts.maxConnections ?? 8,
      m: opts.m ?? 16,
      efConstruction: opts.efConstruction ?? 256,
    };
    for (const [k, v] of Object.entries(o))
      if (!(v > 0) || (k !== "annThreshold" && !Number.isInteger(v)))
        throw new Error(`PgOptions.${k} must be a positive integer, got ${v}`);
    const base: pg.ClientConfig = typeof connection === "string" ? { connectionString: connection } : { ...connection };
    const pool = new pg.Pool({
      max: o.maxConnections,
      connectionTimeoutMillis: 5000,
      ...base,
      statement_timeout: o.statementTimeoutMs,
      // the client-side limit: a query the server does not answer at all (a dead host) fails too
      query_timeout: o.statementTimeoutMs + Math.max(1000, o.statementTimeoutMs / 5),
    });
    // an idle client's connection dying (pg_terminate_backend, a server restart) must not crash
    // the process: the pool drops that client and opens a new one when next needed
    pool.on("error", (e) =>
      warn("pg-connection-lost", { table, error: e.message, code: (e as { code?: string }).code ?? null }),
    );
    // ef_search once per connection instead of per query (a placeholder setting until pgvector is loaded)
    pool.on("connect", (client) => {
      // the pool listens for errors only on idle clients: one arriving while a client is checked out
      // between two queries (a terminated backend) would be uncaught. The dead client fails its
      // next query (a read is retried) and is dropped when released; idle ones are logged above.
      client.on("error", () => {});
      settingUp.set(
        client,
        client
          .query(`SET hnsw.ef_search = ${o.efSearch}`)
          .then(
            () => {},
            (e: Error) => {
              warn("pg-set-ef-search-failed", { table, error: e.message });
            },
          )
          // pgvector 0.8: a filtered HNSW scan (a version or field filter) goes on until it has k
          // rows instead of returning fewer; older versions lack the setting and filter as before
          .then(() => client.query("SET hnsw.iterative_scan = strict_order"))
          .then(
            () => {},
            () => {},
          ),
      );
    });
    try {
      await query(pool, "CREATE EXTENSION IF NOT EXISTS vector");
      // (two processes opening stores of a new database at once: one of the CREATEs loses the race)
      const create = (sql: string) =>
        query(pool, sql).catch((e: { code?: string }) => {
          if (!["23505", "42P07"].includes(e.code ?? "")) throw e;
        });
      await create("CREATE TABLE IF NOT EXISTS qdc_stores (name text PRIMARY KEY, schema jsonb NOT NULL, state jsonb)");
      // re-index workers' claims on rows (see `stale`), of every store in the database
      await create(
        "CREATE TABLE IF NOT EXISTS qdc_claims (store text, id text, owner text NOT NULL, until timestamptz NOT NULL, PRIMARY KEY (store, id))",
      );
      // named leases (the service's re-index: one replica runs it), of every store in the database
      await create(
        "CREATE TABLE IF NOT EXISTS qdc_leases (store text, name text, owner text NOT NULL, until timestamptz NOT NULL, PRIMARY KEY (store, name))",
      );
      // databases from before the state column: added once (ALTER takes a lock, so only when missing)
      const hasState = await query(
        pool,
        "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'qdc_stores' AND column_name = 'state'",
      );
      if (!hasState.rows.length) await query(pool, "ALTER TABLE qdc_stores ADD COLUMN IF NOT EXISTS state jsonb");
      const existing = await query(pool, "SELECT schema FROM qdc_stores WHERE name = $1", [table]);
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
        const created = s;
        await transaction(pool, async (client) => {
          await client.query(
            `CREATE TABLE ${table} (id text PRIMARY KEY, version text NOT NULL, text text NOT NULL, embedding vector(${created.dim}) NOT NULL${cols.join("")})`,
          );
          await client.query(`CREATE INDEX ${table}_version ON ${table} (version)`);
          await client.query("INSERT INTO qdc_stores (name, schema) VALUES ($1, $2)", [table, JSON.stringify(created)]);
        });
      }
      const store = new PgVectorStore(pool, base, table, s, o);
      await store.#refreshIndexes(true);
      return store;
    } catch (e) {
      await pool.end();
      throw e;
    }
  }

  /**
   * A read: tried once more when the connection died under it (the pool opens a new one) or an HNSW
   * scan met an element vacuumed meanwhile (isTransientScanError), and a
   * timeout says which limit it hit.
   */
  async #read<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      try {
        return await run();
      } catch (e) {
        if (!isConnectionError(e) && !isTransientScanError(e)) throw e;
        warn("pg-retry", { table: this.table, what, error: (e as Error).message });
        // a moment for the pool to hear of its other dead idle connections
        await new Promise((r) => setTimeout(r, 50));
        return await run();
      }
    } catch (e) {
      throw this.#explain(e);
    }
  }

  #explain(e: unknown): unknown {
    if (!(e instanceof Error)) return e;
    const code = (e as { code?: string }).code;
    if (code === "57014" && /statement timeout/.test(e.message))
      e.message = `${e.message} (pgvector store '${this.table}': statementTimeoutMs ${this.opts.statementTimeoutMs})`;
    else if (e.message === "Query read timeout")
      e.message = `query timeout: no answer from PostgreSQL within ${this.opts.statementTimeoutMs} ms (statementTimeoutMs) and the server did not cancel it (pgvector store '${this.table}')`;
    else if (/timeout exceeded when trying to connect/.test(e.message))
      e.message = `${e.message} (pgvector store '${this.table}': connection timeout 5000 ms, pool of ${this.opts.maxConnections})`;
    return e;
  }

  /** A connection of its own without timeouts, for index builds and VACUUM. */
  async #maintenance<T>(run: (c: pg.Client) => Promise<T>): Promise<T> {
    const c = new pg.Client({ ...this.connection, statement_timeout: 0, query_timeout: undefined });
    c.on("error", (e) => warn("pg-connection-lost", { table: this.table, error: e.message, maintenance: true }));
    await c.connect();
    try {
      return await run(c);
    } finally {
      await c.end().catch(() => {});
    }
  }

  get indexed(): boolean {
    return this.#legacyIndex || this.#annIndexes.size > 0;
  }

  /** The HNSW indexes of the table, read from the catalogue (at most once a second unless `now`). */
  async #refreshIndexes(now = false): Promise<void> {
    if (!now && performance.now() - this.#indexesAt < INDEX_REFRESH_MS) return;
    // concurrent callers share one read; a read begun before a change it must see is not shared
    const started = performance.now();
    if (this.#refreshing && this.#refreshing.at >= started - (now ? 0 : INDEX_REFRESH_MS)) return this.#refreshing.done;
    const done = this.#readIndexes(started);
    this.#refreshing = { at: started, done };
    try {
      await done;
    } finally {
      if (this.#refreshing?.done === done) this.#refreshing = null;
    }
  }

  async #readIndexes(started: number): Promise<void> {
    const r = await query(
      this.pool,
      `SELECT c.relname AS name, obj_description(c.oid, 'pg_class') AS note, i.indisvalid AS valid
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
        WHERE t.relname = $1 AND t.relnamespace = current_schema()::regnamespace`,
      [this.table],
    );
    const found = new Map<string, string>();
    const invalid = new Set<string>();
    let legacy = false;
    for (const row of r.rows as { name: string; note: string | null; valid: boolean }[]) {
      // an index whose build or CONCURRENTLY drop was interrupted: unusable, rebuilt when needed
      if (!row.valid) {
        if (row.name.startsWith("qdc_hnsw_")) invalid.add(row.name);
      } else if (row.name === `${this.table}_hnsw`) legacy = true;
      else if (row.name.startsWith("qdc_hnsw_") && row.note?.startsWith("qdc version "))
        found.set(row.note.slice("qdc version ".length), row.name);
    }
    // an index this handle built after the read began is kept
    if (this.#indexesChangedAt > started) return;
    this.#annIndexes = found;
    this.#invalidIndexes = invalid;
    this.#legacyIndex = legacy;
    this.#indexesAt = started;
  }

  /**
   * Builds version `version`'s HNSW index (partial: its rows only) unless it exists: in one
   * transaction with the comment naming the version, so a build that dies leaves nothing behind.
   * CREATE INDEX holds writes (not searches) off the table while it runs: a moment for a version
   * with no rows yet (a re-index's first write), the whole graph build otherwise.
   */
  async #ensureIndex(version: string, rows?: number): Promise<void> {
    if (this.#annIndexes.has(version)) return;
    const name = versionIndexName(this.table, version);
    await this.#maintenance(async (c) => {
      // the graph is built in memory when it fits maintenance_work_mem (else on disk, many times
      // slower): raised for this connection to about its size, rows × (vector + 2m neighbours)
      const n =
        rows ??
        Number(
          (await c.query(`SELECT count(*)::bigint AS n FROM ${this.table} WHERE version = $1`, [version])).rows[0].n,
        );
      const mb = Math.ceil((n * (this.schema.dim * 4 + this.opts.m * 2 * 10 + 64) * 1.3) / 2 ** 20) + 64;
      const have = (
        await c.query("SELECT setting::bigint / 1024 AS mb FROM pg_settings WHERE name = 'maintenance_work_mem'")
      ).rows[0].mb as string;
      if (mb > Number(have)) await c.query(`SET maintenance_work_mem = '${mb}MB'`);
      // an invalid index of that name (an interrupted build or drop) would satisfy IF NOT EXISTS
      if (this.#invalidIndexes.has(name)) await c.query(`DROP INDEX CONCURRENTLY IF EXISTS ${name}`);
      try {
        await c.query("BEGIN");
        await c.query(
          `CREATE INDEX IF NOT EXISTS ${name} ON ${this.table} USING hnsw (embedding vector_cosine_ops) WITH (m = ${this.opts.m}, ef_construction = ${this.opts.efConstruction}) WHERE version = ${escapeLiteral(version)}`,
        );
        await c.query(`COMMENT ON INDEX ${name} IS ${escapeLiteral(`qdc version ${version}`)}`);
        await c.query("COMMIT");
      } catch (e) {
        await c.query("ROLLBACK").catch(() => {});
        // another process built the same index at the same moment: theirs is as good
        if (!["23505", "42P07"].includes((e as { code?: string }).code ?? "")) throw e;
      }
    });
    this.#annIndexes.set(version, name);
    this.#invalidIndexes.delete(name);
    this.#indexesChangedAt = performance.now();
  }

  /**
   * Each of `versions` with its index: the catalogue read afresh first where one seems missing, or
   * always when `doubt` (the cached list is known to be wrong: an index was dropped under a write).
   */
  async #ensureIndexes(versions: string[], doubt = false): Promise<void> {
    if (!doubt && versions.every((v) => this.#annIndexes.has(v))) return;
    await this.#refreshIndexes(true);
    for (const v of versions) await this.#ensureIndex(v);
  }

  /**
   * Indexes brought in line with the rows (`build`: also where the table has none yet, as
   * `buildIndex`): a version with rows and no index gets one (a write
   * that raced an index build, or a handle that had not seen the store become indexed); the
   * indexes of versions without rows are dropped (CONCURRENTLY: searches are not held up), each
   * under the version's advisory lock taken exclusively, so not while a write of that version is
   * in flight (writers hold it shared in their transaction, see `upsert`); and the one index of
   * earlier releases over all rows goes once every version has its own.
   */
  async #reconcileIndexes(build = false): Promise<void> {
    await this.#refreshIndexes(true);
    const counts = await this.versions();
    if (build || this.indexed)
      for (const [v, n] of Object.entries(counts)) if (!this.#annIndexes.has(v)) await this.#ensureIndex(v, n);
    const empty = [...this.#annIndexes].filter(([v]) => !counts[v]);
    const legacy = this.#legacyIndex && Object.keys(counts).every((v) => this.#annIndexes.has(v));
    if (!empty.length && !legacy && !this.#invalidIndexes.size) return;
    await this.#maintenance(async (c) => {
      /** drops index `name` under its advisory lock (skipped while a writer holds it) if `check` still holds */
      const dropIf = async (name: string, check: string, param: string) => {
        const locked = await c.query("SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok", [name]);
        if (!locked.rows[0].ok) return; // being written: not empty for long
        try {
          if ((await c.query(check, [param])).rows.length) await c.query(`DROP INDEX CONCURRENTLY IF EXISTS ${name}`);
        } finally {
          await c.query("SELECT pg_advisory_unlock(hashtextextended($1, 0))", [name]);
        }
      };
      // the version still without rows
      for (const [v, name] of empty)
        await dropIf(name, `SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM ${this.table} WHERE version = $1)`, v);
      // still invalid (another process may have rebuilt it since the list was read)
      for (const name of this.#invalidIndexes)
        await dropIf(name, "SELECT 1 FROM pg_index WHERE indexrelid = to_regclass($1) AND NOT indisvalid", name);
      if (legacy) await c.query(`DROP INDEX CONCURRENTLY IF EXISTS ${this.table}_hnsw`);
    });
    this.#indexesChangedAt = performance.now();
    await this.#refreshIndexes(true);
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

  /**
   * One transaction (all rows or none), in statements of at most UPSERT_ROWS rows: every row is an
   * HNSW insert, and under a search load a single statement of 1,024 rows ran past the statement
   * timeout (which is per statement).
   */
  async upsert(rows: StoreRow[]): Promise<void> {
    if (!rows.length) return;
    checkRows(this.schema, rows);
    // an indexed table gets each new version's graph before its first row: every row written
    // after is an HNSW insert into it, and a search of that version walks it from the start
    await this.#read("indexes", () => this.#refreshIndexes());
    const versions = [...new Set(rows.map((r) => r.version))];
    if (this.indexed) await this.#ensureIndexes(versions);
    const names = ["id", "version", "text", "embedding", ...this.#fieldNames()];
    const updates = names
      .slice(1)
      .map((n) => `${n} = EXCLUDED.${n}`)
      .join(", ");
    const statement = (chunk: StoreRow[]) => {
      const values: unknown[] = [];
      const tuples = chunk.map((r, i) => {
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
      return {
        sql: `INSERT INTO ${this.table} (${names.join(", ")}) VALUES ${tuples.join(", ")} ON CONFLICT (id) DO UPDATE SET ${updates}`,
        values,
      };
    };
    // the versions' index names locked shared until commit: their indexes are not dropped while
    // these rows are uncommitted; one dropped just before is noticed here and the write redone
    const indexNames = this.indexed ? versions.map((v) => versionIndexName(this.table, v)) : [];
    for (let attempt = 0; ; attempt++) {
      const missing = await transaction(this.pool, async (client) => {
        if (indexNames.length) {
          await client.query("SELECT pg_advisory_xact_lock_shared(hashtextextended(n, 0)) FROM unnest($1::text[]) n", [
            indexNames,
          ]);
          const have = await client.query(
            "SELECT count(*)::int AS n FROM pg_class WHERE relname = ANY($1) AND relnamespace = current_schema()::regnamespace",
            [indexNames],
          );
          if (have.rows[0].n < indexNames.length) throw new IndexGone();
        }
        for (let i = 0; i < rows.length; i += UPSERT_ROWS) {
          const { sql, values } = statement(rows.slice(i, i + UPSERT_ROWS));
          await client.query(sql, values);
        }
        return false;
      }).catch((e: unknown) => {
        if (e instanceof IndexGone && attempt === 0) return true;
        throw this.#explain(e);
      });
      if (!missing) break;
      await this.#ensureIndexes(versions, true);
    }
    await this.#keepStatistics(versions, rows.length);
    if (!this.indexed && (await this.count()) >= this.opts.annThreshold) await this.buildIndex();
  }

  /** The rows move from `from`'s index into `to`'s (built first), and `from`'s is dropped. */
  async renameVersion(from: string, to: string): Promise<void> {
    await this.#refreshIndexes(true);
    if (this.indexed) await this.#ensureIndex(to);
    await query(this.pool, `UPDATE ${this.table} SET version = $2 WHERE version = $1`, [from, to]);
    if (this.#annIndexes.has(from)) await this.#reconcileIndexes();
    this.#analyzed.delete(to);
    await this.#keepStatistics([to], 0);
  }

  /**
   * Keeps the planner's statistics of the version column current while rows move between
   * versions. Autovacuum analyzes a table only at the end of its VACUUM, which on an HNSW table in
   * the middle of a re-index runs for minutes; until then the planner takes a new version for one
   * row and searches it through the btree on `version` and a sort: an exact scan of every row
   * re-indexed so far instead of the version's HNSW graph (measured with 50k of 100k rows
   * rewritten, straight from Node: the new version at 61.8 QPS). So an indexed store's handle runs
   * `ANALYZE (version)` (a sample of 30,000 rows: 86 ms on 100k) after its first write of a version
   * and after every ANALYZE_ROWS rows. It waits for the table's lock at most 2 s: past
   * deadlock_timeout (1 s) PostgreSQL cancels an autovacuum that holds it (and starts it again
   * later; the re-index's own closing VACUUM does the cleanup), while a VACUUM that `optimize` or
   * a user runs is waited out and the ANALYZE tried again after the next write.
   */
  async #keepStatistics(versions: string[], rows: number): Promise<void> {
    if (!this.indexed) return;
    this.#sinceAnalyze += rows;
    if (this.#sinceAnalyze < ANALYZE_ROWS && versions.every((v) => this.#analyzed.has(v))) return;
    const ok = await transaction(
      this.pool,
      (c) => c.query(`ANALYZE ${this.table} (version)`),
      "BEGIN; SET LOCAL lock_timeout = '2s'",
    ).then(
      () => true,
      () => false,
    );
    if (!ok) return;
    this.#sinceAnalyze = 0;
    for (const v of versions) this.#analyzed.add(v);
  }

  async delete(ids: string[]): Promise<void> {
    if (ids.length) await query(this.pool, `DELETE FROM ${this.table} WHERE id = ANY($1)`, [ids]);
  }

  /** The WHERE clause of a search (parameters from `$first` on) and its parameters. */
  #conditions(opts: SearchOptions, first: number): { where: string; params: unknown[] } {
    checkFilter(this.schema, opts.filter);
    const params: unknown[] = [];
    const conds: string[] = [];
    // the version as a literal: the planner proves a partial index's predicate from constants only
    if (opts.version !== undefined) conds.push(`version = ${escapeLiteral(opts.version)}`);
    for (const [f, v] of Object.entries(opts.filter ?? {})) {
      params.push(v);
      conds.push(`${f} = $${first + params.length - 1}`);
    }
    return { where: conds.length ? ` WHERE ${conds.join(" AND ")}` : "", params };
  }

  /**
   * The distance to order by: the bare operator lets the planner use the HNSW index; `+ 0` keeps
   * the same order but no index can produce it, so the search is exact (a sequential scan).
   */
  #orderBy(q: string, opts: SearchOptions): string {
    return opts.exact || !this.indexed ? `(embedding <=> ${q}) + 0` : `embedding <=> ${q}`;
  }

  /**
   * The top-k of query vector `q` (an SQL expression) among the rows `where` selects, as a
   * subquery. A search of every version of a table indexed per version is the union of each
   * version's own top-k (each an index scan of its graph), cut to k.
   */
  #topK(q: string, where: string, k: string, opts: SearchOptions): string {
    const cols = `id, version, 1 - (embedding <=> ${q}) AS score${this.#columns()}`;
    const one = (w: string) => `SELECT ${cols} FROM ${this.table}${w} ORDER BY ${this.#orderBy(q, opts)} LIMIT ${k}`;
    const versions = [...this.#annIndexes.keys()];
    if (opts.version !== undefined || opts.exact || this.#legacyIndex || !versions.length) return one(where);
    const parts = versions.map((v) => {
      const cond = `version = ${escapeLiteral(v)}`;
      return `(${one(where ? `${where} AND ${cond}` : ` WHERE ${cond}`)})`;
    });
    return parts.length === 1
      ? (parts[0] as string).slice(1, -1)
      : `SELECT * FROM (${parts.join(" UNION ALL ")}) u ORDER BY score DESC LIMIT ${k}`;
  }

  #hit(row: Record<string, unknown>): StoreHit {
    const fields: Record<string, string | number> = {};
    for (const k of this.#fieldNames())
      if (row[k] !== null && row[k] !== undefined) fields[k] = row[k] as string | number;
    return { id: String(row.id), version: String(row.version), score: Number(row.score), fields };
  }

  /**
   * Runs a search statement: one plain query with the connection's ef_search, or, where k is
   * beyond it (an HNSW scan returns at most ef_search rows), in a transaction that raises it.
   */
  async #query(sql: string, params: unknown[], k: number, opts: SearchOptions): Promise<pg.QueryResult> {
    const ann = this.indexed && !opts.exact;
    if (!ann || k <= this.opts.efSearch) return query(this.pool, sql, params);
    return transaction(
      this.pool,
      (c) => c.query(sql, params),
      `BEGIN; SET LOCAL hnsw.ef_search = ${Math.min(k, 1000)}`,
    );
  }

  #columns(): string {
    return this.#fieldNames()
      .map((f) => `, ${f}`)
      .join("");
  }

  async search(vector: Float32Array, k: number, opts: SearchOptions = {}): Promise<StoreHit[]> {
    const { where, params } = this.#conditions(opts, 3);
    return this.#read("search", async () => {
      await this.#refreshIndexes();
      const sql = this.#topK("$1::vector", where, "$2", opts);
      const all = [vectorLiteral(vector), k, ...params];
      return (await this.#query(sql, all, k, opts)).rows.map((r) => this.#hit(r));
    });
  }

  /**
   * All query vectors in one statement: a lateral top-k per vector (each one an HNSW index scan
   * where the table is indexed, as EXPLAIN shows), rows tagged with the vector's position.
   */
  async searchMany(vectors: Float32Array[], k: number, opts: SearchOptions = {}): Promise<StoreHit[][]> {
    const { where, params } = this.#conditions(opts, 3);
    if (!vectors.length) return [];
    // the vectors are parsed once (`$1::vector[]`): a cast inside the lateral query would parse the
    // text again for every row it scores (a filtered scan of 5,000 rows: 178 ms instead of 5)
    const all = [vectors.map(vectorLiteral), k, ...params];
    return this.#read("searchMany", async () => {
      await this.#refreshIndexes();
      const sql = `SELECT q.i${this.#columns()}, h.id, h.version, h.score FROM unnest($1::vector[]) WITH ORDINALITY AS q(v, i) CROSS JOIN LATERAL (${this.#topK("q.v", where, "$2", opts)}) h`;
      const out: StoreHit[][] = vectors.map(() => []);
      for (const row of (await this.#query(sql, all, k, opts)).rows) out[Number(row.i) - 1]!.push(this.#hit(row));
      // each list in distance order (a stable sort: ties keep the scan's order)
      for (const hits of out) hits.sort((a, b) => b.score - a.score);
      return out;
    });
  }

  async readState(): Promise<StoreState | null> {
    return this.#read("readState", async () => {
      const r = await query(this.pool, "SELECT state FROM qdc_stores WHERE name = $1", [this.table]);
      return (r.rows[0]?.state as StoreState | null | undefined) ?? null;
    });
  }

  /** One UPDATE: atomic, and a reader sees the old or the new document. */
  async writeState(state: StoreState): Promise<void> {
    try {
      const r = await query(this.pool, "UPDATE qdc_stores SET state = $2 WHERE name = $1", [
        this.table,
        JSON.stringify(state),
      ]);
      if (r.rowCount !== 1) throw new Error(`no qdc store '${this.table}' in qdc_stores to record the state of`);
    } catch (e) {
      throw this.#explain(e);
    }
  }

  /** One UPDATE merging the top-level keys (jsonb `||`): atomic against other writers. */
  async patchState(patch: Partial<StoreState>): Promise<void> {
    try {
      const r = await query(
        this.pool,
        "UPDATE qdc_stores SET state = COALESCE(state, '{}'::jsonb) || $2::jsonb WHERE name = $1",
        [this.table, JSON.stringify(patch)],
      );
      if (r.rowCount !== 1) throw new Error(`no qdc store '${this.table}' in qdc_stores to record the state of`);
    } catch (e) {
      throw this.#explain(e);
    }
  }

  /**
   * VACUUM (ANALYZE): reclaims the dead row versions a re-index leaves (also in the HNSW indexes,
   * whose rows are always current: pgvector indexes every write) and refreshes the planner's
   * statistics; then drops the indexes of versions left without rows (and a store's index of
   * earlier releases over all rows once every version has its own). On a connection of its own:
   * outside any transaction and without the statement timeout.
   */
  async optimize(_opts?: OptimizeOptions): Promise<void> {
    await this.#maintenance((c) => c.query(`VACUUM (ANALYZE) ${this.table}`));
    await this.#reconcileIndexes();
    // claims left by workers that died after their writes
    await query(this.pool, "DELETE FROM qdc_claims WHERE store = $1 AND until < clock_timestamp()", [this.table]);
  }

  async get(ids: string[]): Promise<StoreRow[]> {
    if (!ids.length) return [];
    return this.#read("get", async () => {
      const r = await query(this.pool, `SELECT * FROM ${this.table} WHERE id = ANY($1)`, [ids]);
      return r.rows.map((row: Record<string, unknown>) => this.#row(row));
    });
  }

  /**
   * Stale rows in id order; with `opts.part` only a worker's share of the ids (MD5 ranges, as
   * LanceDB); with `opts.claim` only rows no other owner holds an unexpired claim on, claimed in the
   * same statement: the rows are locked `FOR UPDATE SKIP LOCKED` (two workers claiming at the same
   * moment take different rows) and the claim replaces another owner's only once expired.
   */
  async stale(version: string, limit: number, opts: StaleOptions = {}): Promise<StoreRow[]> {
    const params: unknown[] = [version, limit];
    let part = "";
    if (opts.part) {
      const { lo, hi } = partBounds(opts.part.index, opts.part.count);
      params.push(lo);
      part = ` AND md5(t.id) >= $${params.length}`;
      if (hi) {
        params.push(hi);
        part += ` AND md5(t.id) < $${params.length}`;
      }
    }
    if (!opts.claim)
      return this.#read("stale", async () => {
        const r = await query(
          this.pool,
          `SELECT * FROM ${this.table} t WHERE version <> $1${part} ORDER BY id LIMIT $2`,
          params,
        );
        return r.rows.map((row: Record<string, unknown>) => this.#row(row));
      });
    const { owner, seconds } = opts.claim;
    if (!owner || !(seconds > 0))
      throw new Error(`a claim needs an owner and a lease in seconds > 0, got ${owner}, ${seconds}`);
    params.push(this.table, owner, seconds);
    const [s, o, secs] = [params.length - 2, params.length - 1, params.length];
    const sql = `WITH picked AS (
        SELECT t.id FROM ${this.table} t
         WHERE t.version <> $1${part}
           AND NOT EXISTS (SELECT 1 FROM qdc_claims c
                            WHERE c.store = $${s} AND c.id = t.id AND c.owner <> $${o} AND c.until > clock_timestamp())
         ORDER BY t.id LIMIT $2
         FOR UPDATE OF t SKIP LOCKED),
      claimed AS (
        INSERT INTO qdc_claims (store, id, owner, until)
        SELECT $${s}, id, $${o}, clock_timestamp() + make_interval(secs => $${secs}) FROM picked
        ON CONFLICT (store, id) DO UPDATE SET owner = EXCLUDED.owner, until = EXCLUDED.until
         WHERE qdc_claims.owner = EXCLUDED.owner OR qdc_claims.until <= clock_timestamp()
        RETURNING id)
      SELECT t.* FROM ${this.table} t JOIN claimed USING (id) ORDER BY t.id`;
    try {
      const r = await query(this.pool, sql, params);
      return r.rows.map((row: Record<string, unknown>) => this.#row(row));
    } catch (e) {
      throw this.#explain(e);
    }
  }

  async renewClaims(owner: string, ids: string[], seconds: number): Promise<void> {
    if (!ids.length) return;
    await query(
      this.pool,
      "UPDATE qdc_claims SET until = clock_timestamp() + make_interval(secs => $4) WHERE store = $1 AND owner = $2 AND id = ANY($3)",
      [this.table, owner, ids, seconds],
    );
  }

  async releaseClaims(owner: string, ids: string[]): Promise<void> {
    if (!ids.length) return;
    await query(this.pool, "DELETE FROM qdc_claims WHERE store = $1 AND owner = $2 AND id = ANY($3)", [
      this.table,
      owner,
      ids,
    ]);
  }

  /**
   * One statement takes the lease when it is free, expired or `owner`'s (on the database's clock);
   * the holder is read back in the next when another holds it (a holder that committed after this
   * statement's snapshot is not visible to it).
   */
  async lease(name: string, owner: string, seconds: number, opts: LeaseOptions = {}): Promise<Lease> {
    checkLease(owner, seconds);
    const until = "(extract(epoch FROM until) * 1000)::float8 AS until";
    try {
      // (a holder that gives the lease up between the two statements: taken on the next attempt)
      for (let attempt = 0; attempt < 3; attempt++) {
        const r = await query(
          this.pool,
          `INSERT INTO qdc_leases (store, name, owner, until)
           VALUES ($1, $2, $3, clock_timestamp() + make_interval(secs => $4))
           ON CONFLICT (store, name) DO UPDATE SET owner = EXCLUDED.owner, until = EXCLUDED.until
            WHERE qdc_leases.owner IN (EXCLUDED.owner, $5) OR qdc_leases.until <= clock_timestamp()
           RETURNING owner, ${until}`,
          [this.table, name, owner, seconds, opts.replace ?? owner],
        );
        const row =
          r.rows[0] ??
          (
            await query(this.pool, `SELECT owner, ${until} FROM qdc_leases WHERE store = $1 AND name = $2`, [
              this.table,
              name,
            ])
          ).rows[0];
        if (row) return { owner: String(row.owner), until: Number(row.until) };
      }
      throw new Error(`the lease ${name} of ${this.table} was given up and taken again three times while being read`);
    } catch (e) {
      throw this.#explain(e);
    }
  }

  async releaseLease(name: string, owner: string): Promise<void> {
    await query(this.pool, "DELETE FROM qdc_leases WHERE store = $1 AND name = $2 AND owner = $3", [
      this.table,
      name,
      owner,
    ]);
  }

  async *iterate(version: string, batch: number): AsyncGenerator<StoreRow[]> {
    let after = "";
    for (;;) {
      const r = await query(
        this.pool,
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
    return this.#read("versions", async () => {
      const r = await query(this.pool, `SELECT version, count(*)::int AS n FROM ${this.table} GROUP BY version`);
      return Object.fromEntries(r.rows.map((row: { version: string; n: number }) => [row.version, row.n]));
    });
  }

  async count(): Promise<number> {
    return this.#read("count", async () => {
      const r = await query(this.pool, `SELECT count(*)::int AS n FROM ${this.table}`);
      return r.rows[0].n as number;
    });
  }

  /**
   * An HNSW index per version present (each on a connection of its own: a build takes longer than
   * the statement timeout); a store's index of earlier releases over all rows is dropped after.
   */
  async buildIndex(): Promise<void> {
    await this.#reconcileIndexes(true);
    await this.#maintenance((c) => c.query(`ANALYZE ${this.table}`));
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
