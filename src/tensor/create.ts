/** Creating tensors: from JS data, constant fills, ranges and seeded random draws. */
import { type DType, dtypeCode, dtypeOfArray, ITEM_SIZE, type TypedArray } from "./dtype.js";
import { N } from "./native.js";
import { type Device, type Scalar, Tensor } from "./tensor.js";

export interface CreateOptions {
  dtype?: DType;
  device?: Device | string;
  requiresGrad?: boolean;
}

type Nested = number | boolean | Nested[];

function inferShape(data: Nested): number[] {
  const shape: number[] = [];
  let d: Nested = data;
  while (Array.isArray(d)) {
    shape.push(d.length);
    if (d.length === 0) break;
    d = d[0] as Nested;
  }
  return shape;
}

function flattenNested(data: Nested, shape: number[], depth: number, out: number[]): void {
  if (depth === shape.length) {
    if (Array.isArray(data)) throw new TypeError("ragged nested array: deeper than its first element");
    out.push(typeof data === "boolean" ? Number(data) : data);
    return;
  }
  if (!Array.isArray(data) || data.length !== shape[depth]) {
    throw new TypeError(`ragged nested array: expected ${shape[depth]} elements at depth ${depth}`);
  }
  for (const x of data) flattenNested(x, shape, depth + 1, out);
}

function finish(t: Tensor, opts: CreateOptions): Tensor {
  if (opts.requiresGrad) t.requiresGrad_(true);
  return t;
}

/**
 * A tensor holding a copy of `data`: a typed array (its own dtype unless `dtype` says otherwise;
 * Uint16Array holds float16/bfloat16 bits and needs `dtype`), or nested arrays of numbers
 * (float32 by default). `shape` defaults to the nested shape or [length].
 */
export function tensor(data: TypedArray | Nested, opts: CreateOptions & { shape?: number[] } = {}): Tensor {
  let arr: TypedArray;
  let shape: number[];
  let dtype: DType;
  if (ArrayBuffer.isView(data)) {
    arr = data;
    dtype = arr instanceof Uint16Array ? (opts.dtype ?? dtypeOfArray(arr)) : dtypeOfArray(arr);
    if (dtype === "uint8" && opts.dtype === "bool") dtype = "bool";
    shape = opts.shape ?? [arr.length];
  } else {
    const nestedShape = inferShape(data);
    const flat: number[] = [];
    flattenNested(data, nestedShape, 0, flat);
    shape = opts.shape ?? nestedShape;
    const target = opts.dtype ?? "float32";
    if (target === "int64") {
      arr = BigInt64Array.from(flat, (x) => {
        if (!Number.isInteger(x)) throw new TypeError(`int64 tensor from non-integer ${x}`);
        return BigInt(x);
      });
      dtype = "int64";
    } else if (target === "int32") {
      arr = Int32Array.from(flat);
      dtype = "int32";
    } else if (target === "float64") {
      arr = Float64Array.from(flat);
      dtype = "float64";
    } else if (target === "bool" || target === "uint8") {
      arr = Uint8Array.from(flat, (x) => (target === "bool" ? (x ? 1 : 0) : x));
      dtype = target;
    } else {
      arr = Float32Array.from(flat);
      dtype = "float32";
    }
  }
  const numel = shape.reduce((a, b) => a * b, 1);
  if (arr.byteLength !== numel * ITEM_SIZE[dtype]) {
    throw new RangeError(`data has ${arr.length} elements, shape [${shape.join(", ")}] needs ${numel}`);
  }
  let t = Tensor.wrap(N.fromData(arr, dtypeCode(dtype), shape, opts.device ?? null));
  if (opts.dtype && opts.dtype !== dtype) {
    const cast = t.to({ dtype: opts.dtype });
    t.dispose();
    t = cast;
  }
  return finish(t, opts);
}

/** A 0-d tensor. */
export function scalar(value: number, opts: CreateOptions = {}): Tensor {
  return tensor([value], { ...opts, shape: [] });
}

function code(o: CreateOptions): number {
  return dtypeCode(o.dtype ?? "float32");
}

export function zeros(shape: number[], opts: CreateOptions = {}): Tensor {
  return finish(Tensor.wrap(N.zeros(shape, code(opts), opts.device ?? "cpu")), opts);
}
export function ones(shape: number[], opts: CreateOptions = {}): Tensor {
  return finish(Tensor.wrap(N.ones(shape, code(opts), opts.device ?? "cpu")), opts);
}
export function empty(shape: number[], opts: CreateOptions = {}): Tensor {
  return finish(Tensor.wrap(N.empty(shape, code(opts), opts.device ?? "cpu")), opts);
}
export function full(shape: number[], value: Scalar, opts: CreateOptions = {}): Tensor {
  return finish(Tensor.wrap(N.full(shape, value, code(opts), opts.device ?? "cpu")), opts);
}
export function zerosLike(t: Tensor, opts: CreateOptions = {}): Tensor {
  return zeros([...t.shape], { dtype: t.dtype, device: t.device, ...opts });
}
export function onesLike(t: Tensor, opts: CreateOptions = {}): Tensor {
  return ones([...t.shape], { dtype: t.dtype, device: t.device, ...opts });
}
/** [start, end) in steps of `step`; int64 by default when all three are integers, as torch. */
export function arange(start: number, end?: number, step = 1, opts: CreateOptions = {}): Tensor {
  const [s, e] = end === undefined ? [0, start] : [start, end];
  const integral = Number.isInteger(s) && Number.isInteger(e) && Number.isInteger(step);
  const dtype = opts.dtype ?? (integral ? "int64" : "float32");
  return finish(Tensor.wrap(N.arange(s, e, step, dtypeCode(dtype), opts.device ?? "cpu")), opts);
}
export function eye(n: number, opts: CreateOptions = {}): Tensor {
  return finish(Tensor.wrap(N.eye(n, code(opts), opts.device ?? "cpu")), opts);
}

export interface RandomOptions extends CreateOptions {
  /** Draw from a private generator with this seed (same values on every device), not the global one. */
  seed?: number;
}
/** Standard normal samples. */
export function randn(shape: number[], opts: RandomOptions = {}): Tensor {
  return finish(Tensor.wrap(N.randn(shape, code(opts), opts.device ?? "cpu", opts.seed ?? null)), opts);
}
/** Uniform samples in [0, 1). */
export function rand(shape: number[], opts: RandomOptions = {}): Tensor {
  return finish(Tensor.wrap(N.rand(shape, code(opts), opts.device ?? "cpu", opts.seed ?? null)), opts);
}
/** Integers uniform in [low, high). */
export function randint(low: number, high: number, shape: number[], opts: RandomOptions = {}): Tensor {
  const dtype = dtypeCode(opts.dtype ?? "int64");
  return Tensor.wrap(N.randint(low, high, shape, dtype, opts.device ?? "cpu", opts.seed ?? null));
}
/** A random permutation of 0..n-1 (int64, CPU). */
export function randperm(n: number, opts: { seed?: number } = {}): Tensor {
  return Tensor.wrap(N.randperm(n, opts.seed ?? null));
}
