/** BERT encoder forward pass (Hugging Face BertModel without pooler): post-norm, learned positions. */
import { arange, attention, dropout, embedding, layerNorm, linear, type Tensor, tidy } from "../tensor/index.js";
import type { EncoderConfig } from "./config.js";

export interface ForwardOptions {
  train: boolean;
}

/** Parameter lookup by Hugging Face name; undefined for optional tensors that are absent (biases). */
export type Params = (name: string) => Tensor | undefined;

/** The lookup for tensors that must exist. */
export function required(params: Params): (name: string) => Tensor {
  return (name) => {
    const t = params(name);
    if (!t) throw new Error(`missing parameter ${name}`);
    return t;
  };
}

export function activation(x: Tensor, act: EncoderConfig["hiddenAct"]): Tensor {
  switch (act) {
    case "gelu":
      return x.gelu();
    case "gelu_tanh":
      return x.gelu("tanh");
    case "relu":
      return x.relu();
    case "silu":
      return x.silu();
  }
}

/** Splits [B, S, H] into heads [B, heads, S, H/heads]. */
export function heads(x: Tensor, n: number): Tensor {
  const [b, s, h] = x.shape as [number, number, number];
  return x.view(b, s, n, h / n).transpose(1, 2);
}
/** Merges [B, heads, S, d] back into [B, S, heads·d]. */
export function mergeHeads(x: Tensor): Tensor {
  const [b, n, s, d] = x.shape as [number, number, number, number];
  return x.transpose(1, 2).reshape(b, s, n * d);
}

/**
 * Last hidden states [B, S, H] for token ids [B, S] (int64) and a boolean key mask [B, 1, 1, S]
 * (true = real token).
 */
export function bertForward(
  c: EncoderConfig,
  params: Params,
  ids: Tensor,
  mask: Tensor | null,
  opts: ForwardOptions,
): Tensor {
  const p = required(params);
  const S = ids.size(1);
  if (S > c.maxPositions)
    throw new RangeError(`sequence of ${S} tokens exceeds max_position_embeddings ${c.maxPositions}`);
  const eps = c.layerNormEps;
  const H = c.hiddenSize;
  let x = embedding(p("embeddings.word_embeddings.weight"), ids).add(
    embedding(p("embeddings.position_embeddings.weight"), arange(S, undefined, 1, { device: ids.device })),
  );
  if (c.typeVocabSize > 0) x = x.add(p("embeddings.token_type_embeddings.weight").select(0, 0));
  x = layerNorm(x, [H], p("embeddings.LayerNorm.weight"), p("embeddings.LayerNorm.bias"), eps);
  x = dropout(x, c.hiddenDropout, opts.train);
  for (let i = 0; i < c.numLayers; i++) {
    // each layer in its own scope: its intermediates are released as soon as it returns (what
    // autograd needs for backward it keeps on its own)
    const input = x;
    x = tidy(() => bertLayer(c, params, p, i, input, mask, opts));
    input.dispose();
  }
  return x;
}

function bertLayer(
  c: EncoderConfig,
  params: Params,
  p: (name: string) => Tensor,
  i: number,
  x: Tensor,
  mask: Tensor | null,
  opts: ForwardOptions,
): Tensor {
  const H = c.hiddenSize;
  const eps = c.layerNormEps;
  const l = (n: string) => p(`encoder.layer.${i}.${n}`);
  // inference parameter maps carry the three projections fused (one GEMM); training uses them apart
  const fused = params(`encoder.layer.${i}.attention.self.qkv.weight`);
  let q: Tensor;
  let k: Tensor;
  let v: Tensor;
  if (fused) {
    const [B, S] = x.shape as [number, number];
    const qkv = linear(x, fused, l("attention.self.qkv.bias")).view(B, S, 3, c.numHeads, H / c.numHeads);
    [q, k, v] = [0, 1, 2].map((j) => qkv.select(2, j).transpose(1, 2)) as [Tensor, Tensor, Tensor];
  } else {
    q = heads(linear(x, l("attention.self.query.weight"), l("attention.self.query.bias")), c.numHeads);
    k = heads(linear(x, l("attention.self.key.weight"), l("attention.self.key.bias")), c.numHeads);
    v = heads(linear(x, l("attention.self.value.weight"), l("attention.self.value.bias")), c.numHeads);
  }
  const a = mergeHeads(attention(q, k, v, { mask, dropout: opts.train ? c.attentionDropout : 0 }));
  const ao = dropout(
    linear(a, l("attention.output.dense.weight"), l("attention.output.dense.bias")),
    c.hiddenDropout,
    opts.train,
  );
  x = layerNorm(ao.add(x), [H], l("attention.output.LayerNorm.weight"), l("attention.output.LayerNorm.bias"), eps);
  const h = activation(linear(x, l("intermediate.dense.weight"), l("intermediate.dense.bias")), c.hiddenAct);
  const o = dropout(linear(h, l("output.dense.weight"), l("output.dense.bias")), c.hiddenDropout, opts.train);
  return layerNorm(o.add(x), [H], l("output.LayerNorm.weight"), l("output.LayerNorm.bias"), eps);
}
