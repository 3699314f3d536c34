/** Devices and runtime facts: CUDA availability, synchronisation, memory, threads, versions. */
import { N } from "./native.js";

export const cuda = {
  isAvailable: (): boolean => N.cudaAvailable(),
  deviceCount: (): number => N.cudaDeviceCount(),
  synchronize: (device?: number): void => N.cudaSynchronize(device),
  /** Bytes held by live tensors on the device (the caching allocator's "allocated"). */
  memoryAllocated: (device = 0): number => N.cudaMemoryAllocated(device),
};

/**
 * The CPU caching allocator (libtorch 1.x builds): freed host blocks of 64 KiB and more are kept
 * for reuse up to a limit (1 GiB by default; QDC_CPU_CACHE_MB sets it at start-up).
 */
export const cpuCache = {
  stats: () => N.cpuCacheStats(),
  /** Returns every cached block to the system. */
  empty: (): void => N.emptyCpuCache(),
  /** Most bytes kept; 0 turns caching off. */
  setLimit: (bytes: number): void => N.setCpuCacheLimit(bytes),
};

/** "cuda" when a GPU is usable, else "cpu". */
export function defaultDevice(): "cpu" | "cuda" {
  return N.cudaAvailable() ? "cuda" : "cpu";
}
export function setNumThreads(n: number): void {
  N.setNumThreads(n);
}
export function getNumThreads(): number {
  return N.getNumThreads();
}
/** Tensors currently held by the addon (for leak checks). */
export function liveTensors(): number {
  return N.liveTensors();
}
export function engineInfo(): { torch: string; cudaBuild: boolean; threads: number; cuda: boolean; parallel: string } {
  const v = N.versions();
  return {
    torch: v.torch,
    cudaBuild: v.cudaBuild,
    threads: N.getNumThreads(),
    cuda: N.cudaAvailable(),
    parallel: v.parallel,
  };
}
