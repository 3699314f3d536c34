/**
 * Where the service's tensor work runs. `EncoderCore` holds the loaded model versions and does the
 * work: embed a batch of query texts once and route it to every store version (natively or through
 * the compensation chain), or embed documents. `InlineEncoder` runs it on the calling thread (the
 * CLI, tests, small tools); `ProcessEncoder` runs it in a child process so that the service's event
 * loop never blocks on a forward pass, with its own libtorch thread count and OS priority (the
 * re-indexer's encoder runs niced, so searches keep most of the machine). A child that dies is
 * started again on the next call with the models it had.
 */
import { type ChildProcess, fork } from "node:child_process";
import { setPriority } from "node:os";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type CompensationMode, rememberModel } from "../lineage/index.js";
import { EmbeddingModel } from "../models/embedding-model.js";
import { QueryRouter } from "../retrieval/router.js";
import { tensorRows } from "../retrieval/rows.js";

export interface ModelSpec {
  dir: string;
  /** where ancestors not at their recorded paths are looked for by id */
  roots?: string[];
  /** directories of other models this one may have to reach (models served before it) */
  known?: string[];
  mode: Exclude<CompensationMode, "none">;
  device?: string;
  maxLength?: number;
}

export interface ModelInfo {
  version: string;
  dimension: number;
  /** per target version asked for, the dimension of the queries that reach it */
  reached: Record<string, number>;
}

/** The dimension of `router`'s queries for each target (a probe embedding routed there). */
function reachedDims(model: EmbeddingModel, router: QueryRouter, targets: string[], maxLength?: number) {
  const reached: Record<string, number> = {};
  if (!targets.length) return reached;
  const probe = model.encode([CANARY[0] as string], { kind: "query", maxLength });
  try {
    for (const t of targets) {
      const r = router.chain(t)(probe);
      reached[t] = r.size(1);
      if (r !== probe) r.dispose();
    }
  } finally {
    probe.dispose();
  }
  return reached;
}

/** One request's texts and the store versions its queries must reach. */
export interface QueryJob {
  texts: string[];
  targets: string[];
}

/** Per target version, one query vector per text. */
export interface QueryVectors {
  rows: Record<string, Float32Array[]>;
}

export interface QueryBatchResult {
  results: QueryVectors[];
  embedMs: number;
  compensateMs: number;
}

export interface Encoder {
  /** Loads a model (checking its canary embeddings and that every target is reachable). */
  load(spec: ModelSpec, targets: string[]): Promise<ModelInfo>;
  /** Throws unless `version`'s queries can reach every target. */
  check(version: string, targets: string[]): Promise<void>;
  /** One forward pass for all jobs' texts, routed to each job's targets. */
  queries(version: string, jobs: QueryJob[]): Promise<QueryBatchResult>;
  documents(version: string, texts: string[]): Promise<Float32Array[]>;
  unload(version: string): Promise<void>;
  close(): Promise<void>;
}

/** Texts a model must embed to finite, non-zero vectors before it may serve. */
const CANARY = [
  "what is the capital of france",
  "a tool to compress files",
  "x",
  "The quick brown fox jumps over the lazy dog. ".repeat(8),
];

export class EncoderCore {
  readonly #models = new Map<string, { model: EmbeddingModel; router: QueryRouter; maxLength?: number }>();

  load(spec: ModelSpec, targets: string[]): ModelInfo {
    const dir = resolve(spec.dir);
    for (const k of spec.known ?? []) {
      try {
        rememberModel(k);
      } catch {
        // a model served here once and gone since: not a directory to reach its rows through
      }
    }
    const version = rememberModel(dir);
    const have = this.#models.get(version);
    if (have && have.router.mode === spec.mode) {
      have.router.check(targets);
      return {
        version,
        dimension: have.model.dimension,
        reached: reachedDims(have.model, have.router, targets, have.maxLength),
      };
    }
    const model = EmbeddingModel.load(dir, { device: spec.device });
    try {
      const router = new QueryRouter(dir, spec.mode, spec.roots);
      for (const kind of ["query", "document"] as const) {
        const e = model.encode(CANARY, { kind, maxLength: spec.maxLength });
        const rows = tensorRows(e);
        e.dispose();
        rows.forEach((r, i) => {
          let norm = 0;
          for (const x of r) norm += x * x;
          if (!Number.isFinite(norm) || norm === 0)
            throw new Error(
              `${version} (${dir}) is not fit to serve: its ${kind} embedding of canary text ${i} is ${Number.isFinite(norm) ? "all zeros" : "not finite"} (corrupt or diverged weights?)`,
            );
        });
      }
      router.check(targets);
      const reached = reachedDims(model, router, targets, spec.maxLength);
      have?.model.dispose();
      this.#models.set(version, { model, router, maxLength: spec.maxLength });
      return { version, dimension: model.dimension, reached };
    } catch (e) {
      model.dispose();
      throw e;
    }
  }

  #get(version: string) {
    const m = this.#models.get(version);
    if (!m) throw new Error(`model ${version} is not loaded in this encoder`);
    return m;
  }

  check(version: string, targets: string[]): void {
    this.#get(version).router.check(targets);
  }

  queries(version: string, jobs: QueryJob[]): QueryBatchResult {
    const { model, router, maxLength } = this.#get(version);
    const texts = jobs.flatMap((j) => j.texts);
    const t0 = performance.now();
    const q = model.encode(texts, { kind: "query", maxLength, batchSize: Math.max(32, texts.length) });
    const t1 = performance.now();
    const targets = [...new Set(jobs.flatMap((j) => j.targets))];
    const byTarget = new Map<string, Float32Array[]>();
    try {
      for (const t of targets) {
        const qt = router.chain(t)(q);
        byTarget.set(t, tensorRows(qt));
        if (qt !== q) qt.dispose();
      }
    } finally {
      q.dispose();
    }
    const t2 = performance.now();
    let at = 0;
    const results = jobs.map((j) => {
      const rows: Record<string, Float32Array[]> = {};
      for (const t of j.targets) rows[t] = (byTarget.get(t) as Float32Array[]).slice(at, at + j.texts.length);
      at += j.texts.length;
      return { rows };
    });
    return { results, embedMs: t1 - t0, compensateMs: t2 - t1 };
  }

  documents(version: string, texts: string[]): Float32Array[] {
    const { model, maxLength } = this.#get(version);
    const e = model.encode(texts, { kind: "document", maxLength });
    try {
      return tensorRows(e);
    } finally {
      e.dispose();
    }
  }

  unload(version: string): void {
    this.#models.get(version)?.model.dispose();
    this.#models.delete(version);
  }

  close(): void {
    for (const v of [...this.#models.keys()]) this.unload(v);
  }
}

/** The core on the calling thread. */
export class InlineEncoder implements Encoder {
  readonly #core = new EncoderCore();
  async load(spec: ModelSpec, targets: string[]) {
    return this.#core.load(spec, targets);
  }
  async check(version: string, targets: string[]) {
    this.#core.check(version, targets);
  }
  async queries(version: string, jobs: QueryJob[]) {
    return this.#core.queries(version, jobs);
  }
  async documents(version: string, texts: string[]) {
    return this.#core.documents(version, texts);
  }
  async unload(version: string) {
    this.#core.unload(version);
  }
  async close() {
    this.#core.close();
  }
}

export interface ProcessEncoderOptions {
  /** libtorch intra-op threads in the child (default 1) */
  threads?: number;
  /** OS niceness of the child (default 0; the re-indexer's uses 10) */
  nice?: number;
  /** a name for error messages */
  name?: string;
}

/** The encoder process died during a call (it is started again on the next one). */
export class EncoderExited extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EncoderExited";
  }
}

type Call = { id: number; op: keyof Encoder; args: unknown[] };
type Reply = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: string };

/** The core in a child process (one call at a time is sent; the caller batches). */
export class ProcessEncoder implements Encoder {
  #child: ChildProcess | null = null;
  #next = 0;
  /** calls awaiting their reply, with the child they were sent to */
  readonly #pending = new Map<
    number,
    { child: ChildProcess; resolve: (v: unknown) => void; reject: (e: Error) => void }
  >();
  /** what the child has loaded, to load again after a restart */
  readonly #loaded = new Map<string, ModelSpec>();
  #closed = false;

  constructor(readonly opts: ProcessEncoderOptions = {}) {}

  #spawn(): ChildProcess {
    const child = fork(fileURLToPath(new URL("./encoder-process.js", import.meta.url)), [], {
      serialization: "advanced",
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      // OpenBLAS keeps a thread pool of its own: sized like libtorch's, or small GEMMs contend
      env: {
        ...process.env,
        QDC_THREADS: String(this.opts.threads ?? 1),
        OPENBLAS_NUM_THREADS: String(this.opts.threads ?? 1),
        OMP_NUM_THREADS: String(this.opts.threads ?? 1),
      },
    });
    if (this.opts.nice && child.pid) {
      try {
        setPriority(child.pid, this.opts.nice);
      } catch {
        // not permitted here: the child keeps the default priority
      }
    }
    child.on("message", (m: Reply) => {
      const p = this.#pending.get(m.id);
      if (!p) return;
      this.#pending.delete(m.id);
      if (m.ok) p.resolve(m.value);
      else p.reject(new Error(m.error));
    });
    child.on("exit", (code, signal) => {
      if (this.#child === child) this.#child = null;
      const err = new EncoderExited(
        `the ${this.opts.name ?? "encoder"} process exited (${signal ?? `code ${code}`}) during the call; it is restarted on the next one`,
      );
      this.#fail(child, err);
    });
    return child;
  }

  async #call<T>(op: keyof Encoder, args: unknown[]): Promise<T> {
    if (this.#closed) throw new Error(`the ${this.opts.name ?? "encoder"} is closed`);
    if (!this.#child) {
      this.#child = this.#spawn();
      // a restarted child gets its models back first
      // (sent before anything else, and IPC keeps the order)
      await Promise.all([...this.#loaded.values()].map((spec) => this.#send("load", [spec, []])));
    }
    return this.#send<T>(op, args);
  }

  /** Rejects the calls sent to `child` (one that died); calls to a newer child are not touched. */
  #fail(child: ChildProcess, err: Error): void {
    if (this.#child === child) this.#child = null;
    for (const [id, p] of this.#pending)
      if (p.child === child) {
        this.#pending.delete(id);
        p.reject(err);
      }
  }

  #send<T>(op: keyof Encoder, args: unknown[]): Promise<T> {
    const child = this.#child as ChildProcess;
    const id = this.#next++;
    return new Promise<T>((res, rej) => {
      this.#pending.set(id, { child, resolve: res as (v: unknown) => void, reject: rej });
      child.send({ id, op, args } satisfies Call, (e) => {
        // the pipe broke (EPIPE) before the child's exit was seen: the same as its exit
        if (e) {
          child.kill("SIGKILL");
          this.#fail(
            child,
            new EncoderExited(
              `the ${this.opts.name ?? "encoder"} process could not be reached (${e.message}); it is restarted on the next call`,
            ),
          );
        }
      });
    });
  }

  async load(spec: ModelSpec, targets: string[]): Promise<ModelInfo> {
    const info = await this.#call<ModelInfo>("load", [spec, targets]);
    this.#loaded.set(info.version, spec);
    return info;
  }
  check(version: string, targets: string[]): Promise<void> {
    return this.#call("check", [version, targets]);
  }
  queries(version: string, jobs: QueryJob[]): Promise<QueryBatchResult> {
    return this.#call("queries", [version, jobs]);
  }
  documents(version: string, texts: string[]): Promise<Float32Array[]> {
    return this.#call("documents", [version, texts]);
  }
  async unload(version: string): Promise<void> {
    this.#loaded.delete(version);
    if (this.#child) await this.#send("unload", [version]);
  }
  /** The child's process id (for tests that kill it). */
  get pid(): number | undefined {
    return this.#child?.pid;
  }
  async close(): Promise<void> {
    this.#closed = true;
    const child = this.#child;
    this.#child = null;
    if (!child) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.disconnect();
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  }
}
