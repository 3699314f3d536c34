/**
 * Collectives of one c10d process group per process (Gloo, in the addon): the ranks of a
 * data-parallel job meet at a TCP rendezvous served by rank 0. Every call blocks until all ranks
 * took part; a rank that died makes the others' next call throw (Gloo: "Connection closed by
 * peer"), and one that never comes makes it throw after `timeoutMs`.
 */
import { N } from "./native.js";
import { Tensor } from "./tensor.js";

export interface GroupOptions {
  rank: number;
  world: number;
  masterAddr: string;
  masterPort: number;
  /** how long a collective (and the rendezvous) waits for the other ranks */
  timeoutMs: number;
  /** rank 0 serves the rendezvous store (default); false when a launcher serves it already */
  serve?: boolean;
  /** the group's keys in the store live under this prefix (default "qdc/") */
  prefix?: string;
}

let current: { rank: number; world: number } | null = null;

/** Whether this build of the addon has c10d's Gloo process group. */
export function distributedAvailable(): boolean {
  return N.distAvailable();
}

export function initProcessGroup(o: GroupOptions): void {
  if (current) throw new Error(`this process is rank ${current.rank} of a group of ${current.world} already`);
  N.distInit(o.rank, o.world, o.masterAddr, o.masterPort, o.timeoutMs, o.serve ?? true, o.prefix ?? "qdc/");
  current = { rank: o.rank, world: o.world };
}

export function destroyProcessGroup(): void {
  if (!current) return;
  N.distDestroy();
  current = null;
}

/** This process's rank and the group's size (null outside a group). */
export function processGroup(): { rank: number; world: number } | null {
  return current;
}

/** A collective whose failure names the rank and what likely happened. */
function collective<T>(what: string, run: () => T): T {
  if (!current) throw new Error(`${what}: this process is in no process group (initProcessGroup first)`);
  try {
    return run();
  } catch (e) {
    throw new Error(
      `${what} of rank ${current.rank} of ${current.world} failed: another rank died or could not be reached in time (${(e as Error).message})`,
    );
  }
}

/** Every rank's `t` (the same shape on each) concatenated along dim 0 in rank order; no autograd. */
export function allGather(t: Tensor): Tensor {
  return collective("all-gather", () => Tensor.wrap(N.allGather(t.id)));
}

/** Sums the parameters' gradients over the ranks in place (one collective). */
export function allReduceGradients(params: Tensor[]): void {
  collective("gradient all-reduce", () => N.allReduceGrads(params.map((p) => p.id)));
}

export function barrier(): void {
  collective("barrier", () => N.barrier());
}
