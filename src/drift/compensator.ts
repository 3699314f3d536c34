/**
 * Drift compensators map a query embedded by a newer model into the embedding space of an older
 * one, so it can be searched against an index the older model built. Each is fitted on pairs
 * (old(x), new(x)) of the same texts, saved as safetensors (tensors + JSON metadata naming the data
 * it was fitted on) and applied to batches [N, D].
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { COMPENSATORS, type CompensatorMethod } from "../lineage/methods.js";
import { loadSafetensors, readHeader, saveSafetensors, type Tensor } from "../tensor/index.js";

export type Method = "identity" | CompensatorMethod;
/** Every estimator; `identity` (no compensation) is a candidate of `auto`, so it can decline to compensate. */
export const METHODS: Method[] = ["identity", ...COMPENSATORS];

export interface Compensator {
  readonly method: Method;
  /** Maps new-model embeddings [N, D] into the old model's space. */
  apply(q: Tensor): Tensor;
  /** Tensors and settings that reproduce it. */
  state(): { tensors: Record<string, Tensor>; settings: Record<string, unknown> };
  dispose(): void;
}

export interface FitInfo {
  /** what the pairs were: files, models, counts */
  fittedOn: Record<string, unknown>;
}

export function saveCompensator(path: string, c: Compensator, info: FitInfo): void {
  mkdirSync(dirname(path), { recursive: true });
  const { tensors, settings } = c.state();
  saveSafetensors(path, tensors, {
    qdc_compensator: c.method,
    settings: JSON.stringify(settings),
    fitted_on: JSON.stringify(info.fittedOn),
  });
}

/** The method, settings and fit record of a saved compensator, from its header alone (no tensors read). */
export function readCompensatorInfo(path: string): {
  method: Method;
  settings: Record<string, unknown>;
  fittedOn: Record<string, unknown>;
} {
  const meta = readHeader(path).metadata;
  const method = meta.qdc_compensator as Method | undefined;
  if (!method || !METHODS.includes(method))
    throw new Error(`${path}: not a qdc drift compensator (no known 'qdc_compensator' in its metadata)`);
  return {
    method,
    settings: JSON.parse(meta.settings ?? "{}") as Record<string, unknown>,
    fittedOn: JSON.parse(meta.fitted_on ?? "{}") as Record<string, unknown>,
  };
}

/** Reads the method, settings and tensors of a saved compensator (for `restore` in fit.ts). */
export function readCompensator(
  path: string,
): ReturnType<typeof readCompensatorInfo> & { tensors: Map<string, Tensor> } {
  return { ...readCompensatorInfo(path), tensors: loadSafetensors(path) };
}
