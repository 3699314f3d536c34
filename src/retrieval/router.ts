/**
 * Queries of one model routed to every model version an index or store holds: its own version
 * natively, older versions through the compensation chain along the lineage. The chains are loaded
 * once per target and checked before any work, so a version the model cannot reach is an error
 * (naming the fit command) up front, not in the middle of a search.
 */
import { resolve } from "node:path";
import { type CompensationMode, compensationChain } from "../index/lineage.js";
import type { Tensor } from "../tensor/index.js";

export class QueryRouter {
  readonly version: string;
  readonly #chains = new Map<string, (q: Tensor) => Tensor>();

  constructor(
    modelDir: string,
    readonly mode: CompensationMode,
  ) {
    this.version = resolve(modelDir);
  }

  /** The query transform for rows of `target` (throws if `target` is out of reach). */
  chain(target: string): (q: Tensor) => Tensor {
    let c = this.#chains.get(target);
    if (!c) {
      c = target === this.version ? (q: Tensor) => q : compensationChain(this.version, target, this.mode);
      this.#chains.set(target, c);
    }
    return c;
  }

  /** Throws unless every version is reachable. */
  check(targets: Iterable<string>): void {
    for (const t of targets) this.chain(t);
  }

  /** How rows of `target` are reached: "none" for the model's own rows, else the mode. */
  compensation(target: string): string {
    return target === this.version || this.mode === "none" ? "none" : this.mode;
  }

  /**
   * The queries to use against each target (the input itself for the model's own version and for
   * mode "none"; new tensors the caller disposes otherwise).
   */
  route(q: Tensor, targets: Iterable<string>): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const t of targets) out.set(t, this.chain(t)(q));
    return out;
  }
}
