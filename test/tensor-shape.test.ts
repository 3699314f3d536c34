import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { arange, cat, stack, tensor, where } from "../src/index.js";

const m = () =>
  tensor([
    [0, 1, 2],
    [3, 4, 5],
  ]);

describe("shape operations", () => {
  it("reshape, view, flatten, squeeze, unsqueeze", () => {
    assert.deepEqual([...m().reshape(3, 2).shape], [3, 2]);
    assert.deepEqual([...m().reshape(-1).shape], [6]);
    assert.deepEqual(m().view(3, 2).toArray(), [0, 1, 2, 3, 4, 5]);
    assert.deepEqual([...arange(24).reshape(2, 3, 4).flatten(1).shape], [2, 12]);
    assert.deepEqual([...m().unsqueeze(0).shape], [1, 2, 3]);
    assert.deepEqual([...m().unsqueeze(-1).shape], [2, 3, 1]);
    assert.deepEqual([...m().unsqueeze(0).squeeze(0).shape], [2, 3]);
    assert.deepEqual([...tensor([[[1]]]).squeeze().shape], []);
    assert.throws(() => m().view(4, 2), /invalid for input of size 6/);
  });

  it("transpose and permute move elements", () => {
    assert.deepEqual(m().transpose(0, 1).toArray(), [0, 3, 1, 4, 2, 5]);
    const t = arange(24).reshape(2, 3, 4).permute(2, 0, 1);
    assert.deepEqual([...t.shape], [4, 2, 3]);
    // element [k, i, j] of the permuted tensor is [i, j, k] = 12i + 4j + k of the original
    assert.equal(t.select(0, 3).select(0, 1).select(0, 2).item(), 12 + 8 + 3);
  });

  it("expand broadcasts without copying", () => {
    const e = tensor([[1], [2]]).expand(2, 3);
    assert.deepEqual(e.toArray(), [1, 1, 1, 2, 2, 2]);
    assert.equal(e.isContiguous, false);
    assert.deepEqual(tensor([1, 2]).expand(2, -1).toArray(), [1, 2, 1, 2]);
  });

  it("narrow, slice and select", () => {
    assert.deepEqual(m().narrow(1, 1, 2).toArray(), [1, 2, 4, 5]);
    assert.deepEqual(arange(10).slice(0, 2, 8, 3).toArray(), [2, 5]);
    assert.deepEqual(arange(10).slice(0, -3).toArray(), [7, 8, 9]);
    assert.deepEqual(arange(10).slice(0, undefined, 2).toArray(), [0, 1]);
    assert.deepEqual(m().select(1, -1).toArray(), [2, 5]);
    assert.throws(() => m().select(0, 5), /out of range/);
  });

  it("cat, stack, split and chunk", () => {
    assert.deepEqual(cat([m(), m()], 0).toArray(), [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]);
    assert.deepEqual(cat([m(), m()], 1).toArray(), [0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5]);
    const s = stack([tensor([1, 2]), tensor([3, 4])], 1);
    assert.deepEqual([...s.shape], [2, 2]);
    assert.deepEqual(s.toArray(), [1, 3, 2, 4]);
    const parts = arange(7).split(3);
    assert.deepEqual(
      parts.map((p) => p.toArray()),
      [[0, 1, 2], [3, 4, 5], [6]],
    );
    assert.deepEqual(
      arange(7)
        .split([2, 5])
        .map((p) => p.numel),
      [2, 5],
    );
    assert.deepEqual(
      m()
        .chunk(3, 1)
        .map((p) => p.toArray()),
      [
        [0, 3],
        [1, 4],
        [2, 5],
      ],
    );
    assert.throws(() => cat([m(), tensor([1])], 0), /Tensors must have same number of dimensions|dimension/i);
  });

  it("indexSelect, gather, maskedFill, where", () => {
    const idx = tensor([2, 0], { dtype: "int64" });
    assert.deepEqual(m().indexSelect(1, idx).toArray(), [2, 0, 5, 3]);
    const g = tensor(
      [
        [2, 2],
        [0, 1],
      ],
      { dtype: "int64" },
    );
    assert.deepEqual(m().gather(1, g).toArray(), [2, 2, 3, 4]);
    const mask = m().gt(3);
    assert.equal(mask.dtype, "bool");
    assert.deepEqual(m().maskedFill(mask, -1).toArray(), [0, 1, 2, 3, -1, -1]);
    assert.deepEqual(m().maskedFill(mask, tensor(9)).toArray(), [0, 1, 2, 3, 9, 9]);
    assert.deepEqual(where(mask, m(), 0).toArray(), [0, 0, 0, 0, 4, 5]);
    assert.deepEqual(where(mask, 1, m().neg().add(0)).toArray(), [0, -1, -2, -3, 1, 1]);
    assert.deepEqual(where(mask, 1, 0).toArray(), [0, 0, 0, 0, 1, 1]);
    assert.throws(() => m().indexSelect(1, tensor([5], { dtype: "int64" })), /out of range|out of DATA bounds/i);
  });
});
