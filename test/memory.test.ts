import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import v8 from "node:v8";
import vm from "node:vm";
import {
  AdamW,
  clipGradNorm,
  cpuCache,
  crossEntropy,
  keep,
  linear,
  liveTensors,
  randint,
  randn,
  scopeDepth,
  type Tensor,
  tensor,
  tidy,
  zeros,
} from "../src/index.js";

v8.setFlagsFromString("--expose-gc");
const gc = vm.runInNewContext("gc") as () => void;

describe("memory scopes", () => {
  it("tidy disposes what it does not return, including nested results", () => {
    const before = liveTensors();
    let inner: Tensor | undefined;
    const out = tidy(() => {
      const a = tensor([1, 2]);
      const b = a.mul(2);
      inner = a.add(1);
      const kept = keep(a.sub(1));
      kept.dispose();
      return { sum: b.sum(), parts: [b, tidy(() => b.add(a))] };
    });
    assert.equal(liveTensors(), before + 3);
    assert.equal(out.sum.item(), 6);
    assert.deepEqual(out.parts[1]!.toArray(), [3, 6]);
    assert.equal(inner!.isDisposed, true);
    assert.throws(() => inner!.toArray(), /tensor was disposed/);
    out.sum.dispose();
    out.sum.dispose(); // idempotent
    for (const p of out.parts) p.dispose();
    assert.equal(liveTensors(), before);
    assert.equal(scopeDepth(), 0);
  });

  it("tidy cleans up when the function throws and refuses async functions", () => {
    const before = liveTensors();
    assert.throws(
      () =>
        tidy(() => {
          tensor([1]).add(1);
          throw new Error("boom");
        }),
      /boom/,
    );
    assert.equal(liveTensors(), before);
    assert.throws(() => tidy(async () => tensor([1])), /synchronous/);
    assert.equal(liveTensors(), before);
    assert.equal(scopeDepth(), 0);
  });

  it("keep lets a tensor outlive its scope; views keep their storage alive", () => {
    const before = liveTensors();
    let kept: Tensor | undefined;
    const k = tidy(() => {
      const base = tensor([1, 2, 3, 4]);
      kept = keep(base.reshape(2, 2));
      return base.narrow(0, 1, 2);
    });
    assert.deepEqual(k.toArray(), [2, 3]);
    assert.deepEqual(kept!.toArray(), [1, 2, 3, 4]);
    assert.equal(liveTensors(), before + 2);
    k.dispose();
    kept!.dispose();
    assert.equal(liveTensors(), before);
  });

  it("the finalizer releases tensors nobody disposed once they are collected", async () => {
    const before = liveTensors();
    (() => {
      for (let i = 0; i < 200; i++) zeros([1000]);
    })();
    assert.equal(liveTensors(), before + 200);
    for (let i = 0; i < 10 && liveTensors() > before; i++) {
      gc();
      await sleep(20);
    }
    assert.equal(liveTensors(), before);
  });

  it("the CPU cache reuses freed blocks and hands out correct memory", () => {
    if (!cpuCache.stats().enabled) return; // libtorch 2.x builds keep their own allocator
    const a = randn([512, 512], { seed: 1 });
    const before = cpuCache.stats();
    a.dispose();
    const z = zeros([512, 512]);
    const after = cpuCache.stats();
    assert.equal(after.hits, (before.hits ?? 0) + 1, "the freed block was reused");
    assert.ok(z.toArray().every((v) => v === 0));
    z.dispose();
    assert.ok((cpuCache.stats().cachedBytes ?? 0) >= 512 * 512 * 4);
    cpuCache.empty();
    assert.equal(cpuCache.stats().cachedBytes, 0);
    cpuCache.setLimit(0);
    zeros([512, 512]).dispose();
    assert.equal(cpuCache.stats().cachedBytes, 0);
    cpuCache.setLimit(2 ** 30);
    assert.throws(() => cpuCache.setLimit(-1), /cache limit/);
  });

  it("forgotten large tensors are collected under memory pressure without an explicit gc", async () => {
    const before = liveTensors();
    let peak = 0;
    for (let i = 0; i < 40; i++) {
      zeros([16, 1024, 1024]); // 64 MiB, never disposed
      peak = Math.max(peak, liveTensors() - before);
      await sleep(1);
    }
    // past 1 GiB of live host tensors V8 is told about the memory and collects the garbage
    assert.ok(liveTensors() - before < 40, `all ${liveTensors() - before} forgotten tensors are still alive`);
    assert.ok(peak < 40);
  });

  it("a training loop of 5,000 steps keeps live tensors and RSS flat", () => {
    const w1 = randn([256, 64], { seed: 1 }).mul(0.05).requiresGrad_();
    const b1 = zeros([256], { requiresGrad: true });
    const w2 = randn([4, 256], { seed: 2 }).mul(0.05).requiresGrad_();
    const opt = new AdamW(
      [
        { params: [w1, w2], weightDecay: 0.01 },
        { params: [b1], weightDecay: 0 },
      ],
      { lr: 1e-3 },
    );
    const x = randn([32, 64], { seed: 3 });
    const y = randint(0, 4, [32], { seed: 4 });
    const step = () => {
      opt.zeroGrad();
      const loss = tidy(() => {
        const h = linear(x, w1, b1).gelu();
        const l = crossEntropy(linear(h, w2), y);
        l.backward();
        return l.item();
      });
      tidy(() => clipGradNorm([w1, b1, w2], 1.0));
      opt.step();
      return loss;
    };
    const first = step();
    for (let i = 1; i < 500; i++) step();
    gc();
    const live = liveTensors();
    const rss = process.memoryUsage().rss;
    let last = 0;
    for (let i = 0; i < 4500; i++) last = step();
    gc();
    const grew = (process.memoryUsage().rss - rss) / 2 ** 20;
    assert.equal(liveTensors(), live, "live tensors changed over 4,500 steps");
    // one leaked 256×64 float tensor a step would add 280 MiB
    assert.ok(grew < 40, `RSS grew by ${grew.toFixed(1)} MiB`);
    assert.ok(last < first, `loss did not fall: ${first} → ${last}`);
  });
});
