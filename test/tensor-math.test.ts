import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  attention,
  cosineSimilarity,
  crossEntropy,
  dropout,
  embedding,
  layerNorm,
  linear,
  logSoftmax,
  normalize,
  ones,
  softmax,
  tensor,
} from "../src/index.js";
import { assertClose } from "./helpers.js";

const erf = (x: number): number => {
  // Abramowitz–Stegun 7.1.26 is too coarse; use the series / continued fraction via high-precision sum
  let sum = 0;
  let term = x;
  for (let n = 0; n < 60; n++) {
    sum += term / (2 * n + 1);
    term *= (-x * x) / (n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
};

describe("elementwise math", () => {
  const a = tensor([
    [1, 2],
    [3, 4],
  ]);
  it("arithmetic with broadcasting and scalars on either side", () => {
    assert.deepEqual(a.add(tensor([10, 20])).toArray(), [11, 22, 13, 24]);
    assert.deepEqual(a.sub(tensor([[1], [2]])).toArray(), [0, 1, 1, 2]);
    assert.deepEqual(a.mul(2).toArray(), [2, 4, 6, 8]);
    assert.deepEqual(a.div(4).toArray(), [0.25, 0.5, 0.75, 1]);
    assert.deepEqual(a.pow(2).toArray(), [1, 4, 9, 16]);
    assert.deepEqual(a.pow(tensor([0, 1])).toArray(), [1, 2, 1, 4]);
    assert.deepEqual(a.neg().toArray(), [-1, -2, -3, -4]);
    assert.deepEqual(a.maximum(2.5).toArray(), [2.5, 2.5, 3, 4]);
    assert.deepEqual(a.minimum(tensor([2, 2])).toArray(), [1, 2, 2, 2]);
    // int tensors stay int with integral scalars and promote with fractional ones
    const i = tensor([1, 2], { dtype: "int64" });
    assert.equal(i.add(1).dtype, "int64");
    assert.equal(i.mul(0.5).dtype, "float32");
    assert.deepEqual(i.div(2).toArray(), [0.5, 1]);
  });

  it("unary functions", () => {
    const x = [0.5, -1.5, 2];
    const t = tensor(x, { dtype: "float64" });
    const close = (got: number[], f: (v: number) => number) => assertClose(got, x.map(f), 1e-12, 1e-12);
    close(t.abs().sqrt().toArray(), (v) => Math.sqrt(Math.abs(v)));
    close(t.abs().rsqrt().toArray(), (v) => 1 / Math.sqrt(Math.abs(v)));
    close(t.exp().toArray(), Math.exp);
    close(t.abs().log().toArray(), (v) => Math.log(Math.abs(v)));
    close(t.sigmoid().toArray(), (v) => 1 / (1 + Math.exp(-v)));
    close(t.tanh().toArray(), Math.tanh);
    close(t.silu().toArray(), (v) => v / (1 + Math.exp(-v)));
    close(t.relu().toArray(), (v) => Math.max(v, 0));
    close(t.cos().toArray(), Math.cos);
    close(t.sin().toArray(), Math.sin);
    close(t.gelu().toArray(), (v) => 0.5 * v * (1 + erf(v / Math.SQRT2)));
    close(t.gelu("tanh").toArray(), (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))));
    close(t.square().toArray(), (v) => v * v);
    close(t.reciprocal().toArray(), (v) => 1 / v);
    assert.deepEqual(t.clamp(-1, 1).toArray(), [0.5, -1, 1]);
    assert.deepEqual(t.clamp(0).toArray(), [0.5, 0, 2]);
    assert.deepEqual(t.clamp(null, 0).toArray(), [0, -1.5, 0]);
    assert.throws(() => t.clamp(), /minimum, a maximum or both/);
  });

  it("comparisons and logic", () => {
    assert.deepEqual(a.eq(2).toArray(), [0, 1, 0, 0]);
    assert.deepEqual(a.ge(tensor([2, 4])).toArray(), [0, 0, 1, 1]);
    assert.deepEqual(a.lt(3).logicalAnd(a.gt(1)).toArray(), [0, 1, 0, 0]);
    assert.deepEqual(a.lt(2).logicalOr(a.gt(3)).logicalNot().toArray(), [0, 1, 1, 0]);
    assert.equal(a.equal(a.clone()), true);
    assert.equal(a.equal(a.add(1)), false);
  });
});

describe("linear algebra", () => {
  it("matmul of matrices, vectors and batches", () => {
    const a = tensor([
      [1, 2],
      [3, 4],
    ]);
    const b = tensor([
      [5, 6],
      [7, 8],
    ]);
    assert.deepEqual(a.matmul(b).toArray(), [19, 22, 43, 50]);
    assert.deepEqual(a.matmul(tensor([1, 1])).toArray(), [3, 7]);
    const batch = tensor([
      [
        [1, 0],
        [0, 1],
      ],
      [
        [2, 0],
        [0, 2],
      ],
    ]);
    assert.deepEqual(batch.matmul(b).toArray(), [5, 6, 7, 8, 10, 12, 14, 16]);
    assert.throws(() => a.matmul(tensor([[1, 2, 3]])), /cannot be multiplied/);
  });
  it("linear and outer", () => {
    const x = tensor([[1, 2]]);
    const w = tensor([
      [1, 0],
      [0, 1],
      [1, 1],
    ]);
    assert.deepEqual(linear(x, w, tensor([0.5, 0.5, 0.5])).toArray(), [1.5, 2.5, 3.5]);
    assert.deepEqual(linear(x, w).toArray(), [1, 2, 3]);
    assert.deepEqual(
      tensor([1, 2])
        .outer(tensor([3, 4, 5]))
        .toArray(),
      [3, 4, 5, 6, 8, 10],
    );
  });
});

describe("reductions", () => {
  const t = tensor([
    [1, 5, 3],
    [4, 2, 6],
  ]);
  it("sum, mean, max, min, argmax over dims with keepdim", () => {
    assert.equal(t.sum().item(), 21);
    assert.deepEqual(t.sum(0).toArray(), [5, 7, 9]);
    assert.deepEqual([...t.sum(1, true).shape], [2, 1]);
    assert.deepEqual(t.mean(1).toArray(), [3, 4]);
    assert.deepEqual(t.mean([0, 1]).toArray(), [3.5]);
    assert.equal(t.max().item(), 6);
    assert.equal(t.min().item(), 1);
    assert.deepEqual(t.amax(1).toArray(), [5, 6]);
    const { values, indices } = t.maxWithIndices(1, true);
    assert.deepEqual(values.toArray(), [5, 6]);
    assert.deepEqual(indices.toArray(), [1, 2]);
    assert.deepEqual([...indices.shape], [2, 1]);
    assert.deepEqual(t.minWithIndices(0).indices.toArray(), [0, 1, 0]);
    assert.equal(t.argmax().item(), 5);
    assert.deepEqual(t.argmax(0).toArray(), [1, 0, 1]);
    assert.deepEqual(t.argmin(1).toArray(), [0, 1]);
    assert.deepEqual(t.prod(1).toArray(), [15, 48]);
    assert.equal(t.sum(undefined, false, "float64").dtype, "float64");
    assertClose(t.logsumexp(1).toArray(), [
      Math.log(Math.exp(1) + Math.exp(5) + Math.exp(3)),
      Math.log(Math.exp(4) + Math.exp(2) + Math.exp(6)),
    ]);
    assert.deepEqual(t.gt(0).all().toArray(), [1]);
    assert.deepEqual(t.gt(4).any(1).toArray(), [1, 1]);
  });
  it("norms", () => {
    const v = tensor([
      [3, 4],
      [6, 8],
    ]);
    assertClose(v.norm(2, 1).toArray(), [5, 10]);
    assertClose(v.norm(1, 1, true).toArray(), [7, 14]);
    assertClose(v.norm().toArray(), [Math.sqrt(9 + 16 + 36 + 64)]);
  });
  it("topk and sort", () => {
    const x = tensor([3, 1, 4, 1, 5, 9, 2]);
    const top = x.topk(3);
    assert.deepEqual(top.values.toArray(), [9, 5, 4]);
    assert.deepEqual(top.indices.toArray(), [5, 4, 2]);
    assert.deepEqual(x.topk(2, -1, false).values.toArray(), [1, 1]);
    const s = x.sort();
    assert.deepEqual(s.values.toArray(), [1, 1, 2, 3, 4, 5, 9]);
    assert.deepEqual(s.indices.toArray(), [1, 3, 6, 0, 2, 4, 5]); // stable: ties keep input order
    assert.deepEqual(x.sort(-1, true).values.toArray(), [9, 5, 4, 3, 2, 1, 1]);
    assert.throws(() => x.topk(8), /selected index k out of range|k .* out of range|invalid/i);
  });
});

describe("neural-network functions", () => {
  it("softmax and log-softmax", () => {
    const x = tensor([[1, 2, 3]], { dtype: "float64" });
    const e = [1, 2, 3].map(Math.exp);
    const z = e.reduce((a, b) => a + b);
    assertClose(
      softmax(x, -1).toArray(),
      e.map((v) => v / z),
      1e-12,
    );
    assertClose(
      logSoftmax(x, 1).toArray(),
      e.map((v) => Math.log(v / z)),
      1e-12,
    );
  });
  it("layer norm", () => {
    const x = tensor([[1, 2, 3, 4]], { dtype: "float64" });
    const mean = 2.5;
    const varr = 1.25;
    const expect = [1, 2, 3, 4].map((v) => ((v - mean) / Math.sqrt(varr + 1e-5)) * 2 + 1);
    const y = layerNorm(x, [4], tensor([2, 2, 2, 2], { dtype: "float64" }), tensor([1, 1, 1, 1], { dtype: "float64" }));
    assertClose(y.toArray(), expect, 1e-12);
  });
  it("dropout respects the train flag and rescales kept values", () => {
    const x = ones([10000]);
    assert.deepEqual(dropout(x, 0.5, false).toArray().slice(0, 3), [1, 1, 1]);
    const y = dropout(x, 0.25, true).toArray();
    const kept = y.filter((v) => v !== 0);
    assert.ok(kept.every((v) => Math.abs(v - 1 / 0.75) < 1e-6));
    assert.ok(Math.abs(kept.length / y.length - 0.75) < 0.03, `kept ${kept.length}`);
    assert.throws(() => dropout(x, 1.5, true), /probability/);
  });
  it("embedding picks rows", () => {
    const w = tensor([
      [0, 0],
      [1, 1],
      [2, 2],
    ]);
    const idx = tensor([[2, 0]], { dtype: "int64" });
    const e = embedding(w, idx);
    assert.deepEqual([...e.shape], [1, 2, 2]);
    assert.deepEqual(e.toArray(), [2, 2, 0, 0]);
    assert.throws(() => embedding(w, tensor([3], { dtype: "int64" })), /index out of range/i);
  });
  it("cross entropy against a hand computation", () => {
    const logits = tensor(
      [
        [1, 2, 3],
        [1, 1, 1],
      ],
      { dtype: "float64" },
    );
    const target = tensor([2, 0], { dtype: "int64" });
    const l0 = -Math.log(Math.exp(3) / (Math.exp(1) + Math.exp(2) + Math.exp(3)));
    const l1 = Math.log(3);
    assertClose(crossEntropy(logits, target).toArray(), [(l0 + l1) / 2], 1e-12);
    assertClose(crossEntropy(logits, target, { reduction: "none" }).toArray(), [l0, l1], 1e-12);
    assertClose(crossEntropy(logits, target, { reduction: "sum" }).toArray(), [l0 + l1], 1e-12);
    assert.throws(() => crossEntropy(logits, tensor([2, 0])), /expected scalar type Long|Long|Float/);
  });
  it("cosine similarity and normalize", () => {
    const a = tensor([
      [1, 0],
      [3, 4],
    ]);
    const b = tensor([
      [0, 1],
      [6, 8],
    ]);
    assertClose(cosineSimilarity(a, b).toArray(), [0, 1]);
    assertClose(normalize(a).toArray(), [1, 0, 0.6, 0.8]);
    assertClose(normalize(a, { dim: 0 }).toArray(), [1 / Math.sqrt(10), 0, 3 / Math.sqrt(10), 1], 1e-6);
    assert.deepEqual(normalize(tensor([[0, 0]])).toArray(), [0, 0]);
  });
  it("attention with a key-padding mask equals the hand computation", () => {
    // one batch, one head, 2 queries, 3 keys (the last is padding), dim 2
    const q = tensor(
      [
        [
          [
            [1, 0],
            [0, 1],
          ],
        ],
      ],
      { dtype: "float64" },
    );
    const k = tensor(
      [
        [
          [
            [1, 0],
            [0, 1],
            [5, 5],
          ],
        ],
      ],
      { dtype: "float64" },
    );
    const v = tensor(
      [
        [
          [
            [1, 2],
            [3, 4],
            [100, 100],
          ],
        ],
      ],
      { dtype: "float64" },
    );
    const mask = tensor([[[[true, true, false]]]], { dtype: "bool" });
    const out = attention(q, k, v, { mask });
    const s = 1 / Math.sqrt(2);
    const w0 = [Math.exp(s), 1].map((x) => x / (Math.exp(s) + 1));
    const w1 = [1, Math.exp(s)].map((x) => x / (Math.exp(s) + 1));
    const expect = [w0[0]! * 1 + w0[1]! * 3, w0[0]! * 2 + w0[1]! * 4, w1[0]! * 1 + w1[1]! * 3, w1[0]! * 2 + w1[1]! * 4];
    assertClose(out.toArray(), expect, 1e-12);
    // no mask: the third key takes part
    assert.ok(attention(q, k, v).toArray()[0]! > 50);
  });
});
