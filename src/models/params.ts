/**
 * Parameter layouts: every architecture lists its tensors (Hugging Face names, shapes, how BERT
 * initialises them), so random init, checkpoint validation and saving share one description.
 */
import { type Device, type DType, full, keep, noGrad, randn, type Tensor, tidy, zeros } from "../tensor/index.js";
import type { EncoderConfig } from "./config.js";

export type Init = "normal" | "embedding" | "ones" | "zeros";
export interface ParamSpec {
  name: string;
  shape: number[];
  init: Init;
}

function linear(prefix: string, out: number, inp: number, bias = true): ParamSpec[] {
  const specs: ParamSpec[] = [{ name: `${prefix}.weight`, shape: [out, inp], init: "normal" }];
  if (bias) specs.push({ name: `${prefix}.bias`, shape: [out], init: "zeros" });
  return specs;
}
function layerNorm(prefix: string, n: number): ParamSpec[] {
  return [
    { name: `${prefix}.weight`, shape: [n], init: "ones" },
    { name: `${prefix}.bias`, shape: [n], init: "zeros" },
  ];
}

/** The parameters of an encoder with this config, in Hugging Face's names and order. */
export function paramSpecs(c: EncoderConfig): ParamSpec[] {
  const H = c.hiddenSize;
  const I = c.intermediateSize;
  const specs: ParamSpec[] = [];
  if (c.architecture === "bert") {
    specs.push({ name: "embeddings.word_embeddings.weight", shape: [c.vocabSize, H], init: "embedding" });
    specs.push({ name: "embeddings.position_embeddings.weight", shape: [c.maxPositions, H], init: "normal" });
    if (c.typeVocabSize > 0)
      specs.push({ name: "embeddings.token_type_embeddings.weight", shape: [c.typeVocabSize, H], init: "normal" });
    specs.push(...layerNorm("embeddings.LayerNorm", H));
    for (let i = 0; i < c.numLayers; i++) {
      const p = `encoder.layer.${i}`;
      for (const m of ["query", "key", "value"]) specs.push(...linear(`${p}.attention.self.${m}`, H, H));
      specs.push(...linear(`${p}.attention.output.dense`, H, H), ...layerNorm(`${p}.attention.output.LayerNorm`, H));
      specs.push(...linear(`${p}.intermediate.dense`, I, H));
      specs.push(...linear(`${p}.output.dense`, H, I), ...layerNorm(`${p}.output.LayerNorm`, H));
    }
    return specs;
  }
  const n = c.nomic!;
  specs.push({ name: "embeddings.word_embeddings.weight", shape: [n.paddedVocabSize, H], init: "embedding" });
  if (c.typeVocabSize > 0)
    specs.push({ name: "embeddings.token_type_embeddings.weight", shape: [c.typeVocabSize, H], init: "normal" });
  specs.push(...layerNorm("emb_ln", H));
  for (let i = 0; i < c.numLayers; i++) {
    const p = `encoder.layers.${i}`;
    specs.push(...linear(`${p}.attn.Wqkv`, 3 * H, H, n.qkvBias), ...linear(`${p}.attn.out_proj`, H, H, n.qkvBias));
    if (n.mlp === "gelu") {
      specs.push(...linear(`${p}.mlp.fc1`, I, H, n.mlpFc1Bias));
    } else {
      specs.push(...linear(`${p}.mlp.fc11`, I, H, n.mlpFc1Bias), ...linear(`${p}.mlp.fc12`, I, H, n.mlpFc1Bias));
    }
    specs.push(...linear(`${p}.mlp.fc2`, H, I, n.mlpFc2Bias));
    specs.push(...layerNorm(`${p}.norm1`, H), ...layerNorm(`${p}.norm2`, H));
  }
  return specs;
}

/** New parameters initialised as BERT does: normal(0, initializer_range), zero biases and padding row, LayerNorm ones. */
export function initParams(
  c: EncoderConfig,
  opts: { seed: number; device?: Device | string; dtype?: DType },
): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  let seed = opts.seed;
  for (const s of paramSpecs(c)) {
    const t = tidy(() =>
      noGrad(() => {
        const o = { device: opts.device ?? "cpu", dtype: opts.dtype ?? "float32" };
        if (s.init === "ones") return full(s.shape, 1, o);
        if (s.init === "zeros") return zeros(s.shape, o);
        const w = randn(s.shape, { seed: seed++ }).mul(c.initializerRange).to(o);
        if (s.init === "embedding" && c.padTokenId < (s.shape[0] as number)) w.select(0, c.padTokenId).zero_();
        return w;
      }),
    );
    out.set(s.name, keep(t));
  }
  return out;
}

/** Prefixes that task heads and wrappers put before the encoder's own names. */
const PREFIXES = ["bert.", "model.", "encoder_model."];
/** Tensors a checkpoint may carry that an encoder does not use. */
const IGNORED = [/^pooler\./, /^cls\./, /^classifier\./, /^embeddings\.position_ids$/, /^lm_head\./];

/** Maps a checkpoint's tensor names to the encoder's (strips a task-head prefix). */
export function canonicalName(name: string, expected: Set<string>): string | null {
  if (expected.has(name)) return name;
  for (const p of PREFIXES) if (name.startsWith(p) && expected.has(name.slice(p.length))) return name.slice(p.length);
  const bare = PREFIXES.reduce((n, p) => (n.startsWith(p) ? n.slice(p.length) : n), name);
  if (IGNORED.some((r) => r.test(bare))) return null;
  return null;
}
