/** Global random generators: seeding and state save/restore (for bit-exact resume). */
import { N } from "./native.js";

/** Seeds the CPU generator and every CUDA device's. */
export function manualSeed(seed: number): void {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`seed must be a non-negative integer, got ${seed}`);
  N.manualSeed(seed);
}
/** The generator state of `device` ("cpu" or "cuda:N") as bytes. */
export function getRngState(device = "cpu"): Uint8Array {
  return new Uint8Array(N.rngGetState(device));
}
export function setRngState(state: Uint8Array, device = "cpu"): void {
  const copy = state.slice();
  N.rngSetState(device, copy.buffer);
}
