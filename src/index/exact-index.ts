/**
 * A versioned exact index: document embeddings stored once as safetensors shards plus a manifest
 * (dimension, normalisation, the model version and directory of every shard, document ids,
 * creation time). Search is exact cosine top-k by chunked matmul + topk, so memory stays bounded
 * whatever the index size; shards of different model versions (after a partial re-embed) are each
 * searched with their own query transform and the results merged. Ties keep index order (shard,
 * then row), as a stable sort would.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Hit } from "../retrieval/hit.js";
import { cat, keep, loadRows, loadSafetensors, noGrad, saveSafetensors, type Tensor, tidy } from "../tensor/index.js";

export interface ShardInfo {
  file: string;
  idsFile: string;
  rows: number;
  /** the model version (its directory's name or an id) that embedded these rows */
  modelVersion: string;
  modelDir: string;
}

export interface Manifest {
  format: "qdc-exact-index";
  formatVersion: 1;
  dim: number;
  normalized: boolean;
  createdAt: string;
  shards: ShardInfo[];
}

export type { Hit } from "../retrieval/hit.js";

const MANIFEST = "manifest.json";

export interface OpenOptions {
  /**
   * Bytes of shard embeddings kept in memory between searches (default 1 GiB, or
   * QDC_INDEX_CACHE_MB). Shards beyond it are streamed from disk chunk by chunk on every search,
   * so memory stays bounded by the budget plus one chunk whatever the index size.
   */
  cacheBytes?: number;
}

function defaultCacheBytes(): number {
  const mb = Number(process.env.QDC_INDEX_CACHE_MB);
  return Number.isFinite(mb) && mb >= 0 && process.env.QDC_INDEX_CACHE_MB !== "" ? mb * 2 ** 20 : 2 ** 30;
}

export class ExactIndex {
  readonly dir: string;
  manifest: Manifest;
  readonly cacheBytes: number;
  #cache = new Map<string, Tensor>();
  #cached = 0;
  #ids = new Map<string, string[]>();

  private constructor(dir: string, manifest: Manifest, opts: OpenOptions = {}) {
    this.dir = dir;
    this.manifest = manifest;
    this.cacheBytes = opts.cacheBytes ?? defaultCacheBytes();
  }

  /** A new, empty index directory. */
  static create(dir: string, dim: number, opts: OpenOptions = {}): ExactIndex {
    if (existsSync(join(dir, MANIFEST))) throw new Error(`${dir}: an index already exists here`);
    mkdirSync(dir, { recursive: true });
    const idx = new ExactIndex(
      dir,
      {
        format: "qdc-exact-index",
        formatVersion: 1,
        dim,
        normalized: true,
        createdAt: new Date().toISOString(),
        shards: [],
      },
      opts,
    );
    idx.#writeManifest();
    return idx;
  }

  static open(dir: string, opts: OpenOptions = {}): ExactIndex {
    const path = join(dir, MANIFEST);
    if (!existsSync(path))
      throw new Error(`${dir}: no ${MANIFEST} (not a qdc index; build one with \`qdc index build\`)`);
    let m: Manifest;
    try {
      m = JSON.parse(readFileSync(path, "utf8")) as Manifest;
    } catch (e) {
      throw new Error(`${path}: ${(e as Error).message}`);
    }
    if (m?.format !== "qdc-exact-index") throw new Error(`${path}: not a qdc exact index manifest`);
    return new ExactIndex(dir, m, opts);
  }

  #writeManifest(): void {
    const tmp = join(this.dir, `.${MANIFEST}.${process.pid}.tmp`);
    writeFileSync(tmp, `${JSON.stringify(this.manifest, null, 1)}\n`);
    renameSync(tmp, join(this.dir, MANIFEST));
  }

  get size(): number {
    return this.manifest.shards.reduce((a, s) => a + s.rows, 0);
  }

  /** Versions present, in shard order. */
  get versions(): string[] {
    return [...new Set(this.manifest.shards.map((s) => s.modelVersion))];
  }

  #checkShard(embeddings: Tensor, rows: number): void {
    if (embeddings.ndim !== 2 || embeddings.size(1) !== this.manifest.dim) {
      throw new Error(
        `shard embeddings have shape [${embeddings.shape}], the index holds ${this.manifest.dim}-d vectors`,
      );
    }
    if (embeddings.size(0) !== rows) throw new Error(`${embeddings.size(0)} embeddings for ${rows} rows`);
  }

  #writeEmbeddings(file: string, embeddings: Tensor, modelVersion: string): void {
    saveSafetensors(
      join(this.dir, file),
      { embeddings: embeddings.to({ dtype: "float32", device: "cpu" }).contiguous() },
      { model_version: modelVersion },
    );
  }

  /** Appends a shard of embeddings [n, dim] with their ids, embedded by `modelVersion`. */
  addShard(embeddings: Tensor, ids: string[], modelVersion: string, modelDir: string): void {
    this.#checkShard(embeddings, ids.length);
    const n = String(this.manifest.shards.length).padStart(5, "0");
    const file = `shard-${n}.safetensors`;
    const idsFile = `shard-${n}.ids.json`;
    this.#writeEmbeddings(file, embeddings, modelVersion);
    writeFileSync(join(this.dir, idsFile), JSON.stringify(ids));
    this.manifest.shards.push({ file, idsFile, rows: ids.length, modelVersion, modelDir });
    this.#writeManifest();
  }

  /**
   * Replaces shard `i`'s embeddings (a re-embed with a newer model). The new vectors go to a new
   * file and the manifest switches to it in one rename, so a crash leaves either the old shard
   * with its old version or the new one with the new version, never a mix.
   */
  replaceShard(i: number, embeddings: Tensor, modelVersion: string, modelDir: string): void {
    const s = this.manifest.shards[i];
    if (!s) throw new RangeError(`no shard ${i} (the index has ${this.manifest.shards.length})`);
    this.#checkShard(embeddings, s.rows);
    const stem = `shard-${String(i).padStart(5, "0")}`;
    let file = `${stem}.r1.safetensors`;
    for (let r = 1; existsSync(join(this.dir, file)) || file === s.file; r++) file = `${stem}.r${r}.safetensors`;
    this.#writeEmbeddings(file, embeddings, modelVersion);
    this.manifest.shards[i] = { ...s, file, modelVersion, modelDir };
    this.#writeManifest();
    this.#evict(s.file);
    rmSync(join(this.dir, s.file), { force: true });
  }

  #evict(file: string): void {
    const t = this.#cache.get(file);
    if (t) {
      this.#cached -= t.numel * 4;
      t.dispose();
      this.#cache.delete(file);
    }
  }

  /** The ids of a shard (kept in memory: they are needed for every hit). */
  shardIds(s: ShardInfo): string[] {
    let ids = this.#ids.get(s.idsFile);
    if (!ids) {
      const path = join(this.dir, s.idsFile);
      ids = JSON.parse(readFileSync(path, "utf8")) as string[];
      if (!Array.isArray(ids) || ids.length !== s.rows)
        throw new Error(`${path}: expected ${s.rows} ids as the manifest says, found ${ids?.length}`);
      this.#ids.set(s.idsFile, ids);
    }
    return ids;
  }

  /**
   * Every row of one model version, in index order: its ids and a new [rows, dim] tensor (the
   * caller disposes it). For analyses over a whole corpus, e.g. per-document drift estimates.
   */
  rowsOf(version: string): { ids: string[]; vectors: Tensor } {
    const shards = this.manifest.shards.filter((s) => s.modelVersion === version);
    if (!shards.length) throw new Error(`${this.dir}: no shard of model version ${version}`);
    const ids = shards.flatMap((s) => this.shardIds(s));
    const vectors = tidy(() => {
      const parts = shards.map((s) => this.#rows(s, 0, s.rows, "cpu"));
      return parts.length === 1 ? (parts[0] as Tensor).clone() : cat(parts, 0);
    });
    return { ids, vectors };
  }

  /** Rows [start, start + len) of a shard: from the in-memory cache, or streamed from disk. */
  #rows(s: ShardInfo, start: number, len: number, device: string): Tensor {
    let t = this.#cache.get(s.file);
    const bytes = s.rows * this.manifest.dim * 4;
    if (!t && this.#cached + bytes <= this.cacheBytes) {
      t = loadSafetensors(join(this.dir, s.file), { device, names: ["embeddings"] }).get("embeddings") as Tensor;
      keep(t);
      this.#cache.set(s.file, t);
      this.#cached += bytes;
    }
    if (t) return t.device === device ? t.narrow(0, start, len) : t.narrow(0, start, len).to(device);
    return loadRows(join(this.dir, s.file), "embeddings", start, len, { device });
  }

  /**
   * Exact top-k for queries [M, D]. `transform(version)` returns the queries to use against that
   * version's shards (e.g. compensated; from a model of another dimension, mapped into the index's),
   * or null to skip them; the queries each shard is searched with must be of the index's dimension.
   * Scores are dot products (cosine for normalised vectors). Ties keep index order (shard, then row).
   */
  search(
    queries: Tensor,
    k: number,
    opts: { transform?: (version: string) => Tensor | null; chunkRows?: number; device?: string } = {},
  ): Hit[][] {
    if (!Number.isInteger(k) || k < 1) throw new RangeError(`k must be a positive integer, got ${k}`);
    const width = (q: Tensor, v: string | null) => {
      if (q.ndim !== 2 || q.size(1) !== this.manifest.dim)
        throw new Error(
          `queries${v ? ` for the shards of ${v}` : ""} have shape [${q.shape}], the index holds ${this.manifest.dim}-d vectors`,
        );
    };
    if (queries.ndim !== 2) width(queries, null);
    if (!opts.transform) width(queries, null);
    const device = opts.device ?? "cpu";
    const chunkRows = opts.chunkRows ?? 65536;
    const M = queries.size(0);
    // candidates per query: score, global position (for the tie order), shard, row
    const best: Candidate[][] = Array.from({ length: M }, () => []);
    const qByVersion = new Map<string, Tensor | null>();
    let base = 0;
    try {
      for (const s of this.manifest.shards) {
        if (!qByVersion.has(s.modelVersion)) {
          const q = opts.transform ? opts.transform(s.modelVersion) : queries;
          if (q) width(q, opts.transform ? s.modelVersion : null);
          qByVersion.set(s.modelVersion, q ? keep(q.to({ dtype: "float32", device })) : null);
        }
        const q = qByVersion.get(s.modelVersion);
        if (q) {
          const ids = this.shardIds(s);
          for (let start = 0; start < s.rows; start += chunkRows) {
            const len = Math.min(chunkRows, s.rows - start);
            const { values, indices, kk } = tidy(() =>
              noGrad(() => topRows(q.matmul(this.#rows(s, start, len, device).T), k)),
            );
            for (let m = 0; m < M; m++) {
              const cand = best[m] as Candidate[];
              for (let j = 0; j < kk; j++) {
                const row = start + (indices[m * kk + j] as number);
                cand.push({
                  score: values[m * kk + j] as number,
                  pos: base + row,
                  id: ids[row] as string,
                  version: s.modelVersion,
                });
              }
              cand.sort((a, b) => b.score - a.score || a.pos - b.pos);
              cand.length = Math.min(cand.length, k);
            }
          }
        }
        base += s.rows;
      }
    } finally {
      for (const q of qByVersion.values()) if (q && q !== queries) q.dispose();
    }
    return best.map((b) => b.map((c) => ({ id: c.id, score: c.score, version: c.version })));
  }

  /** Releases cached shard tensors. */
  close(): void {
    for (const t of this.#cache.values()) t.dispose();
    this.#cache.clear();
    this.#cached = 0;
    this.#ids.clear();
  }

  /** Removes the index directory. */
  static remove(dir: string): void {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface Candidate {
  score: number;
  pos: number;
  id: string;
  version: string;
}

/**
 * The k best columns of each row of `scores` [M, n] with ties in column order: topk, and where a
 * row's k-th value also occurs outside the selection (topk's choice among equals is unspecified)
 * a stable sort of that chunk instead.
 */
function topRows(scores: Tensor, k: number): { values: Float32Array; indices: number[]; kk: number } {
  const kk = Math.min(k, scores.size(1));
  const top = scores.topk(kk, 1, true, true);
  const kth = top.values.narrow(1, kk - 1, 1);
  const atLeast = scores.ge(kth).sum(1).max().item();
  const pick = atLeast > kk ? scores.sort(1, true, true) : top;
  return {
    values: pick.values.narrow(1, 0, kk).contiguous().to("cpu").data() as Float32Array,
    indices: pick.indices.narrow(1, 0, kk).contiguous().to("cpu").toArray(),
    kk,
  };
}

/** All embeddings of an index in order (for tests and re-embedding). */
export function allEmbeddings(idx: ExactIndex): Tensor {
  return tidy(() =>
    cat(idx.manifest.shards.map((s) => loadSafetensors(join(idx.dir, s.file)).get("embeddings") as Tensor)),
  );
}
