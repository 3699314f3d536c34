/**
 * Background re-indexing: rows embedded by older versions are re-embedded with the current model
 * in batches, the most retrieved first, and written back under the new version (an upsert replaces
 * the row, so a document is never duplicated). Searches during the backfill reach old rows through
 * compensation and new rows natively. Embedding runs in the service's re-index encoder (a niced
 * process), so searches keep most of the machine. Progress is recorded in the store with the
 * served model; since what is left is always "rows not at the target version", a crash loses at
 * most the batch in flight and a restart simply continues. When every row is done the store is
 * optimised (compaction, ANN index brought up to date).
 */
import { createHash, randomUUID } from "node:crypto";
import { readFileSync, readlinkSync } from "node:fs";
import { hostname } from "node:os";
import { topByCount } from "../retrieval/reindex-order.js";
import { asRows } from "../retrieval/rows.js";
import type { Lease, StaleOptions, StoreRow } from "../store/store.js";
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
  /**
   * the process that holds the store's re-index lease when this one's is not running because of it
   * (host:pid:random; another replica, or a `qdc store reindex`)
   */
  runningOn?: string;
}

/** the store lease that makes one process at a time run a store's (non-worker) re-index */
export const REINDEX_LEASE = "reindex";

export interface ReindexOptions {
  /** documents per forward pass of the re-index encoder (default 64) */
  batchSize?: number;
  /**
   * documents per store write (default 1024, rounded up to whole batches): every write of LanceDB
   * adds a fragment that each search scans until the next `optimize`, so small writes slow searches
   * down (measured: 5,000 rewritten rows in 79 writes cut LanceDB's QPS to a quarter, in 5 writes
   * by far less); a crash or an upgrade loses at most one write's embeddings
   */
  writeRows?: number;
  log?: (s: ReindexStatus) => void;
  /**
   * consecutive failed rounds (a store error, a timeout) tried again, after 1, 2, 4 … s, before
   * the re-index stops as failed (default 5)
   */
  retries?: number;
  /** test hook: exit the process (as a crash) after this many store writes */
  crashAfterWrites?: number;
  /** resume a re-index the store records as running (default true) */
  resume?: boolean;
  /**
   * rows written between two `optimize` calls of the store while re-indexing (default: the
   * store's own `optimizeEvery`: 16,384 for LanceDB, only at the end for pgvector)
   */
  optimizeEvery?: number;
  /**
   * the share of the time the re-index may spend on its rounds (embedding and writing a batch of
   * `writeRows`) while searches contend (default 0.25): after a round of d seconds it waits
   * d × (1 − share) / share before the next when, within the last second, a search began while
   * another was being answered; otherwise (no searches, or one client searching in turn) it runs
   * flat out. 1: never waits (its encoder still runs at niceness 10, but its writes and the
   * searches share the service's process)
   */
  share?: number;
  /**
   * one of several workers re-embedding the store at once (`qdc store reindex --worker I/N` or
   * `--lease S`): the rows it takes are its part of the ids and/or rows it claims for a lease (see
   * StaleOptions); the most retrieved rows are not looked for first. A worker that finds nothing
   * left to take while rows of other versions remain (claimed by other workers) waits for them —
   * to be written, or for their claims to expire and take them — before it finishes.
   */
  worker?: StaleOptions;
  /**
   * seconds of the store's re-index lease (default 30): the re-index (not a worker's) runs only in
   * the process holding it, which renews it every round, at least every third of it while it
   * works or waits, and right before each store write (so a process that stalled past its lease
   * drops its batch); one that dies leaves it to another replica once it expires, or at once when
   * it was a process of the same machine
   */
  lease?: number;
  /** who takes the lease (default host:pid:random:pid-space) */
  owner?: string;
}

/**
 * Where a pid means one process: this boot of this machine and this pid namespace (containers of
 * one host name have namespaces of their own); "" where /proc cannot tell.
 */
const PID_SPACE = (() => {
  try {
    const boot = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    return createHash("sha256")
      .update(`${boot} ${readlinkSync("/proc/self/ns/pid")}`)
      .digest("hex")
      .slice(0, 8);
  } catch {
    return "";
  }
})();

/** Whether `owner` (host:pid:random:pid-space) names a process of this pid space that no longer exists. */
function goneHere(owner: string): boolean {
  const [, pid, , space] = owner.split(":");
  if (!PID_SPACE || space !== PID_SPACE || !pid || !/^\d+$/.test(pid) || Number(pid) === process.pid) return false;
  try {
    process.kill(Number(pid), 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "ESRCH";
  }
}

const STATES: ReindexState[] = ["idle", "running", "paused", "done", "failed"];
/** the longest wait between two rounds (a round that ran long, e.g. behind an upgrade, waits no more) */
const MAX_WAIT_MS = 30_000;

export class Reindexer {
  #status: ReindexStatus;
  #loop: Promise<void> | null = null;
  /** the current run; a loop of an earlier run (paused, then resumed) stops at its next batch */
  #generation = 0;
  #t0 = 0;
  #doneAtStart = 0;
  #recorded = Promise.resolve();
  /** ids this run wrote at the version `#writtenFor` (not asked for again as hot rows) */
  readonly #written = new Set<string>();
  #writtenFor: string | null = null;
  /** ends the wait between two rounds early (a pause or a stop is heard at once) */
  #wake: (() => void) | null = null;
  readonly owner: string;
  /** whether this process holds the store's re-index lease, and when it last took or renewed it */
  #holding = false;
  #renewedAt = 0;
  /** whether this run was recorded as running since it took the lease */
  #recordedRunning = false;
  /** the re-index another process runs, as the store records it (`observe`) */
  #remote: ReindexStatus | null = null;

  constructor(
    private readonly service: SearchService,
    private readonly opts: ReindexOptions = {},
  ) {
    if (opts.share !== undefined && !(opts.share > 0 && opts.share <= 1))
      throw new Error(`ReindexOptions.share must be in (0, 1], got ${opts.share}`);
    if (opts.lease !== undefined && !(opts.lease > 0))
      throw new Error(`ReindexOptions.lease must be seconds > 0, got ${opts.lease}`);
    this.owner = opts.owner ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}:${PID_SPACE || "-"}`;
    this.#status = {
      state: "idle",
      target: null,
      done: 0,
      remaining: null,
      docsPerSecond: 0,
      startedAt: null,
      updatedAt: new Date().toISOString(),
    };
    const saved = service.recordedReindex as Partial<ReindexStatus> | undefined;
    if (saved && STATES.includes(saved.state as ReindexState)) {
      this.#status = { ...this.#status, ...saved, state: saved.state === "running" ? "paused" : saved.state! };
      // interrupted (a crash or a stop): go on, to the model now served
      if (saved.state === "running" && opts.resume !== false) this.start();
    }
  }

  /**
   * This process's re-index; while it runs none and another process does (`observe`), that one's
   * progress as the store records it, with `runningOn` naming it.
   */
  get status(): ReindexStatus {
    const r = this.#remote;
    if (this.#status.state === "running" || !r) return { ...this.#status };
    return { ...this.#status, ...r };
  }

  /** Whether the re-index runs in this process (`status` may show another process's). */
  get runningHere(): boolean {
    return this.#status.state === "running";
  }

  /** Starts re-indexing to the service's current model (a no-op while running). */
  start(): ReindexStatus {
    if (this.#status.state === "running") return this.status;
    const target = this.service.model.version;
    const { dimension } = this.service.model;
    const dim = this.service.store.schema.dim;
    if (dimension !== dim) {
      if (!this.#loop) void this.#letGo(); // a lease `acquire` took for this start
      this.#set({
        state: "failed",
        target,
        error: `${target} embeds ${dimension}-d vectors and the store holds ${dim}-d ones: it serves this store through its maps into the stored versions' space, and re-indexes into a new store (qdc store load --store NEW --model …)`,
      });
      return this.status;
    }
    if (this.#status.target !== target) {
      // taking over another process's re-index to the same model: its progress goes on
      const r = this.#remote?.target === target ? this.#remote : null;
      this.#status = {
        ...this.#status,
        target,
        done: r?.done ?? 0,
        startedAt: r?.startedAt ?? new Date().toISOString(),
      };
    }
    this.#remote = null;
    return this.#go();
  }

  pause(): ReindexStatus {
    if (this.#status.state === "running") this.#set({ state: "paused" });
    return this.status;
  }

  resume(): ReindexStatus {
    if (this.#status.state === "running") return this.status;
    return this.start();
  }

  #go(): ReindexStatus {
    const before = this.#status.state;
    // running here at once; recorded in the store once this process holds the lease (`#hold`)
    this.#status = {
      ...this.#status,
      state: "running",
      error: undefined,
      runningOn: undefined,
      updatedAt: new Date().toISOString(),
    };
    this.#t0 = performance.now();
    this.#doneAtStart = this.#status.done;
    const generation = ++this.#generation;
    const previous = this.#loop;
    // one loop at a time: a resume waits for the paused run's batch in flight to finish
    const loop = (async () => {
      await previous;
      try {
        await this.#run(generation, before);
      } catch (e) {
        const error = e instanceof Error ? e.message : String(e);
        // recorded only by the process whose run the store records (still holding the lease)
        if (this.#recordedRunning || this.opts.worker) this.#set({ state: "failed", error });
        else this.#status = { ...this.#status, state: "failed", error, updatedAt: new Date().toISOString() };
      } finally {
        await this.#letGo();
      }
    })();
    this.#loop = loop;
    // (none in progress once it ended: `release` and a refused `start` may give a lease up again)
    void loop.then(() => {
      if (this.#loop === loop) this.#loop = null;
    });
    return this.status;
  }

  get #leaseSeconds(): number {
    return this.opts.lease ?? 30;
  }

  /**
   * Takes the store's re-index lease for this process ahead of `start` (an HTTP start, a replica
   * taking over a re-index whose process died): null when it is this process's now (or none is
   * needed: a worker), else the other holder's lease (and `start` would not run).
   */
  async acquire(): Promise<Lease | null> {
    if (this.opts.worker) return null;
    const lease = await this.#take();
    if (lease.owner === this.owner) {
      this.#renewedAt = performance.now();
      this.#holding = true; // given up at the end of the run `start` begins (or by `start` refusing)
      return null;
    }
    this.#status = { ...this.#status, runningOn: lease.owner };
    return lease;
  }

  /** Gives up a lease `acquire` took when no run followed (a replica that changed its mind). */
  async release(): Promise<void> {
    if (!this.runningHere && !this.#loop) await this.#letGo();
  }

  /**
   * At the start of every round: whether this process (still) holds the lease, taking or renewing
   * it. The first time it is taken the run is recorded as running; when another process holds it,
   * the run ends without recording anything (the store's record is the holder's).
   */
  async #hold(before: ReindexState, generation: number, fence = false): Promise<boolean> {
    if (this.opts.worker) return true;
    const lease = await this.#take();
    if (lease.owner === this.owner) {
      this.#renewedAt = performance.now();
      this.#holding = true;
      // (the fence of a write: the batch in flight is written even when a pause came meanwhile)
      if (fence) return true;
      // paused, stopped or superseded while the lease was being taken: the run ends (and gives it up)
      if (this.#status.state !== "running" || generation !== this.#generation) return false;
      if (!this.#recordedRunning) {
        this.#recordedRunning = true;
        this.#set({ state: "running" });
        this.service.log({
          level: "info",
          event: "reindex-started",
          target: this.#status.target,
          done: this.#status.done,
        });
      }
      return true;
    }
    const lost = this.#holding;
    this.#holding = false;
    this.#recordedRunning = false;
    this.#status = {
      ...this.#status,
      state: lost ? "paused" : before,
      runningOn: lease.owner,
      updatedAt: new Date().toISOString(),
    };
    this.service.log({
      level: lost ? "warn" : "info",
      event: lost ? "reindex-lease-lost" : "reindex-elsewhere",
      owner: lease.owner,
      until: new Date(lease.until).toISOString(),
    });
    this.opts.log?.(this.status);
    return false;
  }

  /**
   * Takes or renews the lease; one held by a process of this machine that is gone (killed, and
   * restarted as this one) is taken at once rather than after it expires.
   */
  async #take(): Promise<Lease> {
    const store = this.service.store;
    const lease = await store.lease(REINDEX_LEASE, this.owner, this.#leaseSeconds);
    if (lease.owner === this.owner || !goneHere(lease.owner)) return lease;
    this.service.log({ level: "info", event: "reindex-lease-of-gone-process", owner: lease.owner });
    return store.lease(REINDEX_LEASE, this.owner, this.#leaseSeconds, { replace: lease.owner });
  }

  /** Renews the lease when a third of it has passed since (between rounds and forward passes). */
  async #renewIfDue(): Promise<void> {
    if (!this.#holding || performance.now() - this.#renewedAt < (this.#leaseSeconds * 1000) / 3) return;
    // a lease lost meanwhile (this process stalled past it) is found at the next round's `#hold`
    if ((await this.#take()).owner === this.owner) this.#renewedAt = performance.now();
  }

  /**
   * Gives the lease up at the end of a run, once the run's last state (paused, done, failed) is
   * recorded: another process that takes the lease then reads that state, not "running".
   */
  async #letGo(): Promise<void> {
    this.#recordedRunning = false;
    if (!this.#holding) return;
    this.#holding = false;
    await this.#recorded;
    await this.service.store
      .releaseLease(REINDEX_LEASE, this.owner)
      .catch((e: Error) =>
        this.service.log({ level: "warn", event: "reindex-lease-release-failed", message: e.message }),
      );
  }

  /**
   * Ends the run without recording a change and gives the lease up: a service shutting down. The
   * store still records the re-index as running, so a restart, or another replica, goes on with it.
   */
  async stop(): Promise<void> {
    this.#generation++;
    this.#wake?.();
    await this.#loop;
    await this.#recorded;
    if (this.#status.state === "running") this.#status = { ...this.#status, state: "paused" };
    await this.#letGo(); // (a lease `acquire` took for a start that did not follow)
  }

  /**
   * A replica's view of the re-index another process runs, from the store's record (`followStore`):
   * `runningOn` names that process while this one's re-index is not running.
   */
  observe(recorded: Record<string, unknown> | undefined): void {
    const r = recorded as Partial<ReindexStatus> | undefined;
    // another process's run, running or ended (done, paused, failed): shown as the store records it
    const other = r?.runningOn && r.runningOn !== this.owner && STATES.includes(r.state as ReindexState);
    this.#remote = other
      ? {
          state: r.state as ReindexState,
          target: r.target ?? null,
          done: r.done ?? 0,
          remaining: r.remaining ?? null,
          docsPerSecond: r.docsPerSecond ?? 0,
          startedAt: r.startedAt ?? null,
          updatedAt: r.updatedAt ?? new Date().toISOString(),
          runningOn: r.runningOn,
        }
      : null;
    if (!(other && r.state === "running") && this.#status.runningOn && !this.runningHere)
      this.#status = { ...this.#status, runningOn: undefined };
  }

  /** Resolves when the current run stops (done, paused or failed) and its state is recorded. */
  async settled(): Promise<ReindexStatus> {
    await this.#loop;
    await this.#recorded;
    return this.status;
  }

  #set(patch: Partial<ReindexStatus>): void {
    if (patch.state !== undefined && patch.state !== this.#status.state) {
      this.#wake?.();
      if (!this.opts.worker)
        this.service.log({
          level: patch.state === "failed" ? "warn" : "info",
          event: `reindex-${patch.state}`,
          target: patch.target ?? this.#status.target,
          done: patch.done ?? this.#status.done,
          ...(patch.error ? { message: patch.error } : {}),
        });
    }
    this.#status = { ...this.#status, ...patch, updatedAt: new Date().toISOString() };
    const snapshot = this.status;
    // one of several workers: the store's recorded re-index (what a restarted service resumes) is
    // not any one worker's
    if (this.opts.worker) {
      this.opts.log?.(snapshot);
      return;
    }
    // recorded in order; a failure to record is logged, never fatal to the re-index
    this.#recorded = this.#recorded
      .then(() => this.service.recordReindex({ ...snapshot, runningOn: this.owner }))
      .catch((e: Error) => this.service.log({ level: "warn", event: "reindex-record-failed", message: e.message }));
    this.opts.log?.(snapshot);
  }

  /**
   * The next rows to re-embed: stale rows among the `n` most retrieved ones not yet written in this
   * run first, then any stale rows. (Ids written in this run are skipped before asking the store:
   * a LanceDB `get` of 4,096 ids cost 200 ms of the service's CPU, and sorting every retrieved id
   * each round blocked its event loop as long.)
   */
  async #batch(target: string, n: number): Promise<StoreRow[]> {
    if (this.#writtenFor !== target) {
      this.#writtenFor = target;
      this.#written.clear();
    }
    const worker = this.opts.worker;
    if (worker) return this.service.store.stale(target, n, worker);
    const hot: [string, number][] = [];
    for (const e of this.service.retrievals) if (!this.#written.has(e[0])) hot.push(e);
    const top = topByCount(hot, n).map(([id]) => id);
    const picked = (await this.service.store.get(top)).filter((r) => r.version !== target).slice(0, n);
    if (picked.length < n) {
      const have = new Set(picked.map((r) => r.id));
      for (const r of await this.service.store.stale(target, n + picked.length)) {
        if (picked.length >= n) break;
        if (!have.has(r.id)) {
          picked.push(r);
          have.add(r.id);
        }
      }
    }
    return picked;
  }

  async #run(generation: number, before: ReindexState): Promise<void> {
    const batchSize = this.opts.batchSize ?? 64;
    const writeRows = Math.ceil((this.opts.writeRows ?? 1024) / batchSize) * batchSize;
    const optimizeEvery = this.opts.optimizeEvery ?? this.service.store.optimizeEvery;
    let sinceOptimize = 0;
    let writes = 0;
    let failures = 0;
    const retries = this.opts.retries ?? 5;
    const share = this.opts.share ?? 0.25;
    while (this.#status.state === "running" && generation === this.#generation) {
      const roundStart = performance.now();
      const m = this.service.acquire();
      try {
        if (!(await this.#hold(before, generation))) return;
        if (m.version !== this.#status.target && this.service.model.dimension !== this.service.store.schema.dim) {
          // upgraded meanwhile to a model of another dimension: nothing of it can be written here
          this.#set({
            state: "failed",
            target: m.version,
            error: `${m.version} embeds ${this.service.model.dimension}-d vectors and the store holds ${this.service.store.schema.dim}-d ones: re-index into a new store`,
          });
          return;
        }
        if (m.version !== this.#status.target) {
          // the service was upgraded meanwhile: re-index to the newest model
          this.#status = { ...this.#status, target: m.version, done: 0, startedAt: new Date().toISOString() };
          this.#t0 = performance.now();
          this.#doneAtStart = 0;
        }
        const target = m.version;
        const rows = await this.#batch(target, writeRows);
        if (!rows.length && this.opts.worker && (await this.#othersAtWork(target, generation))) continue;
        if (!rows.length) {
          // a worker whose part is done while other parts are not: those workers finish the store
          const left = this.opts.worker ? await this.service.store.versions() : {};
          const others = Object.entries(left).reduce((a, [v, n]) => (v === target ? a : a + n), 0);
          if (others > 0) {
            this.#set({ state: "done", remaining: others });
            return;
          }
          // compaction and the ANN index brought up to date (one graph again), before reporting done
          await this.service.store.optimize({ final: true });
          this.service.invalidate();
          this.#set({ state: "done", remaining: 0 });
          return;
        }
        // embedded a batch at a time, so a pause or an upgrade is heard within one forward pass
        const vectors: Float32Array[] = [];
        for (let i = 0; i < rows.length; i += batchSize) {
          if (this.#status.state !== "running" || generation !== this.#generation) return;
          if (this.service.model.version !== target) break;
          vectors.push(
            ...(await this.service.embedDocuments(
              target,
              rows.slice(i, i + batchSize).map((r) => r.text),
            )),
          );
          await this.#renewIfDue();
          // claimed rows: the lease renewed after every forward pass (a round may outlast it)
          const claim = this.opts.worker?.claim;
          if (claim)
            await this.service.store.renewClaims(
              claim.owner,
              rows.map((r) => r.id),
              claim.seconds,
            );
        }
        if (vectors.length < rows.length) continue;

        // dropped (and redone for the new model) if an upgrade came in meanwhile
        // the lease renewed right before the write (a fence): a process that stalled past its lease
        // drops its batch instead of writing beside the new holder (LanceDB's merge-insert adds a
        // row twice when two processes write the same id at once); the write then has the whole
        // lease to finish in
        let fenced = true;
        const wrote = await this.service.writeFor(target, async () => {
          fenced = await this.#hold(before, generation, true);
          if (fenced) await this.service.store.upsert(asRows(rows, vectors, target));
        });
        if (!fenced) return;
        if (!wrote) continue;
        for (const r of rows) this.#written.add(r.id);
        if (this.opts.worker?.claim)
          await this.service.store.releaseClaims(
            this.opts.worker.claim.owner,
            rows.map((r) => r.id),
          );
        // the round's own work (an optimize below runs in the store's maintenance process)
        const workMs = performance.now() - roundStart;
        sinceOptimize += rows.length;
        if (sinceOptimize >= optimizeEvery) {
          sinceOptimize = 0;
          await this.service.store.optimize();
        }
        const done = this.#status.done + rows.length;
        const counts = await this.service.versions();
        const remaining = Object.entries(counts).reduce((a, [v, n]) => (v === target ? a : a + n), 0);
        const secs = (performance.now() - this.#t0) / 1000;
        this.#set({ done, remaining, docsPerSecond: (done - this.#doneAtStart) / Math.max(secs, 1e-3) });
        writes++;
        failures = 0;
        const waitMs = Math.min(MAX_WAIT_MS, (workMs * (1 - share)) / share);
        if (waitMs > 0 && this.service.searchesContended(1000)) {
          // the searches get the rest of the machine; the model is let go first, so that an upgrade
          // need not wait (releasing it again in `finally` is a no-op)
          m.release();
          await this.#pause(waitMs, generation);
        }
        if (this.opts.crashAfterWrites !== undefined && writes >= this.opts.crashAfterWrites) {
          await this.#recorded;
          process.kill(process.pid, "SIGKILL");
        }
      } catch (e) {
        // a store that times out or drops a connection under load: the same rows are tried again
        // (nothing of a failed write landed, or all of it: what is left is read from the store)
        if (++failures > retries) throw e;
        const waitMs = Math.min(30000, 1000 * 2 ** (failures - 1));
        this.service.log({
          level: "warn",
          event: "reindex-retry",
          attempt: failures,
          of: retries,
          waitMs,
          message: (e as Error).message,
        });
        await new Promise((r) => setTimeout(r, waitMs));
      } finally {
        m.release();
      }
    }
  }

  /**
   * A worker that took nothing: whether rows of its part not at `target` remain (claimed by other
   * workers); then it waits a second (or less, when paused or stopped) before looking again.
   */
  async #othersAtWork(target: string, generation: number): Promise<boolean> {
    const part = this.opts.worker?.part;
    const left = await this.service.store.stale(target, 1, part ? { part } : {});
    if (!left.length) return false;
    await this.#sleep(1000, generation);
    return true;
  }

  /** Waits `ms`, or less when the run is paused, superseded or stopped meanwhile (`#wake`). */
  async #sleep(ms: number, generation: number): Promise<void> {
    if (this.#status.state !== "running" || generation !== this.#generation) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
    this.#wake = null;
  }

  /**
   * Waits `ms` in slices of at most a second, each only while searches still contend; less when
   * the run is paused, superseded or stopped meanwhile.
   */
  async #pause(ms: number, generation: number): Promise<void> {
    const end = performance.now() + ms;
    while (this.#status.state === "running" && generation === this.#generation) {
      const left = end - performance.now();
      if (left <= 0 || !this.service.searchesContended(1000)) return;
      await this.#sleep(Math.min(left, 1000), generation);
      await this.#renewIfDue();
    }
  }
}
