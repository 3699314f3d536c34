/**
 * Background re-indexing: rows embedded by older versions are re-embedded with the current model
 * in batches, the most retrieved first, and written back under the new version (an upsert replaces
 * the row, so a document is never duplicated). Searches during the backfill reach old rows through
 * compensation and new rows natively. Progress is written atomically to a JSON file; since what is
 * left is always "rows not at the target version", a crash loses at most the batch in flight and a
 * restart simply continues.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { StoreRow } from "../store/store.js";
import { embedRows } from "./load.js";
import type { SearchService } from "./service.js";

export type ReindexState = "idle" | "running" | "paused" | "done" | "failed";

export interface ReindexStatus {
  state: ReindexState;
  target: string | null;
  done: number;
  remaining: number | null;
  docsPerSecond: number;
  startedAt: string | null;
  updatedAt: string;
  error?: string;
}

export interface ReindexOptions {
  batchSize?: number;
  /** JSON progress file (also read at start: a run that was going resumes) */
  progressFile?: string;
  log?: (s: ReindexStatus) => void;
  /** test hook: exit the process (as a crash) after this many batches */
  crashAfterBatches?: number;
}

export class Reindexer {
  #status: ReindexStatus;
  #loop: Promise<void> | null = null;
  #t0 = 0;
  #doneAtStart = 0;

  constructor(
    private readonly service: SearchService,
    private readonly opts: ReindexOptions = {},
  ) {
    this.#status = {
      state: "idle",
      target: null,
      done: 0,
      remaining: null,
      docsPerSecond: 0,
      startedAt: null,
      updatedAt: new Date().toISOString(),
    };
    const f = opts.progressFile;
    if (f && existsSync(f)) {
      const saved = JSON.parse(readFileSync(f, "utf8")) as ReindexStatus;
      this.#status = { ...saved, state: saved.state === "running" ? "paused" : saved.state };
      if (saved.state === "running") this.resume(); // interrupted: go on
    }
  }

  get status(): ReindexStatus {
    return { ...this.#status };
  }

  /** Starts re-indexing to the service's current model (a no-op while running). */
  start(): ReindexStatus {
    if (this.#status.state === "running") return this.status;
    const target = this.service.model.version;
    if (this.#status.target !== target)
      this.#status = { ...this.#status, target, done: 0, startedAt: new Date().toISOString() };
    return this.resume();
  }

  pause(): ReindexStatus {
    if (this.#status.state === "running") this.#set({ state: "paused" });
    return this.status;
  }

  resume(): ReindexStatus {
    if (this.#status.state === "running") return this.status;
    if (!this.#status.target) return this.start();
    this.#set({ state: "running", error: undefined });
    this.#t0 = performance.now();
    this.#doneAtStart = this.#status.done;
    this.#loop = this.#run().catch((e: unknown) => {
      this.#set({ state: "failed", error: e instanceof Error ? e.message : String(e) });
    });
    return this.status;
  }

  /** Resolves when the current run stops (done, paused or failed). */
  async settled(): Promise<ReindexStatus> {
    await this.#loop;
    return this.status;
  }

  #set(patch: Partial<ReindexStatus>): void {
    this.#status = { ...this.#status, ...patch, updatedAt: new Date().toISOString() };
    const f = this.opts.progressFile;
    if (f) {
      mkdirSync(dirname(f), { recursive: true });
      writeFileSync(`${f}.tmp`, `${JSON.stringify(this.#status, null, 1)}\n`);
      renameSync(`${f}.tmp`, f);
    }
    this.opts.log?.(this.status);
  }

  /** The next batch: stale rows among the most retrieved first, then any stale rows. */
  async #batch(target: string, n: number): Promise<StoreRow[]> {
    const hot = [...this.service.retrievals.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n * 4)
      .map(([id]) => id);
    const picked = (await this.service.store.get(hot)).filter((r) => r.version !== target).slice(0, n);
    if (picked.length < n) {
      const have = new Set(picked.map((r) => r.id));
      for (const r of await this.service.store.stale(target, n + picked.length)) {
        if (picked.length >= n) break;
        if (!have.has(r.id)) picked.push(r);
      }
    }
    return picked;
  }

  async #run(): Promise<void> {
    const batchSize = this.opts.batchSize ?? 64;
    let batches = 0;
    while (this.#status.state === "running") {
      const m = this.service.acquire();
      try {
        if (m.version !== this.#status.target) {
          // the service was upgraded meanwhile: re-index to the newest model
          this.#status = { ...this.#status, target: m.version, done: 0, startedAt: new Date().toISOString() };
        }
        const target = m.version;
        const rows = await this.#batch(target, batchSize);
        if (!rows.length) {
          // rows rewritten since the ANN index was built are searched exactly until it is rebuilt
          if (this.service.store.indexed) await this.service.store.buildIndex();
          this.service.invalidate();
          this.#set({ state: "done", remaining: 0 });
          return;
        }
        await this.service.store.upsert(embedRows(m.model, rows, target));
        this.service.invalidate();
        const done = this.#status.done + rows.length;
        const counts = await this.service.versions();
        const remaining = Object.entries(counts).reduce((a, [v, n]) => (v === target ? a : a + n), 0);
        const secs = (performance.now() - this.#t0) / 1000;
        this.#set({ done, remaining, docsPerSecond: (done - this.#doneAtStart) / Math.max(secs, 1e-3) });
        batches++;
        if (this.opts.crashAfterBatches !== undefined && batches >= this.opts.crashAfterBatches)
          process.kill(process.pid, "SIGKILL");
      } finally {
        m.release();
      }
      // let searches in between batches
      await new Promise((r) => setImmediate(r));
    }
  }
}
