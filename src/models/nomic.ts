/**
 * NomicBERT encoder forward pass (nomic-ai/contrastors' Hugging Face model): fused Wqkv, rotary
 * position embeddings on the first `rotary_emb_fraction` of each head (non-interleaved halves by
 * default), gated MLP fc11·act(fc12) → fc2, post-norm blocks, token-type embeddings and `emb_ln`.
 */
import {
  arange,
  attention,
  cat,
  dropout,
  embedding,
  full,
  layerNorm,
  linear,
  noGrad,
  type Tensor,
  tidy,
} from "../tensor/index.js";
import { type ForwardOptions, mergeHeads, type Params, required } from "./bert.js";
import type { EncoderConfig } from "./config.js";

/** cos and sin tables [S, rotaryDim] (each half repeated) for positions 0..S-1, computed in float32. */
export function rotaryTables(c: EncoderConfig, S: number, device: string): { cos: Tensor; sin: Tensor } {
  const n = c.nomic!;
  const headDim = c.hiddenSize / c.numHeads;
  const dim = Math.floor(headDim * n.rotaryFraction);
  return noGrad(() => {
    // 1 / base^(2i/dim), computed as the reference does (float32 pow, then reciprocal)
    const invFreq = full([dim / 2], n.rotaryBase, { device })
      .pow(arange(0, dim, 2, { dtype: "float32", device }).div(dim))
      .reciprocal();
    const freqs = arange(S, undefined, 1, { dtype: "float32", device }).outer(invFreq); // [S, dim/2]
    const both = n.rotaryInterleaved
      ? freqs
          .unsqueeze(-1)
          .expand(S, dim / 2, 2)
          .reshape(S, dim)
      : cat([freqs, freqs], -1);
    return { cos: both.cos(), sin: both.sin() };
  });
}

function rotateHalf(x: Tensor, interleaved: boolean): Tensor {
  const d = x.size(-1);
  if (!interleaved) {
    const [x1, x2] = x.chunk(2, -1) as [Tensor, Tensor];
    return cat([x2.neg(), x1], -1);
  }
  const pairs = x.reshape(...x.shape.slice(0, -1), d / 2, 2);
  const even = pairs.select(-1, 0);
  const odd = pairs.select(-1, 1);
  return cat([odd.neg().unsqueeze(-1), even.unsqueeze(-1)], -1).reshape(...x.shape);
}

/** Applies rotary embeddings to x [B, heads, S, headDim] on its first rotaryDim features. */
export function applyRotary(x: Tensor, cos: Tensor, sin: Tensor, interleaved: boolean): Tensor {
  const rd = cos.size(-1);
  const d = x.size(-1);
  const c = cos.to(x.dtype);
  const s = sin.to(x.dtype);
  const part = rd === d ? x : x.narrow(-1, 0, rd);
  const rotated = part.mul(c).add(rotateHalf(part, interleaved).mul(s));
  return rd === d ? rotated : cat([rotated, x.narrow(-1, rd, d - rd)], -1);
}

export function nomicForward(
  c: EncoderConfig,
  p: Params,
  ids: Tensor,
  mask: Tensor | null,
  opts: ForwardOptions,
  tables: { cos: Tensor; sin: Tensor },
): Tensor {
  const need = required(p);
  const H = c.hiddenSize;
  const eps = c.layerNormEps;
  const S = ids.size(1);
  const cos = tables.cos.narrow(0, 0, S);
  const sin = tables.sin.narrow(0, 0, S);
  let x = embedding(need("embeddings.word_embeddings.weight"), ids);
  if (c.typeVocabSize > 0) x = x.add(need("embeddings.token_type_embeddings.weight").select(0, 0));
  x = layerNorm(x, [H], need("emb_ln.weight"), need("emb_ln.bias"), eps);
  x = dropout(x, c.hiddenDropout, opts.train);
  for (let i = 0; i < c.numLayers; i++) {
    // each layer in its own scope, as in bertForward
    const input = x;
    x = tidy(() => nomicLayer(c, p, need, i, input, mask, opts, cos, sin));
    input.dispose();
  }
  return x;
}

function nomicLayer(
  c: EncoderConfig,
  p: Params,
  need: (name: string) => Tensor,
  i: number,
  x: Tensor,
  mask: Tensor | null,
  opts: ForwardOptions,
  cos: Tensor,
  sin: Tensor,
): Tensor {
  const n = c.nomic!;
  const H = c.hiddenSize;
  const eps = c.layerNormEps;
  const [B, S] = x.shape as [number, number];
  const hd = H / c.numHeads;
  const l = (name: string) => p(`encoder.layers.${i}.${name}`);
  const qkv = linear(x, need(`encoder.layers.${i}.attn.Wqkv.weight`), l("attn.Wqkv.bias")).view(
    B,
    S,
    3,
    c.numHeads,
    hd,
  );
  const q = applyRotary(qkv.select(2, 0).transpose(1, 2), cos, sin, n.rotaryInterleaved);
  const k = applyRotary(qkv.select(2, 1).transpose(1, 2), cos, sin, n.rotaryInterleaved);
  const v = qkv.select(2, 2).transpose(1, 2);
  const a = mergeHeads(attention(q, k, v, { mask, dropout: opts.train ? c.attentionDropout : 0 }));
  const ao = dropout(
    linear(a, need(`encoder.layers.${i}.attn.out_proj.weight`), l("attn.out_proj.bias")),
    c.hiddenDropout,
    opts.train,
  );
  x = layerNorm(ao.add(x), [H], l("norm1.weight"), l("norm1.bias"), eps);
  let h: Tensor;
  if (n.mlp === "gelu") {
    h = linear(x, need(`encoder.layers.${i}.mlp.fc1.weight`), l("mlp.fc1.bias")).gelu();
  } else {
    const up = linear(x, need(`encoder.layers.${i}.mlp.fc11.weight`), l("mlp.fc11.bias"));
    const gate = linear(x, need(`encoder.layers.${i}.mlp.fc12.weight`), l("mlp.fc12.bias"));
    h = up.mul(n.mlp === "swiglu" ? gate.silu() : n.mlp === "geglu" ? gate.gelu() : gate.sigmoid());
  }
  const m = dropout(
    linear(h, need(`encoder.layers.${i}.mlp.fc2.weight`), l("mlp.fc2.bias")),
    c.hiddenDropout,
    opts.train,
  );
  return layerNorm(m.add(x), [H], l("norm2.weight"), l("norm2.bias"), eps);
}
