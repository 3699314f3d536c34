/** CUDA parity: the same operations on the GPU agree with the CPU. Skipped where no GPU is usable. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  AdamW,
  attention,
  cuda,
  getRngState,
  layerNorm,
  linear,
  manualSeed,
  randn,
  setRngState,
  tensor,
  tidy,
} from "../src/index.js";
import { assertClose } from "./helpers.js";

const skip = !cuda.isAvailable() && "CUDA is not available on this machine";

describe("cuda", { skip }, () => {
  it("moves data to the device and back", () => {
    const t = tensor([1, 2, 3], { device: "cuda" });
    assert.equal(t.device, "cuda:0");
    assert.deepEqual(t.mul(2).toArray(), [2, 4, 6]);
    assert.equal(t.to("cpu").device, "cpu");
    cuda.synchronize();
    assert.ok(cuda.deviceCount() >= 1);
  });

  it("matmul, linear, layerNorm and attention agree with the CPU", () => {
    tidy(() => {
      const x = randn([4, 8, 64], { seed: 1 });
      const w = randn([32, 64], { seed: 2 });
      const cpu = layerNorm(linear(x, w), [32]).toArray();
      const gpu = layerNorm(linear(x.to("cuda"), w.to("cuda")), [32]).toArray();
      assertClose(gpu, cpu, 1e-3, 1e-3);
      const q = randn([2, 4, 16, 32], { seed: 3 });
      const mask = tensor(
        Array.from({ length: 2 * 16 }, (_, i) => i % 16 < (i < 16 ? 10 : 16)),
        { dtype: "bool", shape: [2, 1, 1, 16] },
      );
      const ref = attention(q, q, q, { mask }).toArray();
      const fused = attention(q.to("cuda"), q.to("cuda"), q.to("cuda"), { mask: mask.to("cuda") }).toArray();
      assertClose(fused, ref, 1e-3, 1e-3);
      const bf = attention(
        q.to({ device: "cuda", dtype: "bfloat16" }),
        q.to({ device: "cuda", dtype: "bfloat16" }),
        q.to({ device: "cuda", dtype: "bfloat16" }),
        {
          mask: mask.to("cuda"),
        },
      ).toArray();
      assertClose(bf, ref, 5e-2, 5e-2);
    });
  });

  it("autograd and AdamW on the device match the CPU", () => {
    const run = (device: string) => {
      const p = randn([16, 8], { seed: 4, device }).requiresGrad_();
      const opt = new AdamW([p], { lr: 0.01 });
      for (let i = 0; i < 3; i++) {
        opt.zeroGrad();
        tidy(() => p.pow(2).sum().backward());
        opt.step();
      }
      return p.toArray();
    };
    assertClose(run("cuda"), run("cpu"), 1e-5, 1e-5);
  });

  it("tracks allocated memory and restores the device generator", () => {
    const before = cuda.memoryAllocated();
    const t = randn([1024, 1024], { device: "cuda" });
    assert.ok(cuda.memoryAllocated() >= before + 4 * 1024 * 1024);
    t.dispose();
    assert.ok(cuda.memoryAllocated() <= before + 1024);
    manualSeed(7);
    const state = getRngState("cuda");
    const a = randn([8], { device: "cuda" }).toArray();
    setRngState(state, "cuda");
    assert.deepEqual(randn([8], { device: "cuda" }).toArray(), a);
  });
});
