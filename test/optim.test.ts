import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { AdamW, clipGradNorm, enableGrad, isGradEnabled, noGrad, type Tensor, tensor, tidy } from "../src/index.js";
import { assertClose } from "./helpers.js";

/** torch.optim.AdamW's update written out in plain JS doubles. */
function adamwReference(
  p: number[],
  grads: (p: number[]) => number[],
  lrs: number[],
  b1: number,
  b2: number,
  eps: number,
  wd: number,
): number[] {
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  let x = [...p];
  lrs.forEach((lr, s) => {
    const t = s + 1;
    const g = grads(x);
    x = x.map((xi, i) => {
      const gi = g[i] as number;
      m[i] = b1 * (m[i] as number) + (1 - b1) * gi;
      v[i] = b2 * (v[i] as number) + (1 - b2) * gi * gi;
      const decayed = xi * (1 - lr * wd);
      const denom = Math.sqrt(v[i] as number) / Math.sqrt(1 - b2 ** t) + eps;
      return decayed - (lr / (1 - b1 ** t)) * ((m[i] as number) / denom);
    });
  });
  return x;
}

function lossOf(p1: Tensor, p2: Tensor): Tensor {
  return p1.pow(2).sum().add(p2.mul(3).sum());
}

describe("AdamW", () => {
  it("matches a hand computation of two steps with two parameter groups and an lr change", () => {
    const p1 = tensor([1, -2], { dtype: "float64", requiresGrad: true });
    const p2 = tensor([0.5], { dtype: "float64", requiresGrad: true });
    const opt = new AdamW(
      [
        { params: [p1], weightDecay: 0.1 },
        { params: [p2], lr: 0.01, weightDecay: 0 },
      ],
      { lr: 0.1, betas: [0.9, 0.99], eps: 1e-8 },
    );
    for (const lrA of [0.1, 0.05]) {
      opt.groups[0]!.lr = lrA;
      opt.zeroGrad();
      tidy(() => lossOf(p1, p2).backward());
      opt.step();
    }
    const e1 = adamwReference([1, -2], (x) => x.map((v) => 2 * v), [0.1, 0.05], 0.9, 0.99, 1e-8, 0.1);
    const e2 = adamwReference([0.5], () => [3], [0.01, 0.01], 0.9, 0.99, 1e-8, 0);
    assertClose(p1.toArray(), e1, 1e-12, 1e-12);
    assertClose(p2.toArray(), e2, 1e-12, 1e-12);
    opt.setLr(0.2);
    assert.deepEqual(
      opt.groups.map((g) => g.lr),
      [0.2, 0.2],
    );
    assert.throws(() => opt.setLr(-1), /invalid lr/);
    assert.throws(() => new AdamW([p1], { betas: [1.5, 0.9] }), /betas/);
  });

  it("skips parameters without gradients and drops gradients on zeroGrad", () => {
    const a = tensor([1], { requiresGrad: true });
    const b = tensor([1], { requiresGrad: true });
    const opt = new AdamW([a, b], { lr: 0.1, weightDecay: 0 });
    tidy(() => a.mul(2).sum().backward());
    opt.step();
    assert.ok(a.item() < 1);
    assert.equal(b.item(), 1);
    opt.zeroGrad();
    assert.equal(a.grad, null);
  });

  it("saves and restores its state: a resumed optimiser continues identically", () => {
    const dir = mkdtempSync(join(tmpdir(), "qdc-optim-"));
    const make = () => tensor([0.3, -0.7, 1.1], { dtype: "float64", requiresGrad: true });
    const run = (p: Tensor, opt: AdamW) => {
      opt.zeroGrad();
      tidy(() => p.pow(3).sum().backward());
      opt.step();
    };
    const p = make();
    const opt = new AdamW([p], { lr: 0.05 });
    run(p, opt);
    opt.save(join(dir, "opt.safetensors"));
    const q = tensor(p.toArray(), { dtype: "float64", requiresGrad: true });
    const opt2 = new AdamW([q], { lr: 999 });
    opt2.load(join(dir, "opt.safetensors"));
    assert.equal(opt2.groups[0]!.lr, 0.05);
    run(p, opt);
    run(q, opt2);
    assert.deepEqual(q.toArray(), p.toArray());
    const wrong = new AdamW([{ params: [q] }, { params: [make()] }]);
    assert.throws(() => wrong.load(join(dir, "opt.safetensors")), /holds 1 parameter groups, optimiser has 2/);
  });
});

describe("gradient clipping", () => {
  it("scales all gradients to the maximum total norm and returns the norm before", () => {
    const a = tensor([1, 1], { requiresGrad: true });
    const b = tensor([1], { requiresGrad: true });
    tidy(() =>
      a
        .mul(tensor([3, 4]))
        .sum()
        .add(b.mul(12).sum())
        .backward(),
    );
    const total = clipGradNorm([a, b], 6.5);
    assertClose([total], [13], 1e-5);
    const c = 6.5 / (13 + 1e-6);
    assertClose(a.grad!.toArray(), [3 * c, 4 * c], 1e-6);
    assertClose(b.grad!.toArray(), [12 * c], 1e-6);
    // below the maximum: unchanged
    assertClose([clipGradNorm([a, b], 100)], [6.5], 1e-5);
    assertClose(b.grad!.toArray(), [12 * c], 1e-6);
  });
});

describe("autograd", () => {
  it("backward with a gradient, accumulation, and grad-mode scopes", () => {
    const x = tensor([1, 2, 3], { requiresGrad: true });
    const y = x.mul(x);
    y.backward(tensor([1, 0.5, 0]), { retainGraph: true });
    assert.deepEqual(x.grad!.toArray(), [2, 2, 0]);
    y.backward(tensor([1, 1, 1]));
    assert.deepEqual(x.grad!.toArray(), [4, 6, 6]);
    x.grad = null;
    assert.equal(x.grad, null);
    assert.equal(x.isLeaf, true);
    assert.equal(y.isLeaf, false);
    const z = noGrad(() => {
      assert.equal(isGradEnabled(), false);
      const inner = enableGrad(() => x.mul(2));
      assert.equal(inner.requiresGrad, true);
      return x.mul(2);
    });
    assert.equal(z.requiresGrad, false);
    assert.equal(isGradEnabled(), true);
    assert.throws(() => tensor([1], { dtype: "int64", requiresGrad: true }), /floating-point/);
    assert.throws(() => x.mul(1).backward(), /grad can be implicitly created only for scalar outputs/);
  });
});
