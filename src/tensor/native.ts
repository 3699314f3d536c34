/**
 * The libtorch addon (native/): loaded once, with intra-op threads set to the machine's core count
 * (QDC_THREADS overrides). Tensors cross the boundary as numeric ids into the addon's tensor table.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";

export type Id = number;

export interface Native {
  UNARY: Record<string, number>;
  BINARY: Record<string, number>;
  REDUCE: Record<string, number>;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  liveTensors(): number;
  dispose(id: Id): void;
  isDisposed(id: Id): boolean;
  versions(): { torch: string; cudaBuild: boolean; parallel: string };
  cudaAvailable(): boolean;
  cudaDeviceCount(): number;
  cudaSynchronize(device?: number): void;
  cudaMemoryAllocated(device?: number): number;
  manualSeed(seed: number): void;
  rngGetState(device?: string): ArrayBuffer;
  rngSetState(device: string | null, state: ArrayBuffer): void;
  gradEnabled(): boolean;
  setGradEnabled(on: boolean): boolean;

  zeros(shape: number[], dtype?: number, device?: string): Id;
  ones(shape: number[], dtype?: number, device?: string): Id;
  empty(shape: number[], dtype?: number, device?: string): Id;
  full(shape: number[], value: number | boolean, dtype?: number, device?: string): Id;
  arange(start: number, end: number, step: number, dtype?: number, device?: string): Id;
  eye(n: number, dtype?: number, device?: string): Id;
  randn(shape: number[], dtype?: number, device?: string, seed?: number | null): Id;
  rand(shape: number[], dtype?: number, device?: string, seed?: number | null): Id;
  randint(low: number, high: number, shape: number[], dtype?: number, device?: string, seed?: number | null): Id;
  randperm(n: number, seed?: number | null): Id;

  shape(t: Id): number[];
  dtype(t: Id): number;
  device(t: Id): string;
  isContiguous(t: Id): boolean;
  writeVersion(t: Id): number;
  item(t: Id): number | boolean;
  to(t: Id, device: string | null, dtype: number | null, copy: boolean): Id;
  contiguous(t: Id): Id;
  clone(t: Id): Id;
  detach(t: Id): Id;

  reshape(t: Id, shape: number[]): Id;
  view(t: Id, shape: number[]): Id;
  transpose(t: Id, a: number, b: number): Id;
  permute(t: Id, dims: number[]): Id;
  squeeze(t: Id, dim?: number | null): Id;
  unsqueeze(t: Id, dim: number): Id;
  expand(t: Id, shape: number[]): Id;
  narrow(t: Id, dim: number, start: number, length: number): Id;
  slice(t: Id, dim: number, start: number | null, end: number | null, step: number): Id;
  select(t: Id, dim: number, index: number): Id;
  flatten(t: Id, start: number, end: number): Id;
  cat(ts: Id[], dim: number): Id;
  stack(ts: Id[], dim: number): Id;
  split(t: Id, sizes: number | number[], dim: number): Id[];
  chunk(t: Id, n: number, dim: number): Id[];
  indexSelect(t: Id, dim: number, index: Id): Id;
  gather(t: Id, dim: number, index: Id): Id;
  maskedFill(t: Id, mask: Id, value: Id | number | boolean, flags: number): Id;
  where(cond: Id, a: Id | number | boolean, b: Id | number | boolean, flags: number): Id;

  unary(code: number, t: Id): Id;
  binary(code: number, a: Id | number | boolean, b: Id | number | boolean, flags: number): Id;
  clamp(t: Id, min: number | null, max: number | null): Id;
  matmul(a: Id, b: Id): Id;
  outer(a: Id, b: Id): Id;
  linear(x: Id, w: Id, b: Id | null): Id;
  reduce(code: number, t: Id, dims: number[] | null, keepdim: boolean, dtype: number | null): Id;
  maxDim(t: Id, dim: number, keepdim: boolean): [Id, Id];
  minDim(t: Id, dim: number, keepdim: boolean): [Id, Id];
  argmax(t: Id, dim: number | null, keepdim: boolean): Id;
  argmin(t: Id, dim: number | null, keepdim: boolean): Id;
  norm(t: Id, p: number, dims: number[] | null, keepdim: boolean): Id;
  topk(t: Id, k: number, dim: number, largest: boolean, sorted: boolean): [Id, Id];
  sort(t: Id, dim: number, descending: boolean, stable: boolean): [Id, Id];

  softmax(t: Id, dim: number, dtype: number | null): Id;
  logSoftmax(t: Id, dim: number, dtype: number | null): Id;
  layerNorm(x: Id, shape: number[], w: Id | null, b: Id | null, eps: number): Id;
  dropout(x: Id, p: number, train: boolean): Id;
  embedding(w: Id, idx: Id, paddingIdx: number | null): Id;
  crossEntropy(logits: Id, target: Id, reduction: number, ignoreIndex: number, labelSmoothing: number): Id;
  cosineSimilarity(a: Id, b: Id, dim: number, eps: number): Id;
  normalize(x: Id, p: number, dim: number, eps: number): Id;
  attention(q: Id, k: Id, v: Id, mask: Id | null, dropoutP: number, isCausal: boolean): Id;
  svd(t: Id): [Id, Id, Id];
  solve(a: Id, b: Id): Id;
  copyInto(dst: Id, src: Id): void;
  fillInto(dst: Id, value: number | boolean): void;
  equal(a: Id, b: Id): boolean;

  requiresGrad(t: Id): boolean;
  setRequiresGrad(t: Id, on: boolean): void;
  isLeaf(t: Id): boolean;
  grad(t: Id): Id | null;
  setGrad(t: Id, g: Id | null): void;
  retainGrad(t: Id): void;
  backward(t: Id, gradient: Id | null, retainGraph: boolean): void;
  adamw(
    params: Id[],
    expAvg: Id[],
    expAvgSq: Id[],
    steps: Float64Array,
    lr: number,
    beta1: number,
    beta2: number,
    eps: number,
    weightDecay: number,
  ): void;
  clipGradNorm(params: Id[], maxNorm: number, normType: number): number;

  distAvailable(): boolean;
  distInit(
    rank: number,
    world: number,
    masterAddr: string,
    masterPort: number,
    timeoutMs: number,
    serve: boolean,
    prefix: string,
  ): void;
  distDestroy(): void;
  allReduceGrads(params: Id[]): void;
  allGather(t: Id): Id;
  barrier(): void;

  setCpuCacheLimit(bytes: number): void;
  emptyCpuCache(): void;
  cpuCacheStats(): {
    enabled: boolean;
    cachedBytes?: number;
    limitBytes?: number;
    hits?: number;
    misses?: number;
    frees?: number;
    liveBlocks?: number;
  };

  fromData(data: ArrayBufferView, dtype: number, shape: number[], device?: string | null): Id;
  toBuffer(t: Id): ArrayBuffer;
  fromFile(path: string, byteOffset: number, dtype: number, shape: number[], device?: string | null): Id;
}

/**
 * Debian's OpenBLAS 0.3.21 does not recognise recent Xeons and falls back to its oldest kernels
 * ("Prescott"): measured here, 38 GFLOP/s for a 2048² float32 matmul on 2 cores, against 233 with
 * the AVX-512 (SkylakeX) kernels. When the user has not chosen a core type, pick one from the CPU's
 * flags before the library loads (it reads OPENBLAS_CORETYPE once, at load time).
 */
function chooseOpenBlasCore(): void {
  if (process.env.OPENBLAS_CORETYPE !== undefined || process.platform !== "linux") return;
  let flags: Set<string>;
  try {
    const line = readFileSync("/proc/cpuinfo", "utf8").match(/^flags\s*:(.*)$/m)?.[1] ?? "";
    flags = new Set(line.trim().split(/\s+/));
  } catch {
    return;
  }
  if (!flags.has("avx2") || !flags.has("fma")) return;
  const skx = ["avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"].every((f) => flags.has(f));
  process.env.OPENBLAS_CORETYPE = skx ? "SkylakeX" : "Haswell";
}

/**
 * libtorch's OpenMP threads and OpenBLAS's own pthreads share the cores; with OpenMP's default
 * spin-waiting each pool burns the cores the other needs. Measured here (2 cores, BERT 4×256,
 * 128 tokens): 52 docs/s by default, 79 with OMP_WAIT_POLICY=PASSIVE. Set unless the user chose.
 */
function choosePassiveOpenMp(): void {
  if (process.env.OMP_WAIT_POLICY === undefined) process.env.OMP_WAIT_POLICY = "PASSIVE";
}

function load(): Native {
  chooseOpenBlasCore();
  choosePassiveOpenMp();
  const require = createRequire(import.meta.url);
  const path = fileURLToPath(new URL("../../../native/build/Release/qdc.node", import.meta.url));
  try {
    return require(path) as Native;
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new Error(
      `qdc's libtorch addon could not be loaded from ${path} (${why}). Build it with \`npm run build:native\` ` +
        "(needs Debian's libtorch-dev, or TORCH_DIR pointing at a PyTorch install's torch/ folder); " +
        "`bash scripts/setup.sh` installs everything.",
    );
  }
}

export const N: Native = load();

function defaultThreads(): number {
  const env = process.env.QDC_THREADS;
  if (env !== undefined && env !== "") {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 1) throw new Error(`QDC_THREADS must be a positive integer, got '${env}'`);
    return n;
  }
  return availableParallelism();
}

N.setNumThreads(defaultThreads());

const cacheMb = process.env.QDC_CPU_CACHE_MB;
if (cacheMb !== undefined && cacheMb !== "") {
  const mb = Number(cacheMb);
  if (!(mb >= 0)) throw new Error(`QDC_CPU_CACHE_MB must be a number of MiB >= 0, got '${cacheMb}'`);
  N.setCpuCacheLimit(mb * 2 ** 20);
}
