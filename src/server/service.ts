/**
 * The search service's core, without HTTP: the current model (a version of the lineage) embeds
 * queries; rows of the store embedded by older versions are searched with the query compensated
 * along the lineage, rows of the current version natively, and the results merged by score
 * without duplicates. `upgrade` loads a newer model and switches to it atomically: a request
 * keeps the model it started with, and an old model is released when its last request finishes.
 */
import { resolve } from "node:path";
import { type CompensationMode, compensationChain, lineageOf } from "../index/lineage.js";
import { EmbeddingModel } from "../models/embedding-model.js";
import type { Filter, StoreHit, VectorStore } from "../store/store.js";
import type { Tensor } from "../tensor/index.js";
import { tensorRows } from "./load.js";

export interface ServiceOptions {
  store: VectorStore;
  modelDir: string;
  /** how rows of older versions are reached (default mean) */
  compensate?: Exclude<CompensationMode, "none">;
  device?: string;
  maxLength?: number;
}

class ModelState {
  refs = 0;
  retired = false;
  readonly chains = new Map<string, (q: Tensor) => Tensor>();
  constructor(
    readonly version: string,
    readonly model: EmbeddingModel,
    readonly mode: Exclude<CompensationMode, "none">,
  ) {}
  /** the query transform for rows of `version` (an error if it is not in this model's lineage) */
  chain(version: string): (q: Tensor) => Tensor {
    let c = this.chains.get(version);
    if (!c) {
      c = compensationChain(this.version, version, this.mode);
      this.chains.set(version, c);
    }
    return c;
  }
  release(): void {
    this.refs--;
    if (this.retired && this.refs === 0) this.model.dispose();
  }
}

export interface SearchResult {
  /** the model version that embedded the queries */
  model: string;
  /** per store version searched: rows and the compensation applied to reach them */
  versions: Record<string, { rows: number; compensation: string }>;
  results: StoreHit[][];
  timings: { embedMs: number; compensateMs: number; storeMs: number };
}

export class SearchService {
  readonly store: VectorStore;
  #state: ModelState;
  #versions: { at: number; counts: Record<string, number> } | null = null;
  readonly #opts: ServiceOptions;
  /** retrievals per document id (for re-indexing the most retrieved first) */
  readonly retrievals = new Map<string, number>();

  private constructor(opts: ServiceOptions, state: ModelState) {
    this.#opts = opts;
    this.store = opts.store;
    this.#state = state;
  }

  static async create(opts: ServiceOptions): Promise<SearchService> {
    const state = await SearchService.#load(opts, opts.modelDir);
    return new SearchService(opts, state);
  }

  static async #load(opts: ServiceOptions, dir: string): Promise<ModelState> {
    const version = resolve(dir);
    const model = EmbeddingModel.load(version, { device: opts.device });
    if (model.dimension !== opts.store.schema.dim) {
      model.dispose();
      throw new Error(
        `${version} embeds ${model.dimension}-d vectors, the store holds ${opts.store.schema.dim}-d ones`,
      );
    }
    const state = new ModelState(version, model, opts.compensate ?? "mean");
    // every version in the store must be reachable before the model serves
    try {
      for (const v of Object.keys(await opts.store.versions())) state.chain(v);
    } catch (e) {
      model.dispose();
      throw e;
    }
    return state;
  }

  get model(): { version: string; lineage: string[]; compensation: string } {
    return { version: this.#state.version, lineage: lineageOf(this.#state.version), compensation: this.#state.mode };
  }

  /** The current model for work outside a search (the re-indexer); release it when done. */
  acquire(): { version: string; model: EmbeddingModel; release: () => void } {
    const s = this.#state;
    s.refs++;
    let released = false;
    return {
      version: s.version,
      model: s.model,
      release: () => {
        if (!released) {
          released = true;
          s.release();
        }
      },
    };
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

  async search(texts: string[], k: number, filter?: Filter): Promise<SearchResult> {
    const s = this.#state;
    s.refs++;
    try {
      const t0 = performance.now();
      const q = s.model.encode(texts, { kind: "query", maxLength: this.#opts.maxLength });
      const t1 = performance.now();
      const counts = await this.versions();
      const t2 = performance.now();
      const perVersion: { version: string; rows: Float32Array[]; compensation: string }[] = [];
      let compensateMs = 0;
      for (const v of Object.keys(counts)) {
        const native = v === s.version;
        const c0 = performance.now();
        const qv = native ? q : s.chain(v)(q);
        const rows = tensorRows(qv);
        if (qv !== q) {
          qv.dispose();
          compensateMs += performance.now() - c0;
        }
        perVersion.push({
          version: v,
          rows,
          compensation: native ? "none" : s.mode,
        });
      }
      q.dispose();
      const results: StoreHit[][] = [];
      for (let i = 0; i < texts.length; i++) {
        const hits = (
          await Promise.all(
            perVersion.map((p) => this.store.search(p.rows[i] as Float32Array, k, { filter, version: p.version })),
          )
        ).flat();
        hits.sort((a, b) => b.score - a.score || (a.id < b.id ? -1 : 1));
        const seen = new Set<string>();
        const top: StoreHit[] = [];
        for (const h of hits) {
          if (seen.has(h.id)) continue;
          seen.add(h.id);
          top.push(h);
          if (top.length === k) break;
        }
        for (const h of top) this.retrievals.set(h.id, (this.retrievals.get(h.id) ?? 0) + 1);
        results.push(top);
      }
      const t3 = performance.now();
      return {
        model: s.version,
        versions: Object.fromEntries(
          perVersion.map((p) => [p.version, { rows: counts[p.version] ?? 0, compensation: p.compensation }]),
        ),
        results,
        timings: { embedMs: t1 - t0, compensateMs, storeMs: t3 - t2 - compensateMs + (t2 - t1) },
      };
    } finally {
      s.release();
    }
  }

  /** Loads `dir` (a descendant of the current model, with compensators) and switches to it. */
  async upgrade(dir: string): Promise<{ previous: string; current: string }> {
    const next = await SearchService.#load(this.#opts, dir);
    const prev = this.#state;
    this.#state = next; // one assignment: requests after it use the new model, earlier ones keep theirs
    prev.retired = true;
    if (prev.refs === 0) prev.model.dispose();
    return { previous: prev.version, current: next.version };
  }

  async close(): Promise<void> {
    this.#state.retired = true;
    if (this.#state.refs === 0) this.#state.model.dispose();
    await this.store.close();
  }
}
