/**
 * The search service's core, without HTTP. The current model (a version of the lineage) embeds
 * queries; rows of the store embedded by older versions are searched with the query compensated
 * along the lineage, rows of the current version natively, and the results merged by score
 * without duplicates (one retrieval path: `QueryRouter`, `mergeHits`).
 *
 * Speed: concurrent requests are batched into one forward pass, which runs in an encoder process
 * (the event loop only parses, routes and merges); each store version is searched once per batch
 * with all its query vectors. Safety: `upgrade` loads the new model, checks that its canary
 * embeddings are finite and that it reaches every version in the store, then switches in one
 * assignment (a request keeps the model it started with). Store writes of the re-indexer and
 * upgrades are serialised, so a re-index batch of a model being replaced is dropped rather than
 * written after the switch. The served model and the re-index state are recorded in the store, so
 * a restart (`qdc serve --store S`) resumes both.
 */
import { resolve } from "node:path";
import { type CompensationMode, locateModel, modelRoots } from "../lineage/index.js";
import { CALIBRATION_ROWS, type Calibration, calibrate, type Reference } from "../retrieval/calibration.js";
import { countRetrievals } from "../retrieval/reindex-order.js";
import { searchVersions } from "../retrieval/store-search.js";
import type { Filter, StoreHit, StoreRow, StoreState, VectorStore } from "../store/store.js";
import {
  type Encoder,
  EncoderExited,
  InlineEncoder,
  type ModelSpec,
  ProcessEncoder,
  type QueryJob,
  type QueryVectors,
} from "./encoder.js";
import { unfinishedLoad } from "./load.js";
import { checkUpgrade, describeCheck, type UpgradeCheck } from "./upgrade-check.js";

export type Compensation = Exclude<CompensationMode, "none">;

export class NothingToRollBack extends Error {
  constructor() {
    super("nothing to roll back to: this store has not been served with another model before this one");
    this.name = "NothingToRollBack";
  }
}

export interface ServiceOptions {
  store: VectorStore;
  /**
   * the model to serve: a directory, or an id found under `modelRoots` (default: the model
   * recorded in the store by the last service)
   */
  modelDir?: string;
  /** where models are found by id (a recorded model, an upgrade by id, ancestors); default QDC_MODELS */
  modelRoots?: string[];
  /** serve a store whose last `qdc store load` did not finish (refused by default) */
  allowIncomplete?: boolean;
  /** how rows of older versions are reached (default: as recorded, else mean) */
  compensate?: Compensation;
  device?: string;
  maxLength?: number;
  /**
   * where the tensor work runs: "process" (default) keeps the event loop free and gives the
   * re-indexer its own niced process; "inline" runs it on the calling thread
   */
  encoder?: "process" | "inline";
  /** libtorch threads of the query encoder process (default 1) */
  encoderThreads?: number;
  /** most texts embedded in one batched forward pass (default 64) */
  maxBatch?: number;
  /** structured events (errors, unreachable versions); default: JSON lines on stderr */
  log?: (event: Record<string, unknown>) => void;
  /**
   * what an upgrade must keep before it switches (`checkUpgrade` on the store as it is): the least
   * overlap@10 with the current model's results, on these queries or on pseudo-queries of `sample`
   * stored documents (default 200); an upgrade request can set its own minimum
   */
  upgradeCheck?: { minOverlap?: number; queries?: { id: string; text: string }[]; sample?: number };
}

class ModelState {
  refs = 0;
  retired = false;
  constructor(
    readonly spec: ModelSpec,
    readonly version: string,
    readonly dimension: number,
    /** store versions this model was checked to reach */
    readonly reachable: Set<string>,
  ) {}
}

export interface SearchResult {
  /** the model version that embedded the queries */
  model: string;
  /** per store version searched: rows and the compensation applied to reach them */
  versions: Record<string, { rows: number; compensation: string; calibrated?: boolean }>;
  results: StoreHit[][];
  timings: { waitMs: number; embedMs: number; compensateMs: number; storeMs: number; batch: number };
}

interface Pending {
  state: ModelState;
  job: QueryJob;
  resolve: (r: { vectors: QueryVectors; embedMs: number; compensateMs: number; batch: number }) => void;
  reject: (e: Error) => void;
}

const defaultLog = (e: Record<string, unknown>) =>
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), ...e })}\n`);

export class SearchService {
  readonly store: VectorStore;
  #state: ModelState;
  /** searches being answered now, and when one last began while another was (performance.now()) */
  #searching = 0;
  #contendedAt = Number.NEGATIVE_INFINITY;
  #versions: { at: number; counts: Record<string, number> } | null = null;
  readonly #opts: ServiceOptions;
  readonly #queries: Encoder;
  readonly #documents: Encoder;
  /** versions in the store the current model cannot reach (searched without them, reported) */
  readonly #unreachable = new Map<string, string>();
  readonly #queue: Pending[] = [];
  #inFlight = false;
  #pumpScheduled = false;
  #writes: Promise<unknown> = Promise.resolve();
  /** a switch is loading its model; unloads of retired models wait for it (`#unload`) */
  #switching = false;
  readonly #deferred = new Set<ModelState>();
  readonly #recorded: StoreState | null;
  /** models this service (or the one before it on this store) served: id → directory */
  readonly #served: Map<string, string>;
  /** the model served before the current one (what a rollback returns to) */
  #previous: string | null;
  readonly log: (event: Record<string, unknown>) => void;
  /**
   * called when the store holds rows of a version the current model cannot reach (a replica: rows
   * another replica's re-index wrote with a model this one has not switched to yet)
   */
  onUnreachable?: (version: string) => void;
  /** retrievals per document id (for re-indexing the most retrieved first) */
  readonly retrievals = new Map<string, number>();
  /**
   * per (current model, older version): rows of the older version embedded by both, for putting
   * its scores on the current model's scale in mixed-version searches ("pending" while embedded)
   */
  readonly #references = new Map<string, Reference | "pending" | { retryAt: number }>();

  private constructor(
    opts: ServiceOptions,
    state: ModelState,
    encoders: { queries: Encoder; documents: Encoder },
    recorded: StoreState | null,
  ) {
    this.#opts = opts;
    this.store = opts.store;
    this.#state = state;
    this.#queries = encoders.queries;
    this.#documents = encoders.documents;
    this.#recorded = recorded;
    this.#served = new Map(Object.entries(recorded?.models ?? {}));
    this.#served.set(state.version, state.spec.dir);
    this.#previous = recorded?.previous ?? null;
    this.log = opts.log ?? defaultLog;
  }

  static async create(opts: ServiceOptions): Promise<SearchService> {
    const recorded = await opts.store.readState();
    const unfinished = unfinishedLoad(recorded);
    if (unfinished && !opts.allowIncomplete)
      throw new Error(
        `${unfinished}: rerun that \`qdc store load\` to finish it (it goes on where it stopped), or serve the store as it is with --allow-incomplete`,
      );
    const roots = modelRoots(opts.modelRoots);
    const ref = opts.modelDir ?? recorded?.model;
    if (!ref)
      throw new Error(
        "no model given and the store records none (it was never served): pass the model that embedded it (--model DIR)",
      );
    const dir = locateModel(ref, roots, opts.modelDir ? undefined : recorded?.modelDir);
    const mode = opts.compensate ?? (recorded?.compensation as Compensation | undefined) ?? "mean";
    const inline = opts.encoder === "inline";
    const queries: Encoder = inline
      ? new InlineEncoder()
      : new ProcessEncoder({ threads: opts.encoderThreads ?? 1, name: "query encoder" });
    const documents: Encoder = inline
      ? queries
      : new ProcessEncoder({ threads: 1, nice: 10, name: "re-index encoder" });
    try {
      // models served here before are found by id without a root (rows they re-indexed, a rollback)
      const known = Object.values(recorded?.models ?? {});
      const state = await SearchService.#load(
        opts,
        queries,
        { ...SearchService.#spec(opts, dir, known), mode },
        recorded,
      );
      const service = new SearchService(opts, state, { queries, documents }, recorded);
      if (opts.modelDir && recorded?.model && recorded.model !== state.version)
        service.log({
          level: "warn",
          event: "model-overrides-record",
          model: state.version,
          recorded: recorded.model,
          message: `started with ${state.version} while the store records ${recorded.model}: ${state.version} is recorded now, and every replica following this store switches to it (start replicas without a model to follow the store)`,
        });
      await service.#record();
      return service;
    } catch (e) {
      await queries.close();
      if (documents !== queries) await documents.close();
      throw e;
    }
  }

  static #spec(opts: ServiceOptions, dir: string, known: Iterable<string> = []): Omit<ModelSpec, "mode"> {
    return {
      dir: resolve(dir),
      roots: modelRoots(opts.modelRoots),
      known: [...known],
      device: opts.device,
      maxLength: opts.maxLength,
    };
  }

  static async #load(
    opts: ServiceOptions,
    encoder: Encoder,
    spec: ModelSpec,
    recorded: StoreState | null,
  ): Promise<ModelState> {
    // every version in the store must be reachable before the model serves
    const targets = Object.keys(await opts.store.versions());
    let info: Awaited<ReturnType<Encoder["load"]>>;
    try {
      info = await encoder.load(spec, targets);
    } catch (e) {
      const hint =
        recorded && recorded.model !== spec.dir && recorded.modelDir !== spec.dir
          ? ` (the store was last served with ${recorded.model}${recorded.modelDir ? ` (${recorded.modelDir})` : ""}: start without a model to resume it)`
          : "";
      throw new Error(`${(e as Error).message}${hint}`);
    }
    // a model of another dimension may serve through maps into the stored versions' space (and
    // cannot re-index into this store); an empty store takes the model's own vectors
    const dim = opts.store.schema.dim;
    const wrong = Object.entries(info.reached ?? {}).find(([, d]) => d !== dim);
    if (wrong || (info.dimension !== dim && !targets.length)) {
      await encoder.unload(info.version);
      throw new Error(
        wrong
          ? `${info.version} reaches rows of ${wrong[0]} with ${wrong[1]}-d queries, the store holds ${dim}-d vectors`
          : `${info.version} embeds ${info.dimension}-d vectors, the store holds ${dim}-d ones`,
      );
    }
    return new ModelState(spec, info.version, info.dimension, new Set(targets));
  }

  get model(): { version: string; dir: string; compensation: string; dimension: number } {
    return {
      version: this.#state.version,
      dir: this.#state.spec.dir,
      compensation: this.#state.spec.mode,
      dimension: this.#state.dimension,
    };
  }

  /** The re-index state recorded in the store when the service started (for resuming it). */
  get recordedReindex(): Record<string, unknown> | undefined {
    return this.#recorded?.reindex;
  }

  /** Process ids of the query and re-index encoders (when they run as processes and are started). */
  get encoderPids(): { queries?: number; documents?: number } {
    const pid = (e: Encoder) => (e instanceof ProcessEncoder ? e.pid : undefined);
    return { queries: pid(this.#queries), documents: pid(this.#documents) };
  }

  /** Problems that do not stop the service but that an operator must see (for /health). */
  get problems(): string[] {
    return [...this.#unreachable.values()];
  }

  /** Rows per version, cached for a second (and dropped by `invalidate`). */
  async versions(): Promise<Record<string, number>> {
    if (!this.#versions || performance.now() - this.#versions.at > 1000)
      this.#versions = { at: performance.now(), counts: await this.store.versions() };
    return this.#versions.counts;
  }

  invalidate(): void {
    this.#versions = null;
  }

  /** The store versions `s` can search: new ones are checked once; unreachable ones are reported. */
  async #targets(s: ModelState, versions: string[]): Promise<string[]> {
    const fresh = versions.filter((v) => !s.reachable.has(v));
    for (const v of fresh) {
      try {
        await this.#queries.check(s.version, [v]);
        s.reachable.add(v);
        this.#unreachable.delete(v);
      } catch (e) {
        if (!this.#unreachable.has(v)) {
          const message = `store rows of ${v} are not searched: ${(e as Error).message}`;
          this.#unreachable.set(v, message);
          this.log({ level: "warn", event: "unreachable-version", version: v, message });
          this.onUnreachable?.(v);
        }
      }
    }
    return versions.filter((v) => s.reachable.has(v));
  }

  /** Queues a job for the next batched forward pass of `state`'s model. */
  #embed(state: ModelState, job: QueryJob) {
    return new Promise<{ vectors: QueryVectors; embedMs: number; compensateMs: number; batch: number }>(
      (resolve, reject) => {
        this.#queue.push({ state, job, resolve, reject });
        this.#schedule();
      },
    );
  }

  #schedule(): void {
    if (this.#inFlight || this.#pumpScheduled || !this.#queue.length) return;
    this.#pumpScheduled = true;
    // after the I/O callbacks now pending, so requests that arrived together go in one batch
    setImmediate(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  }

  #pump(): void {
    if (this.#inFlight || !this.#queue.length) return;
    const state = (this.#queue[0] as Pending).state;
    const max = this.#opts.maxBatch ?? 64;
    const batch: Pending[] = [];
    let texts = 0;
    for (let i = 0; i < this.#queue.length; ) {
      const p = this.#queue[i] as Pending;
      if (p.state === state && (batch.length === 0 || texts + p.job.texts.length <= max)) {
        batch.push(p);
        texts += p.job.texts.length;
        this.#queue.splice(i, 1);
      } else i++;
    }
    this.#inFlight = true;
    const jobs = batch.map((p) => p.job);
    // a query encoder that died mid-batch is started again: the batch is tried once more
    this.#queries
      .queries(state.version, jobs)
      .catch((e: Error) => {
        if (!(e instanceof EncoderExited)) throw e;
        this.log({ level: "warn", event: "encoder-restarted", message: e.message });
        return this.#queries.queries(state.version, jobs);
      })
      .then(
        (r) => {
          batch.forEach((p, i) => {
            p.resolve({
              vectors: r.results[i] as QueryVectors,
              embedMs: r.embedMs,
              compensateMs: r.compensateMs,
              batch: texts,
            });
          });
        },
        (e: Error) => {
          for (const p of batch) p.reject(e);
        },
      )
      .finally(() => {
        this.#inFlight = false;
        this.#schedule();
      });
  }

  /**
   * Whether searches queued behind one another within the last `ms` (one began while another was
   * being answered): then the re-index gives way. One client searching in turn leaves it alone.
   */
  searchesContended(ms: number): boolean {
    return performance.now() - this.#contendedAt < ms;
  }

  async search(texts: string[], k: number, filter?: Filter): Promise<SearchResult> {
    if (++this.#searching > 1) this.#contendedAt = performance.now();
    const s = this.#state;
    s.refs++;
    try {
      const t0 = performance.now();
      const counts = await this.versions();
      const targets = await this.#targets(s, Object.keys(counts));
      // two older versions and none of the current model's rows yet (an upgrade during a re-index):
      // the native queries are embedded too, to put both on the current model's scale
      const scale = targets.length > 1 && !targets.includes(s.version) ? [...targets, s.version] : targets;
      const { vectors, embedMs, compensateMs, batch } = await this.#embed(s, { texts, targets: scale });
      const t1 = performance.now();
      const calibrations = this.#calibrations(s, targets, vectors.rows);
      const searched = Object.fromEntries(targets.map((v) => [v, vectors.rows[v] as Float32Array[]]));
      // one call per version with all the request's query vectors; with a single version in the
      // store the version filter is left out
      const results = await searchVersions(this.store, searched, k, {
        filter,
        single: Object.keys(counts).length === 1,
        calibrations,
      });
      countRetrievals(this.retrievals, results);
      const storeMs = performance.now() - t1;
      return {
        model: s.version,
        versions: Object.fromEntries(
          targets.map((v) => [
            v,
            {
              rows: counts[v] ?? 0,
              compensation: v === s.version ? "none" : (s.spec.mode as string),
              ...(v === s.version || targets.length < 2 ? {} : { calibrated: calibrations?.[v] !== undefined }),
            },
          ]),
        ),
        results,
        // waitMs: queued behind other batches, plus the trip to the encoder process and back
        timings: { waitMs: Math.max(0, t1 - t0 - embedMs - compensateMs), embedMs, compensateMs, storeMs, batch },
      };
    } finally {
      this.#searching--;
      this.#release(s);
    }
  }

  /**
   * The score calibrations of a mixed-version search: for each older version whose reference is
   * ready. A missing reference is built in the background (its first rows, embedded by the current
   * model with the re-index encoder); until then that version's scores are merged as they are.
   */
  #calibrations(
    s: ModelState,
    targets: string[],
    rows: Record<string, Float32Array[]>,
  ): Record<string, Calibration> | undefined {
    const own = rows[s.version];
    if (targets.length < 2 || !own) return undefined;
    const out: Record<string, Calibration> = {};
    for (const v of targets) {
      const q = rows[v];
      if (v === s.version || !q) continue;
      const key = `${s.version}>${v}`;
      const ref = this.#references.get(key);
      if (ref === undefined || (typeof ref === "object" && "retryAt" in ref && performance.now() >= ref.retryAt)) {
        this.#references.set(key, "pending");
        void this.#reference(s.version, v, key);
      } else if (ref !== "pending" && "old" in ref) out[v] = calibrate(q, own, ref);
    }
    return out;
  }

  /** Builds the reference of `old` for the current model `version`; a failure is retried 30 s later at the earliest. */
  async #reference(version: string, old: string, key: string): Promise<void> {
    const m = this.acquire();
    try {
      if (m.version !== version) return; // upgraded meanwhile: the next mixed search asks again
      const it = this.store.iterate(old, CALIBRATION_ROWS);
      const first: StoreRow[] = (await it.next()).value ?? [];
      await it.return(undefined);
      if (first.length < 2) {
        this.#references.set(key, { retryAt: performance.now() + 30_000 });
        return;
      }
      const vectors = await this.embedDocuments(
        version,
        first.map((r) => r.text),
      );
      this.#references.set(key, { old: first.map((r) => r.vector), new: vectors });
      this.log({ level: "info", event: "calibration-reference", model: version, version: old, rows: first.length });
    } catch (e) {
      this.#references.set(key, { retryAt: performance.now() + 30_000 });
      this.log({
        level: "warn",
        event: "calibration-failed",
        model: version,
        version: old,
        message: (e as Error).message,
      });
    } finally {
      m.release();
      // a reference for a model no longer served is dropped
      if (this.#state.version !== version) this.#references.delete(key);
    }
  }

  #release(s: ModelState): void {
    s.refs--;
    if (s.retired && s.refs === 0) this.#unload(s);
  }

  #unload(s: ModelState): void {
    if (s.version === this.#state.version) return; // upgraded back to it meanwhile
    // a switch loading a model now may be loading this very version (an upgrade back to it: the
    // encoder answers from what it has): unloaded, if still retired, once the switch is made
    if (this.#switching) {
      this.#deferred.add(s);
      return;
    }
    for (const e of new Set([this.#queries, this.#documents]))
      e.unload(s.version).catch((err: Error) =>
        this.log({ level: "warn", event: "unload-failed", version: s.version, message: err.message }),
      );
  }

  /** Runs `fn` while no other store write of the service (an upgrade, a re-index batch) runs. */
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#writes.then(fn, fn);
    this.#writes = run.catch(() => {});
    return run;
  }

  /** The current model for work outside a search (the re-indexer); release it when done. */
  acquire(): { version: string; release: () => void } {
    const s = this.#state;
    s.refs++;
    let released = false;
    return {
      version: s.version,
      release: () => {
        if (!released) {
          released = true;
          this.#release(s);
        }
      },
    };
  }

  /** Document embeddings by model `version` (held through `acquire`), in the re-index encoder. */
  async embedDocuments(version: string, texts: string[]): Promise<Float32Array[]> {
    const s = this.#state.version === version ? this.#state : null;
    if (!s) throw new Error(`model ${version} is no longer current`);
    const run = async () => {
      if (this.#documents !== this.#queries) await this.#documents.load(s.spec, []);
      return this.#documents.documents(version, texts);
    };
    return run().catch((e: Error) => {
      if (!(e instanceof EncoderExited)) throw e;
      this.log({ level: "warn", event: "encoder-restarted", message: e.message });
      return run();
    });
  }

  /**
   * Runs a store write made for model `version` unless the service has moved on to another model
   * (then nothing is written and false is returned): no row of a replaced model lands after the
   * switch.
   */
  writeFor(version: string, write: () => Promise<void>): Promise<boolean> {
    return this.#exclusive(async () => {
      if (this.#state.version !== version) return false;
      await write();
      this.invalidate();
      return true;
    });
  }

  /**
   * Records the served model in the store (its keys only: the re-index progress, which another
   * replica may be recording meanwhile, and the load record are left as they are).
   */
  async #record(): Promise<void> {
    await this.store.patchState({
      model: this.#state.version,
      modelDir: this.#state.spec.dir,
      ...(this.#previous ? { previous: this.#previous } : {}),
      models: Object.fromEntries([...this.#served].slice(-16)),
      compensation: this.#state.spec.mode,
      updatedAt: new Date().toISOString(),
    });
  }

  /** The re-indexer's progress, recorded beside the model so that a restart resumes it (its key only). */
  recordReindex(status: Record<string, unknown>): Promise<void> {
    return this.store.patchState({ reindex: status, updatedAt: new Date().toISOString() });
  }

  /**
   * Loads `ref` (a directory, or an id under the model roots; reaching every version in the store)
   * and switches to it; with a minimum overlap (`check`, else the service's `upgradeCheck`), only
   * once `checkUpgrade` finds the candidate keeping at least that much of the current results.
   */
  upgrade(
    ref: string,
    compensate?: Compensation,
    check: { minOverlap?: number } = {},
  ): Promise<{ previous: string; current: string; check?: UpgradeCheck }> {
    return this.#exclusive(() =>
      this.#switch(ref, compensate, check.minOverlap ?? this.#opts.upgradeCheck?.minOverlap),
    );
  }

  /** Loads `ref` and switches to it (under `#exclusive`); recorded in the store unless `follow`ing it. */
  async #switch(
    ref: string,
    compensate: Compensation | undefined,
    min: number | undefined,
    follow?: StoreState,
  ): Promise<{ previous: string; current: string; check?: UpgradeCheck }> {
    const dir = locateModel(ref, modelRoots(this.#opts.modelRoots), this.#served.get(ref) ?? follow?.modelDir);
    const spec = {
      ...SearchService.#spec(this.#opts, dir, this.#served.values()),
      mode: compensate ?? this.#state.spec.mode,
    };
    this.invalidate();
    this.#switching = true;
    try {
      return await this.#switchTo(spec, min, follow);
    } finally {
      this.#switching = false;
      const deferred = [...this.#deferred];
      this.#deferred.clear();
      for (const s of deferred) this.#unload(s);
    }
  }

  async #switchTo(
    spec: ModelSpec,
    min: number | undefined,
    follow?: StoreState,
  ): Promise<{ previous: string; current: string; check?: UpgradeCheck }> {
    const next = await SearchService.#load(this.#opts, this.#queries, spec, null);
    const prev = this.#state;
    let report: UpgradeCheck | undefined;
    if (min !== undefined && prev.version !== next.version) {
      report = await checkUpgrade({
        store: this.store,
        encoder: this.#queries,
        current: prev.version,
        candidate: next.version,
        queries: this.#opts.upgradeCheck?.queries,
        sample: this.#opts.upgradeCheck?.sample,
      });
      this.log({ level: "info", event: "upgrade-check", model: next.version, ...report });
      if (report.overlap < min) {
        await this.#queries.unload(next.version);
        throw new Error(
          `${next.version} keeps too little of the current results: ${describeCheck(report)}, below the minimum overlap ${min}`,
        );
      }
    }
    this.#state = next; // one assignment: requests after it use the new model, earlier ones keep theirs
    this.#references.clear();
    this.#unreachable.clear();
    if (prev.version !== next.version) {
      prev.retired = true;
      if (prev.refs === 0) this.#unload(prev);
      this.#previous = prev.version;
      this.#served.delete(next.version);
      this.#served.set(next.version, next.spec.dir);
    }
    if (follow) {
      // the recording replica's view: what a rollback returns to, the models it knows
      this.#previous = follow.previous ?? this.#previous;
      for (const [id, d] of Object.entries(follow.models ?? {})) if (!this.#served.has(id)) this.#served.set(id, d);
    } else {
      await this.#record();
      this.log({ level: "info", event: "switched", previous: prev.version, current: next.version });
    }
    return { previous: prev.version, current: next.version, ...(report ? { check: report } : {}) };
  }

  /**
   * A replica's look at the store: when the model the store records (an upgrade or a rollback made
   * through another replica, or a `qdc store reindex --model`) is not the one served here, loads it
   * and switches to it, as an upgrade would but without recording anything (the record is where it
   * came from). Returns the store's record (null when none) and the switch, when one was made.
   */
  follow(): Promise<{ state: StoreState | null; switched?: { previous: string; current: string } }> {
    return this.#exclusive(async () => {
      const state = await this.store.readState();
      if (!state?.model || state.model === this.#state.version) return { state };
      const mode = (state.compensation as Compensation | undefined) ?? this.#state.spec.mode;
      const { previous, current } = await this.#switch(state.model, mode, undefined, state);
      this.log({ level: "info", event: "followed", previous, current });
      return { state, switched: { previous, current } };
    });
  }

  /** The model a rollback would return to (the one served before the current one), if any. */
  get previous(): string | null {
    return this.#previous;
  }

  /**
   * Switches back to the model served before the current one, without re-embedding: rows the newer
   * model already re-indexed are reached through the maps back of its compensators (inverse or
   * reverse fit), so it is refused only when one is missing. A re-index in progress turns around to
   * the restored model.
   */
  async rollback(compensate?: Compensation): Promise<{ previous: string; current: string }> {
    const to = this.#previous;
    if (!to) throw new NothingToRollBack();
    return this.upgrade(to, compensate);
  }

  async close(): Promise<void> {
    await this.#writes;
    await this.#queries.close();
    if (this.#documents !== this.#queries) await this.#documents.close();
    await this.store.close();
  }
}
