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
import { cat, keep, loadSafetensors, noGrad, saveSafetensors, type Tensor, tidy } from "../tensor/index.js";

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

export interface Hit {
  id: string;
  score: number;
  modelVersion: string;
}

const MANIFEST = "manifest.json";

export class ExactIndex {
  readonly dir: string;
  manifest: Manifest;
  #cache = new Map<string, { emb: Tensor; ids: string[] }>();

  private constructor(dir: string, manifest: Manifest) {
    this.dir = dir;
    this.manifest = manifest;
  }

  /** A new, empty index directory. */
  static create(dir: string, dim: number): ExactIndex {
    if (existsSync(join(dir, MANIFEST))) throw new Error(`${dir}: an index already exists here`);
    mkdirSync(dir, { recursive: true });
    const idx = new ExactIndex(dir, {
      format: "qdc-exact-index",
      formatVersion: 1,
      dim,
      normalized: true,
      createdAt: new Date().toISOString(),
      shards: [],
    });
    idx.#writeManifest();
    return idx;
  }

  static open(dir: string): ExactIndex {
    const path = join(dir, MANIFEST);
    if (!existsSync(path))
      throw new Error(`${dir}: no ${MANIFEST} (not a qdc index; build one with \`qdc index build\`)`);
    const m = JSON.parse(readFileSync(path, "utf8")) as Manifest;
    if (m.format !== "qdc-exact-index") throw new Error(`${path}: not a qdc exact index manifest`);
    return new ExactIndex(dir, m);
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

  /** Appends a shard of embeddings [n, dim] with their ids, embedded by `modelVersion`. */
  addShard(embeddings: Tensor, ids: string[], modelVersion: string, modelDir: string): void {
    if (embeddings.ndim !== 2 || embeddings.size(1) !== this.manifest.dim) {
      throw new Error(
        `shard embeddings have shape [${embeddings.shape}], the index holds ${this.manifest.dim}-d vectors`,
      );
    }
    if (embeddings.size(0) !== ids.length) throw new Error(`${embeddings.size(0)} embeddings but ${ids.length} ids`);
    const n = this.manifest.shards.length;
    const file = `shard-${String(n).padStart(5, "0")}.safetensors`;
    const idsFile = `shard-${String(n).padStart(5, "0")}.ids.json`;
    saveSafetensors(
      join(this.dir, file),
      { embeddings: embeddings.to({ dtype: "float32", device: "cpu" }).contiguous() },
      { model_version: modelVersion },
    );
    writeFileSync(join(this.dir, idsFile), JSON.stringify(ids));
    this.manifest.shards.push({ file, idsFile, rows: ids.length, modelVersion, modelDir });
    this.#writeManifest();
  }

  /** Replaces shard `i` (a re-embed with a newer model), atomically per file. */
  replaceShard(i: number, embeddings: Tensor, modelVersion: string, modelDir: string): void {
    const s = this.manifest.shards[i];
    if (!s) throw new RangeError(`no shard ${i}`);
    if (embeddings.size(0) !== s.rows) throw new Error(`shard ${i} has ${s.rows} rows, got ${embeddings.size(0)}`);
    saveSafetensors(
      join(this.dir, s.file),
      { embeddings: embeddings.to({ dtype: "float32", device: "cpu" }).contiguous() },
      { model_version: modelVersion },
    );
    this.manifest.shards[i] = { ...s, modelVersion, modelDir };
    this.#cache.get(s.file)?.emb.dispose();
    this.#cache.delete(s.file);
    this.#writeManifest();
  }

  #shard(s: ShardInfo, device: string): { emb: Tensor; ids: string[] } {
    let c = this.#cache.get(s.file);
    if (!c) {
      const t = loadSafetensors(join(this.dir, s.file), { device }).get("embeddings");
      if (!t) throw new Error(`${join(this.dir, s.file)}: no 'embeddings' tensor`);
      c = { emb: keep(t), ids: JSON.parse(readFileSync(join(this.dir, s.idsFile), "utf8")) as string[] };
      this.#cache.set(s.file, c);
    }
    return c;
  }

  /**
   * Exact top-k for queries [M, dim]. `transform(version)` returns the queries to use against that
   * version's shards (e.g. compensated), or null to skip them. Scores are dot products (cosine for
   * normalised vectors).
   */
  search(
    queries: Tensor,
    k: number,
    opts: { transform?: (version: string) => Tensor | null; chunkRows?: number; device?: string } = {},
  ): Hit[][] {
    if (!Number.isInteger(k) || k < 1) throw new RangeError(`k must be a positive integer, got ${k}`);
    if (queries.ndim !== 2 || queries.size(1) !== this.manifest.dim) {
      throw new Error(`queries have shape [${queries.shape}], the index holds ${this.manifest.dim}-d vectors`);
    }
    const device = opts.device ?? "cpu";
    const chunkRows = opts.chunkRows ?? 65536;
    const M = queries.size(0);
    const best: { scores: Float32Array; ids: string[]; versions: string[] }[] = Array.from({ length: M }, () => ({
      scores: new Float32Array(0),
      ids: [],
      versions: [],
    }));
    const qByVersion = new Map<string, Tensor | null>();
    try {
      for (const s of this.manifest.shards) {
        if (!qByVersion.has(s.modelVersion)) {
          const q = opts.transform ? opts.transform(s.modelVersion) : queries;
          qByVersion.set(s.modelVersion, q ? keep(q.to({ dtype: "float32", device })) : null);
        }
        const q = qByVersion.get(s.modelVersion);
        if (!q) continue;
        const shard = this.#shard(s, device);
        for (let start = 0; start < s.rows; start += chunkRows) {
          const len = Math.min(chunkRows, s.rows - start);
          const kk = Math.min(k, len);
          const { values, indices } = tidy(() =>
            noGrad(() => {
              const scores = q.matmul(shard.emb.narrow(0, start, len).T);
              // a stable descending sort, so equal scores keep row order (topk's tie order is unspecified)
              const sorted = scores.sort(1, true, true);
              return {
                values: sorted.values.narrow(1, 0, kk).contiguous().to("cpu").data() as Float32Array,
                indices: sorted.indices.narrow(1, 0, kk).contiguous().to("cpu").toArray(),
              };
            }),
          );
          for (let m = 0; m < M; m++) {
            const cur = best[m] as (typeof best)[number];
            const cand: [number, string, string][] = cur.ids.map((id, i) => [
              cur.scores[i] as number,
              id,
              cur.versions[i] as string,
            ]);
            for (let j = 0; j < kk; j++) {
              cand.push([
                values[m * kk + j] as number,
                shard.ids[start + (indices[m * kk + j] as number)] as string,
                s.modelVersion,
              ]);
            }
            // stable: earlier candidates (earlier shards/rows) win ties
            const score = (i: number) => (cand[i] as [number, string, string])[0];
            const order = cand.map((_, i) => i).sort((a, b) => score(b) - score(a) || a - b);
            const top = order.slice(0, k).map((i) => cand[i] as [number, string, string]);
            best[m] = {
              scores: Float32Array.from(top.map((t) => t[0])),
              ids: top.map((t) => t[1]),
              versions: top.map((t) => t[2]),
            };
          }
        }
      }
    } finally {
      for (const q of qByVersion.values()) if (q && q !== queries) q.dispose();
    }
    return best.map((b) =>
      b.ids.map((id, i) => ({ id, score: b.scores[i] as number, modelVersion: b.versions[i] as string })),
    );
  }

  /** Releases cached shard tensors. */
  close(): void {
    for (const c of this.#cache.values()) c.emb.dispose();
    this.#cache.clear();
  }

  /** Removes the index directory. */
  static remove(dir: string): void {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** All embeddings of an index in order (for tests and re-embedding). */
export function allEmbeddings(idx: ExactIndex): Tensor {
  return tidy(() =>
    cat(idx.manifest.shards.map((s) => loadSafetensors(join(idx.dir, s.file)).get("embeddings") as Tensor)),
  );
}
