/**
 * Queries of one model routed to every model version an index or store holds: its own version
 * natively, older versions through the compensation chain along the lineage. The chains are loaded
 * once per target and checked before any work, so a version the model cannot reach is an error
 * (naming the fit command) up front, not in the middle of a search. Compensated queries are
 * normalised, so scores against every version are cosines (a map such as q − Δ changes the norm,
 * which a single-version ranking ignores but a merge across versions does not).
 */
import { resolve } from "node:path";
import { type CompensationMode, compensationChain, modelRoots, versionId, versionOf } from "../lineage/index.js";
import { normalize, type Tensor, tidy } from "../tensor/index.js";

export class QueryRouter {
  /** the model's version (its content id) */
  readonly version: string;
  readonly dir: string;
  readonly #chains = new Map<string, (q: Tensor) => Tensor>();

  /** `roots`: where ancestors not at their recorded paths are looked for by id (default QDC_MODELS) */
  constructor(
    modelDir: string,
    readonly mode: CompensationMode,
    private readonly roots: string[] = modelRoots(),
  ) {
    this.dir = resolve(modelDir);
    this.version = versionOf(this.dir);
  }

  /** `target` names this model: its id, or a path version (earlier releases) holding it */
  #own(target: string): boolean {
    return target === this.version || (!/^[0-9a-f]{16}$/.test(target) && versionId(target) === this.version);
  }

  /** The query transform for rows of `target` (throws if `target` is out of reach). */
  chain(target: string): (q: Tensor) => Tensor {
    let c = this.#chains.get(target);
    if (!c) {
      if (this.#own(target)) c = (q: Tensor) => q;
      else {
        // compensated queries are normalised again, so that every version's scores are cosines
        const chain = compensationChain(this.dir, target, this.mode, this.roots);
        c = this.mode === "none" ? chain : (q: Tensor) => tidy(() => normalize(chain(q)));
      }
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
    return this.#own(target) || this.mode === "none" ? "none" : this.mode;
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
