/**
 * Service replicas: several `qdc serve` processes on one store, each following what the store
 * records. Every `seconds` (and at once when the store shows rows of a version this replica cannot
 * reach, i.e. written by a model it has not switched to yet) a replica reads the record: a model
 * other than its own (an upgrade or a rollback made through another replica) is loaded and switched
 * to; a re-index recorded as running whose process is gone (its lease expired, or its pid is no
 * more on this machine) is taken over. The re-index itself runs in one process at a time: the one
 * holding the store's re-index lease (`Reindexer`).
 */
import type { Reindexer } from "./reindex.js";
import type { SearchService } from "./service.js";

export interface Follower {
  /** looks at the store now (resolves when done; overlapping calls share one look) */
  now(): Promise<void>;
  stop(): Promise<void>;
}

export function followStore(service: SearchService, reindexer: Reindexer, seconds: number): Follower {
  if (!(seconds > 0)) throw new Error(`followStore: seconds must be > 0, got ${seconds}`);
  let running: Promise<void> | null = null;
  let stopped = false;
  let lastError = "";

  async function look(): Promise<void> {
    const { state } = await service.follow();
    const running = (s: typeof state) => (s?.reindex as { state?: string } | undefined)?.state === "running";
    reindexer.observe(state?.reindex);
    if (stopped || !running(state) || reindexer.runningHere) return;
    // recorded as running, and not here: the process that ran it may be gone
    if ((await reindexer.acquire()) !== null) return;
    // (its holder may have paused or finished it just before giving the lease up)
    const now = await service.store.readState();
    if (stopped || !running(now)) {
      await reindexer.release();
      return;
    }
    service.log({ level: "info", event: "reindex-taken-over", target: service.model.version });
    reindexer.start();
  }

  const now = (): Promise<void> => {
    running ??= look()
      .then(
        () => {
          lastError = "";
        },
        (e: Error) => {
          // logged once per distinct failure (a store down, a model this machine cannot find)
          if (e.message !== lastError)
            service.log({ level: "warn", event: "follow-failed", message: e.message, retryInSeconds: seconds });
          lastError = e.message;
        },
      )
      .finally(() => {
        running = null;
      });
    return running;
  };
  const timer = setInterval(() => void now(), seconds * 1000);
  timer.unref();
  service.onUnreachable = () => void now();
  return {
    now,
    async stop() {
      stopped = true;
      clearInterval(timer);
      service.onUnreachable = undefined;
      await running;
    },
  };
}
