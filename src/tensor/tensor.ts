/**
 * The Tensor class: a handle on one libtorch tensor. Every operation returns a new Tensor
 * (views share storage, as in torch); nothing here records autograd history by itself except
 * through libtorch. Shapes, dtype and device are read once and cached (they never change for a handle).
 */
import { type DType, dtypeCode, dtypeFromCode, isDType, isFloating, type TypedArray, viewAs } from "./dtype.js";
import { type Id, N } from "./native.js";
import { track } from "./scope.js";

export type Device = "cpu" | "cuda" | `cuda:${number}`;
export type Scalar = number | boolean;
export type TensorLike = Tensor | Scalar;

const registry = new FinalizationRegistry<Id>((id) => N.dispose(id));

const U = N.UNARY as Record<string, number>;
const B = N.BINARY as Record<string, number>;
const R = N.REDUCE as Record<string, number>;
function code(table: Record<string, number>, name: string): number {
  const c = table[name];
  if (c === undefined) throw new Error(`addon has no operation '${name}' (rebuild it: npm run build:native)`);
  return c;
}
const OP = {
  neg: code(U, "neg"),
  sqrt: code(U, "sqrt"),
  rsqrt: code(U, "rsqrt"),
  exp: code(U, "exp"),
  log: code(U, "log"),
  abs: code(U, "abs"),
  sigmoid: code(U, "sigmoid"),
  tanh: code(U, "tanh"),
  silu: code(U, "silu"),
  relu: code(U, "relu"),
  gelu: code(U, "gelu"),
  geluTanh: code(U, "gelu_tanh"),
  cos: code(U, "cos"),
  sin: code(U, "sin"),
  reciprocal: code(U, "reciprocal"),
  square: code(U, "square"),
  floor: code(U, "floor"),
  ceil: code(U, "ceil"),
  round: code(U, "round"),
  sign: code(U, "sign"),
  logicalNot: code(U, "logical_not"),
  isnan: code(U, "isnan"),
  log1p: code(U, "log1p"),
  erf: code(U, "erf"),
  add: code(B, "add"),
  sub: code(B, "sub"),
  mul: code(B, "mul"),
  div: code(B, "div"),
  pow: code(B, "pow"),
  maximum: code(B, "maximum"),
  minimum: code(B, "minimum"),
  eq: code(B, "eq"),
  ne: code(B, "ne"),
  lt: code(B, "lt"),
  le: code(B, "le"),
  gt: code(B, "gt"),
  ge: code(B, "ge"),
  and: code(B, "logical_and"),
  or: code(B, "logical_or"),
  remainder: code(B, "remainder"),
  sum: code(R, "sum"),
  mean: code(R, "mean"),
  amax: code(R, "amax"),
  amin: code(R, "amin"),
  prod: code(R, "prod"),
  logsumexp: code(R, "logsumexp"),
  all: code(R, "all"),
  any: code(R, "any"),
};

/** Reduction dims: one dim, several, or all (undefined). */
export type Dims = number | number[] | undefined;
function dimsArg(d: Dims): number[] | null {
  return d === undefined ? null : typeof d === "number" ? [d] : d;
}

/** Calls a binary op with a tensor or scalar on either side. */
export function binary(op: number, a: TensorLike, b: TensorLike): Tensor {
  const sa = !(a instanceof Tensor);
  const sb = !(b instanceof Tensor);
  if (sa && sb) throw new TypeError("at least one operand must be a tensor");
  return Tensor.wrap(N.binary(op, sa ? a : (a as Tensor).id, sb ? b : (b as Tensor).id, (sa ? 1 : 0) | (sb ? 2 : 0)));
}

export class Tensor {
  #id: Id;
  #shape: readonly number[] | undefined;
  #dtype: DType | undefined;
  #device: string | undefined;

  /** Internal: wraps an id returned by the addon. Use the creation functions instead. */
  static wrap(id: Id): Tensor {
    return new Tensor(id);
  }
  static wrapMaybe(id: Id | null): Tensor | null {
    return id === null ? null : new Tensor(id);
  }

  private constructor(id: Id) {
    this.#id = id;
    registry.register(this, id, this);
    track(this);
  }

  /** The addon's id of this tensor; throws once disposed. */
  get id(): Id {
    if (this.#id < 0) throw new Error("tensor was disposed");
    return this.#id;
  }

  /** Releases the tensor's memory now (views and autograd keep what they still need). Idempotent. */
  dispose(): void {
    if (this.#id < 0) return;
    N.dispose(this.#id);
    registry.unregister(this);
    this.#id = -1;
  }
  get isDisposed(): boolean {
    return this.#id < 0;
  }

  // ---- metadata ----
  get shape(): readonly number[] {
    if (!this.#shape) this.#shape = Object.freeze(N.shape(this.id));
    return this.#shape;
  }
  get dtype(): DType {
    if (!this.#dtype) this.#dtype = dtypeFromCode(N.dtype(this.id));
    return this.#dtype;
  }
  get device(): string {
    if (!this.#device) this.#device = N.device(this.id);
    return this.#device;
  }
  get ndim(): number {
    return this.shape.length;
  }
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  size(dim: number): number {
    const n = this.ndim;
    const d = dim < 0 ? dim + n : dim;
    const s = this.shape[d];
    if (s === undefined) throw new RangeError(`dimension ${dim} out of range for a ${n}-d tensor`);
    return s;
  }
  get isContiguous(): boolean {
    return N.isContiguous(this.id);
  }
  /** Counts in-place writes to the tensor's data (values derived from it are stale when it moves). */
  get writeVersion(): number {
    return N.writeVersion(this.id);
  }
  toString(): string {
    return `Tensor(shape=[${this.shape.join(", ")}], dtype=${this.dtype}, device=${this.device})`;
  }

  // ---- data ----
  /** The elements in row-major order, copied to the host (float16/bfloat16 as raw Uint16 bits). */
  data(): TypedArray {
    return viewAs(this.dtype, N.toBuffer(this.id));
  }
  /** The elements as JS numbers (half types converted through float32). */
  toArray(): number[] {
    if (this.dtype === "float16" || this.dtype === "bfloat16") {
      const f = this.to({ dtype: "float32" });
      try {
        return Array.from(f.data() as Float32Array);
      } finally {
        f.dispose();
      }
    }
    const d = this.data();
    if (d instanceof BigInt64Array) return Array.from(d, Number);
    return Array.from(d as Exclude<TypedArray, BigInt64Array>);
  }
  /** The value of a one-element tensor. */
  item(): number {
    const v = N.item(this.id);
    return typeof v === "boolean" ? Number(v) : v;
  }

  // ---- conversion ----
  /** A copy (or this tensor's data, when nothing changes) on another device and/or dtype. */
  to(target: DType | Device | string | { device?: Device | string; dtype?: DType; copy?: boolean }): Tensor {
    let device: string | null = null;
    let dtype: DType | null = null;
    let copy = false;
    if (typeof target === "string") {
      if (isDType(target)) dtype = target;
      else device = target;
    } else {
      device = target.device ?? null;
      dtype = target.dtype ?? null;
      copy = target.copy ?? false;
    }
    return Tensor.wrap(N.to(this.id, device, dtype === null ? null : dtypeCode(dtype), copy));
  }
  float(): Tensor {
    return this.to("float32");
  }
  contiguous(): Tensor {
    return Tensor.wrap(N.contiguous(this.id));
  }
  clone(): Tensor {
    return Tensor.wrap(N.clone(this.id));
  }
  detach(): Tensor {
    return Tensor.wrap(N.detach(this.id));
  }

  // ---- shape ----
  reshape(...shape: number[]): Tensor {
    return Tensor.wrap(N.reshape(this.id, shape));
  }
  view(...shape: number[]): Tensor {
    return Tensor.wrap(N.view(this.id, shape));
  }
  transpose(a: number, b: number): Tensor {
    return Tensor.wrap(N.transpose(this.id, a, b));
  }
  /** Transpose of the last two dims. */
  get T(): Tensor {
    return this.transpose(-2, -1);
  }
  permute(...dims: number[]): Tensor {
    return Tensor.wrap(N.permute(this.id, dims));
  }
  squeeze(dim?: number): Tensor {
    return Tensor.wrap(N.squeeze(this.id, dim ?? null));
  }
  unsqueeze(dim: number): Tensor {
    return Tensor.wrap(N.unsqueeze(this.id, dim));
  }
  expand(...shape: number[]): Tensor {
    return Tensor.wrap(N.expand(this.id, shape));
  }
  narrow(dim: number, start: number, length: number): Tensor {
    return Tensor.wrap(N.narrow(this.id, dim, start, length));
  }
  /** Python-style slice along one dim: start and end may be negative or omitted. */
  slice(dim: number, start?: number, end?: number, step = 1): Tensor {
    return Tensor.wrap(N.slice(this.id, dim, start ?? null, end ?? null, step));
  }
  select(dim: number, index: number): Tensor {
    return Tensor.wrap(N.select(this.id, dim, index));
  }
  flatten(start = 0, end = -1): Tensor {
    return Tensor.wrap(N.flatten(this.id, start, end));
  }
  split(sizes: number | number[], dim = 0): Tensor[] {
    return N.split(this.id, sizes, dim).map(Tensor.wrap);
  }
  chunk(n: number, dim = 0): Tensor[] {
    return N.chunk(this.id, n, dim).map(Tensor.wrap);
  }
  indexSelect(dim: number, index: Tensor): Tensor {
    return Tensor.wrap(N.indexSelect(this.id, dim, index.id));
  }
  gather(dim: number, index: Tensor): Tensor {
    return Tensor.wrap(N.gather(this.id, dim, index.id));
  }
  maskedFill(mask: Tensor, value: TensorLike): Tensor {
    return value instanceof Tensor
      ? Tensor.wrap(N.maskedFill(this.id, mask.id, value.id, 0))
      : Tensor.wrap(N.maskedFill(this.id, mask.id, value, 1));
  }

  // ---- elementwise ----
  add(o: TensorLike): Tensor {
    return binary(OP.add, this, o);
  }
  sub(o: TensorLike): Tensor {
    return binary(OP.sub, this, o);
  }
  mul(o: TensorLike): Tensor {
    return binary(OP.mul, this, o);
  }
  div(o: TensorLike): Tensor {
    return binary(OP.div, this, o);
  }
  pow(o: TensorLike): Tensor {
    return binary(OP.pow, this, o);
  }
  maximum(o: TensorLike): Tensor {
    return binary(OP.maximum, this, o);
  }
  minimum(o: TensorLike): Tensor {
    return binary(OP.minimum, this, o);
  }
  remainder(o: TensorLike): Tensor {
    return binary(OP.remainder, this, o);
  }
  eq(o: TensorLike): Tensor {
    return binary(OP.eq, this, o);
  }
  ne(o: TensorLike): Tensor {
    return binary(OP.ne, this, o);
  }
  lt(o: TensorLike): Tensor {
    return binary(OP.lt, this, o);
  }
  le(o: TensorLike): Tensor {
    return binary(OP.le, this, o);
  }
  gt(o: TensorLike): Tensor {
    return binary(OP.gt, this, o);
  }
  ge(o: TensorLike): Tensor {
    return binary(OP.ge, this, o);
  }
  logicalAnd(o: TensorLike): Tensor {
    return binary(OP.and, this, o);
  }
  logicalOr(o: TensorLike): Tensor {
    return binary(OP.or, this, o);
  }
  private unary(op: number): Tensor {
    return Tensor.wrap(N.unary(op, this.id));
  }
  neg(): Tensor {
    return this.unary(OP.neg);
  }
  sqrt(): Tensor {
    return this.unary(OP.sqrt);
  }
  rsqrt(): Tensor {
    return this.unary(OP.rsqrt);
  }
  exp(): Tensor {
    return this.unary(OP.exp);
  }
  log(): Tensor {
    return this.unary(OP.log);
  }
  log1p(): Tensor {
    return this.unary(OP.log1p);
  }
  abs(): Tensor {
    return this.unary(OP.abs);
  }
  sigmoid(): Tensor {
    return this.unary(OP.sigmoid);
  }
  tanh(): Tensor {
    return this.unary(OP.tanh);
  }
  silu(): Tensor {
    return this.unary(OP.silu);
  }
  relu(): Tensor {
    return this.unary(OP.relu);
  }
  /** GELU, exact (erf) by default or the tanh approximation. */
  gelu(approximate: "none" | "tanh" = "none"): Tensor {
    return this.unary(approximate === "tanh" ? OP.geluTanh : OP.gelu);
  }
  erf(): Tensor {
    return this.unary(OP.erf);
  }
  cos(): Tensor {
    return this.unary(OP.cos);
  }
  sin(): Tensor {
    return this.unary(OP.sin);
  }
  reciprocal(): Tensor {
    return this.unary(OP.reciprocal);
  }
  square(): Tensor {
    return this.unary(OP.square);
  }
  floor(): Tensor {
    return this.unary(OP.floor);
  }
  ceil(): Tensor {
    return this.unary(OP.ceil);
  }
  round(): Tensor {
    return this.unary(OP.round);
  }
  sign(): Tensor {
    return this.unary(OP.sign);
  }
  logicalNot(): Tensor {
    return this.unary(OP.logicalNot);
  }
  isnan(): Tensor {
    return this.unary(OP.isnan);
  }
  clamp(min?: number | null, max?: number | null): Tensor {
    return Tensor.wrap(N.clamp(this.id, min ?? null, max ?? null));
  }
  matmul(o: Tensor): Tensor {
    return Tensor.wrap(N.matmul(this.id, o.id));
  }
  outer(o: Tensor): Tensor {
    return Tensor.wrap(N.outer(this.id, o.id));
  }

  // ---- reductions ----
  private reduce(op: number, dims: Dims, keepdim: boolean, dtype?: DType): Tensor {
    return Tensor.wrap(N.reduce(op, this.id, dimsArg(dims), keepdim, dtype ? dtypeCode(dtype) : null));
  }
  sum(dims?: Dims, keepdim = false, dtype?: DType): Tensor {
    return this.reduce(OP.sum, dims, keepdim, dtype);
  }
  mean(dims?: Dims, keepdim = false, dtype?: DType): Tensor {
    return this.reduce(OP.mean, dims, keepdim, dtype);
  }
  prod(dims?: Dims, keepdim = false, dtype?: DType): Tensor {
    return this.reduce(OP.prod, dims, keepdim, dtype);
  }
  /** Largest value over `dims` (all when omitted); see maxWithIndices for argmax too. */
  amax(dims?: Dims, keepdim = false): Tensor {
    return this.reduce(OP.amax, dims, keepdim);
  }
  amin(dims?: Dims, keepdim = false): Tensor {
    return this.reduce(OP.amin, dims, keepdim);
  }
  max(): Tensor {
    return this.amax();
  }
  min(): Tensor {
    return this.amin();
  }
  logsumexp(dims: Dims, keepdim = false): Tensor {
    return this.reduce(OP.logsumexp, dims, keepdim);
  }
  all(dims?: Dims, keepdim = false): Tensor {
    return this.reduce(OP.all, dims, keepdim);
  }
  any(dims?: Dims, keepdim = false): Tensor {
    return this.reduce(OP.any, dims, keepdim);
  }
  maxWithIndices(dim: number, keepdim = false): { values: Tensor; indices: Tensor } {
    const [v, i] = N.maxDim(this.id, dim, keepdim);
    return { values: Tensor.wrap(v), indices: Tensor.wrap(i) };
  }
  minWithIndices(dim: number, keepdim = false): { values: Tensor; indices: Tensor } {
    const [v, i] = N.minDim(this.id, dim, keepdim);
    return { values: Tensor.wrap(v), indices: Tensor.wrap(i) };
  }
  argmax(dim?: number, keepdim = false): Tensor {
    return Tensor.wrap(N.argmax(this.id, dim ?? null, keepdim));
  }
  argmin(dim?: number, keepdim = false): Tensor {
    return Tensor.wrap(N.argmin(this.id, dim ?? null, keepdim));
  }
  /** p-norm over `dims` (all elements when omitted). */
  norm(p = 2, dims?: Dims, keepdim = false): Tensor {
    return Tensor.wrap(N.norm(this.id, p, dimsArg(dims), keepdim));
  }
  topk(k: number, dim = -1, largest = true, sorted = true): { values: Tensor; indices: Tensor } {
    const [v, i] = N.topk(this.id, k, dim, largest, sorted);
    return { values: Tensor.wrap(v), indices: Tensor.wrap(i) };
  }
  sort(dim = -1, descending = false, stable = true): { values: Tensor; indices: Tensor } {
    const [v, i] = N.sort(this.id, dim, descending, stable);
    return { values: Tensor.wrap(v), indices: Tensor.wrap(i) };
  }
  softmax(dim: number, dtype?: DType): Tensor {
    return Tensor.wrap(N.softmax(this.id, dim, dtype ? dtypeCode(dtype) : null));
  }
  logSoftmax(dim: number, dtype?: DType): Tensor {
    return Tensor.wrap(N.logSoftmax(this.id, dim, dtype ? dtypeCode(dtype) : null));
  }

  // ---- in place (no autograd history; for optimisers and weight loading) ----
  copy_(src: Tensor): this {
    N.copyInto(this.id, src.id);
    return this;
  }
  fill_(value: Scalar): this {
    N.fillInto(this.id, value);
    return this;
  }
  zero_(): this {
    return this.fill_(0);
  }
  /** True when both have the same shape, dtype and elements. */
  equal(o: Tensor): boolean {
    return N.equal(this.id, o.id);
  }

  // ---- autograd ----
  get requiresGrad(): boolean {
    return N.requiresGrad(this.id);
  }
  requiresGrad_(on = true): this {
    if (on && !isFloating(this.dtype))
      throw new TypeError(`only floating-point tensors can require gradients, not ${this.dtype}`);
    N.setRequiresGrad(this.id, on);
    return this;
  }
  get isLeaf(): boolean {
    return N.isLeaf(this.id);
  }
  /** The accumulated gradient (a new handle each time; dispose it or read it inside a scope), or null. */
  get grad(): Tensor | null {
    return Tensor.wrapMaybe(N.grad(this.id));
  }
  set grad(g: Tensor | null) {
    N.setGrad(this.id, g === null ? null : g.id);
  }
  retainGrad(): this {
    N.retainGrad(this.id);
    return this;
  }
  backward(gradient?: Tensor, opts: { retainGraph?: boolean } = {}): void {
    N.backward(this.id, gradient ? gradient.id : null, opts.retainGraph ?? false);
  }
}
