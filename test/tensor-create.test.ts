import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  arange,
  cuda,
  DTYPES,
  eye,
  full,
  getRngState,
  manualSeed,
  ones,
  rand,
  randint,
  randn,
  randperm,
  scalar,
  setRngState,
  tensor,
  zeros,
} from "../src/index.js";
import { assertClose } from "./helpers.js";

describe("creation and data", () => {
  it("round-trips every dtype through typed arrays", () => {
    const cases = [
      [new Float32Array([1.5, -2, 3.25]), "float32"],
      [new Float64Array([1e-300, -2, Math.PI]), "float64"],
      [new BigInt64Array([1n, -(2n ** 62n), 3n]), "int64"],
      [new Int32Array([7, -8, 2 ** 31 - 1]), "int32"],
      [new Int16Array([1, -2, 300]), "int16"],
      [new Int8Array([1, -2, 127]), "int8"],
      [new Uint8Array([0, 1, 255]), "uint8"],
    ] as const;
    for (const [arr, dtype] of cases) {
      const t = tensor(arr);
      assert.equal(t.dtype, dtype);
      assert.deepEqual([...t.shape], [3]);
      assert.deepEqual(t.data(), arr);
    }
  });

  it("holds float16 and bfloat16 as raw bits and converts them", () => {
    // 1.0 = 0x3c00 in half, 0x3f80 in bfloat16; -2.0 = 0xc000 / 0xc000; 0.5 = 0x3800 / 0x3f00
    const h = tensor(new Uint16Array([0x3c00, 0xc000, 0x3800]), { dtype: "float16" });
    assert.equal(h.dtype, "float16");
    assert.deepEqual(h.toArray(), [1, -2, 0.5]);
    const b = tensor([1, -2, 0.5], { dtype: "bfloat16" });
    assert.equal(b.dtype, "bfloat16");
    assert.deepEqual(b.data(), new Uint16Array([0x3f80, 0xc000, 0x3f00]));
    assert.deepEqual(b.to("float16").data(), h.data());
    assert.throws(() => tensor(new Uint16Array([1])), /float16 or bfloat16/);
  });

  it("builds from nested arrays with the inferred shape", () => {
    const t = tensor([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    assert.deepEqual([...t.shape], [2, 3]);
    assert.equal(t.dtype, "float32");
    assert.deepEqual(t.toArray(), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(tensor([true, false], { dtype: "bool" }).toArray(), [1, 0]);
    assert.deepEqual(tensor([3, -4], { dtype: "int64" }).data(), new BigInt64Array([3n, -4n]));
    assert.throws(() => tensor([[1, 2], [3]]), /ragged/);
    assert.throws(() => tensor([1, 2, 3], { shape: [2, 2] }), /needs 4/);
    assert.equal(scalar(2.5).item(), 2.5);
    assert.equal(scalar(2.5).ndim, 0);
  });

  it("fills, ranges and identity", () => {
    assert.deepEqual(zeros([2, 2]).toArray(), [0, 0, 0, 0]);
    assert.deepEqual(ones([3], { dtype: "int32" }).data(), new Int32Array([1, 1, 1]));
    assert.deepEqual(full([2], 7.5).toArray(), [7.5, 7.5]);
    const r = arange(5);
    assert.equal(r.dtype, "int64");
    assert.deepEqual(r.toArray(), [0, 1, 2, 3, 4]);
    assertClose(arange(0, 1, 0.25).toArray(), [0, 0.25, 0.5, 0.75]);
    assert.equal(arange(0, 1, 0.25).dtype, "float32");
    assert.deepEqual(eye(2).toArray(), [1, 0, 0, 1]);
  });

  it("converts dtype, copies and detaches", () => {
    const t = tensor([1.7, -1.2]);
    assert.deepEqual(t.to("int64").toArray(), [1, -1]);
    assert.equal(t.to("float64").dtype, "float64");
    assert.equal(t.to({ device: "cpu", dtype: "float64" }).dtype, "float64");
    const c = t.clone();
    c.fill_(0);
    assertClose(t.toArray(), [1.7, -1.2]);
    assert.equal(t.contiguous().isContiguous, true);
    assert.equal(
      tensor([
        [1, 2],
        [3, 4],
      ]).T.isContiguous,
      false,
    );
    const g = tensor([1], { requiresGrad: true });
    assert.equal(g.detach().requiresGrad, false);
    assert.equal(t.item.bind(t) && tensor([4]).item(), 4);
    assert.throws(() => t.item(), /2 elements/);
  });

  it("draws seeded random numbers reproducibly", () => {
    assert.deepEqual(randn([5], { seed: 3 }).toArray(), randn([5], { seed: 3 }).toArray());
    assert.notDeepEqual(randn([5], { seed: 3 }).toArray(), randn([5], { seed: 4 }).toArray());
    const u = rand([1000], { seed: 1 }).toArray();
    assert.ok(u.every((x) => x >= 0 && x < 1));
    const mean = u.reduce((a, b) => a + b, 0) / u.length;
    assert.ok(Math.abs(mean - 0.5) < 0.05, `uniform mean ${mean}`);
    const n = randn([4000], { seed: 2 }).toArray();
    const m = n.reduce((a, b) => a + b, 0) / n.length;
    const v = n.reduce((a, b) => a + (b - m) ** 2, 0) / n.length;
    assert.ok(Math.abs(m) < 0.06 && Math.abs(v - 1) < 0.08, `normal mean ${m} var ${v}`);
    const ints = randint(0, 3, [100], { seed: 5 }).toArray();
    assert.ok(ints.every((x) => x === 0 || x === 1 || x === 2));
    assert.deepEqual(
      randperm(6, { seed: 1 })
        .toArray()
        .sort((a, b) => a - b),
      [0, 1, 2, 3, 4, 5],
    );
  });

  it("seeds and restores the global generator", () => {
    manualSeed(42);
    const a = randn([4]).toArray();
    manualSeed(42);
    assert.deepEqual(randn([4]).toArray(), a);
    const state = getRngState();
    const b = rand([3]).toArray();
    rand([10]);
    setRngState(state);
    assert.deepEqual(rand([3]).toArray(), b);
    assert.throws(() => manualSeed(-1), /non-negative/);
  });

  it("reports devices and refuses unknown ones", () => {
    assert.equal(zeros([1]).device, "cpu");
    assert.equal(typeof cuda.isAvailable(), "boolean");
    if (!cuda.isAvailable()) assert.throws(() => zeros([1], { device: "cuda" }));
    assert.throws(() => zeros([1], { device: "tpu9" }), /device/i);
    assert.ok(DTYPES.includes("bfloat16"));
    // biome-ignore lint/suspicious/noExplicitAny: an unknown dtype from untyped callers
    assert.throws(() => zeros([1], { dtype: "float8" as any }), /unknown dtype 'float8'/);
  });
});
