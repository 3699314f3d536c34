/** Functions of several tensors and the neural-network building blocks (torch.nn.functional's). */
import type { DType } from "./dtype.js";
import { N } from "./native.js";
import { Tensor, type TensorLike } from "./tensor.js";

export function cat(tensors: Tensor[], dim = 0): Tensor {
  return Tensor.wrap(
    N.cat(
      tensors.map((t) => t.id),
      dim,
    ),
  );
}
export function stack(tensors: Tensor[], dim = 0): Tensor {
  return Tensor.wrap(
    N.stack(
      tensors.map((t) => t.id),
      dim,
    ),
  );
}
/** Elementwise `cond ? a : b`; a and b may be scalars. */
export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  const sa = !(a instanceof Tensor);
  const sb = !(b instanceof Tensor);
  return Tensor.wrap(
    N.where(cond.id, sa ? a : (a as Tensor).id, sb ? b : (b as Tensor).id, (sa ? 1 : 0) | (sb ? 2 : 0)),
  );
}
/** x·Wᵀ + b, with W of shape [out, in]. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  return Tensor.wrap(N.linear(x.id, weight.id, bias ? bias.id : null));
}
export function layerNorm(
  x: Tensor,
  normalizedShape: number[],
  weight?: Tensor | null,
  bias?: Tensor | null,
  eps = 1e-5,
): Tensor {
  return Tensor.wrap(N.layerNorm(x.id, normalizedShape, weight ? weight.id : null, bias ? bias.id : null, eps));
}
/** Inverted dropout when `train`, identity otherwise. */
export function dropout(x: Tensor, p: number, train: boolean): Tensor {
  if (!(p >= 0 && p < 1)) throw new RangeError(`dropout probability must be in [0, 1), got ${p}`);
  return Tensor.wrap(N.dropout(x.id, p, train));
}
/** Rows of `weight` picked by integer `indices`. */
export function embedding(weight: Tensor, indices: Tensor, paddingIdx?: number): Tensor {
  return Tensor.wrap(N.embedding(weight.id, indices.id, paddingIdx ?? null));
}
export function softmax(x: Tensor, dim: number, dtype?: DType): Tensor {
  return x.softmax(dim, dtype);
}
export function logSoftmax(x: Tensor, dim: number, dtype?: DType): Tensor {
  return x.logSoftmax(dim, dtype);
}
export function gelu(x: Tensor, approximate: "none" | "tanh" = "none"): Tensor {
  return x.gelu(approximate);
}

const REDUCTION = { none: 0, mean: 1, sum: 2 } as const;
/** Cross entropy of logits [N, C] (or [C]) against class indices [N] (int64). */
export function crossEntropy(
  logits: Tensor,
  target: Tensor,
  opts: { reduction?: keyof typeof REDUCTION; ignoreIndex?: number; labelSmoothing?: number } = {},
): Tensor {
  return Tensor.wrap(
    N.crossEntropy(
      logits.id,
      target.id,
      REDUCTION[opts.reduction ?? "mean"],
      opts.ignoreIndex ?? -100,
      opts.labelSmoothing ?? 0,
    ),
  );
}
export function cosineSimilarity(a: Tensor, b: Tensor, dim = 1, eps = 1e-8): Tensor {
  return Tensor.wrap(N.cosineSimilarity(a.id, b.id, dim, eps));
}
/** x / max(‖x‖_p, eps) along `dim` (torch.nn.functional.normalize). */
export function normalize(x: Tensor, opts: { p?: number; dim?: number; eps?: number } = {}): Tensor {
  return Tensor.wrap(N.normalize(x.id, opts.p ?? 2, opts.dim ?? -1, opts.eps ?? 1e-12));
}
/**
 * softmax(q·kᵀ/√d + mask)·v over (..., L, d) queries and (..., S, d) keys and values. `mask`: boolean
 * (true = attend; e.g. a key-padding mask of shape [B, 1, 1, S]) or additive float. On libtorch 2.x
 * this is torch's fused scaled_dot_product_attention; on 1.13 the same maths op by op.
 */
export function attention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts: { mask?: Tensor | null; dropout?: number; causal?: boolean } = {},
): Tensor {
  return Tensor.wrap(
    N.attention(q.id, k.id, v.id, opts.mask ? opts.mask.id : null, opts.dropout ?? 0, opts.causal ?? false),
  );
}

/** Reduced singular value decomposition A = U·diag(S)·Vh. */
export function svd(a: Tensor): { U: Tensor; S: Tensor; Vh: Tensor } {
  const [u, s, vh] = N.svd(a.id);
  return { U: Tensor.wrap(u), S: Tensor.wrap(s), Vh: Tensor.wrap(vh) };
}
/** X with A·X = B (A square). */
export function solve(a: Tensor, b: Tensor): Tensor {
  return Tensor.wrap(N.solve(a.id, b.id));
}
