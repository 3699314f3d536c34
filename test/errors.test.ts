/** Every libtorch failure reaches JS as an Error carrying torch's message; the process goes on. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { cat, crossEntropy, linear, N, ones, tensor, zeros } from "../src/index.js";

describe("errors", () => {
  it("shape mismatches", () => {
    assert.throws(
      () => ones([2, 3]).add(ones([4])),
      /The size of tensor a \(3\) must match the size of tensor b \(4\)/,
    );
    assert.throws(() => ones([2, 3]).matmul(ones([2, 3])), /mat1 and mat2 shapes cannot be multiplied \(2x3 and 2x3\)/);
    assert.throws(() => linear(ones([1, 3]), ones([2, 4])), /cannot be multiplied/);
    assert.throws(() => cat([ones([2, 2]), ones([3, 3])], 0), /Sizes of tensors must match/);
    assert.throws(() => ones([2]).reshape(3), /shape '\[3\]' is invalid for input of size 2/);
  });
  it("wrong dtypes", () => {
    assert.throws(() => ones([2]).gather(0, tensor([0])), /gather\(\): Expected dtype int64 for index/);
    assert.throws(
      () => crossEntropy(ones([2, 3]), tensor([0, 1], { dtype: "int32" })),
      /expected scalar type Long but found Int/,
    );
    assert.throws(() => ones([1, 2], { dtype: "float64" }).matmul(ones([2, 2])), /dtype|scalar type/);
    // biome-ignore lint/suspicious/noExplicitAny: bad input from untyped callers
    assert.throws(() => ones([2]).to("complex128" as any), /device string|Expected one of|device/i);
    assert.throws(() => N.zeros([2], 9), /unsupported dtype code 9/);
  });
  it("device mismatches and unknown devices", () => {
    assert.throws(() => zeros([1], { device: "cuda:0" }).add(1), /CUDA|cuda/);
    assert.throws(() => ones([1]).to("cuda:0"), /CUDA|cuda/);
  });
  it("absurd sizes and out-of-memory", () => {
    assert.throws(() => zeros([-1]), /negative dimension|Trying to create tensor with negative dimension/i);
    assert.throws(() => zeros([2 ** 40, 2 ** 20]), /alloc|memory|overflow/i);
    assert.throws(() => tensor(new Float32Array(3), { shape: [2 ** 60] }), /needs/);
  });
  it("bad arguments to the addon are TypeErrors, not crashes", () => {
    assert.throws(
      () => N.reshape(ones([1]).id, "abc" as unknown as number[]),
      /argument 1: expected an array of integers/,
    );
    assert.throws(() => N.transpose(ones([1]).id, 0.5, 0), /argument 1: expected an integer/);
    assert.throws(() => N.matmul("x" as unknown as number, 1), /argument 0: expected a tensor/);
    const t = ones([1]);
    const id = t.id;
    t.dispose();
    assert.throws(() => N.unary(N.UNARY.neg!, id), /argument 1: tensor was disposed/);
    assert.throws(() => t.neg(), /tensor was disposed/);
  });
  it("the engine keeps working after errors", () => {
    for (let i = 0; i < 100; i++) assert.throws(() => ones([2]).matmul(ones([3])));
    assert.equal(ones([2]).sum().item(), 2);
  });
});
