/**
 * Encoder configurations read from a Hugging Face `config.json` (model_type `bert` or
 * `nomic_bert`), normalised to one typed shape. Missing or nonsensical fields are errors naming the
 * file and the field.
 */
import { readFileSync } from "node:fs";

export type Architecture = "bert" | "nomic_bert";
export type Activation = "gelu" | "gelu_tanh" | "relu" | "silu";
export type NomicMlp = "swiglu" | "geglu" | "glu" | "gelu";

export interface EncoderConfig {
  architecture: Architecture;
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  typeVocabSize: number;
  layerNormEps: number;
  padTokenId: number;
  hiddenDropout: number;
  attentionDropout: number;
  initializerRange: number;
  /** bert only: learned absolute positions. */
  maxPositions: number;
  /** bert only. */
  hiddenAct: Activation;
  /** nomic_bert only. */
  nomic?: {
    rotaryBase: number;
    rotaryFraction: number;
    rotaryInterleaved: boolean;
    qkvBias: boolean;
    mlpFc1Bias: boolean;
    mlpFc2Bias: boolean;
    mlp: NomicMlp;
    /** vocabulary rows in the checkpoint: vocab padded to pad_vocab_size_multiple */
    paddedVocabSize: number;
  };
  /** The config.json as read, written back on save with the fields above. */
  raw: Record<string, unknown>;
}

export class ConfigError extends Error {
  constructor(file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = "ConfigError";
  }
}

function reader(raw: Record<string, unknown>, file: string) {
  const num = (keys: string[], opts: { int?: boolean; min?: number; max?: number; fallback?: number } = {}): number => {
    const key = keys.find((k) => raw[k] !== undefined && raw[k] !== null);
    if (key === undefined) {
      if (opts.fallback !== undefined) return opts.fallback;
      throw new ConfigError(file, `missing field ${keys.map((k) => `'${k}'`).join(" or ")}`);
    }
    const v = raw[key];
    if (typeof v !== "number" || !Number.isFinite(v))
      throw new ConfigError(file, `'${key}' must be a number, got ${JSON.stringify(v)}`);
    if (opts.int && !Number.isInteger(v)) throw new ConfigError(file, `'${key}' must be an integer, got ${v}`);
    if (opts.min !== undefined && v < opts.min) throw new ConfigError(file, `'${key}' = ${v} is below ${opts.min}`);
    if (opts.max !== undefined && v > opts.max)
      throw new ConfigError(file, `'${key}' = ${v} is absurd (more than ${opts.max})`);
    return v;
  };
  const bool = (key: string, fallback: boolean): boolean => {
    const v = raw[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== "boolean") throw new ConfigError(file, `'${key}' must be true or false, got ${JSON.stringify(v)}`);
    return v;
  };
  return { num, bool };
}

const BERT_ACT: Record<string, Activation> = {
  gelu: "gelu",
  gelu_new: "gelu_tanh",
  gelu_fast: "gelu_tanh",
  gelu_pytorch_tanh: "gelu_tanh",
  relu: "relu",
  silu: "silu",
  swish: "silu",
};

/** Normalises a parsed config.json. `file` names it in errors. */
export function parseConfig(raw: Record<string, unknown>, file = "config.json"): EncoderConfig {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw new ConfigError(file, "not a JSON object");
  const type = raw.model_type;
  const { num, bool } = reader(raw, file);
  const BIG = 1 << 22;
  if (type === "bert") {
    const act = BERT_ACT[String(raw.hidden_act ?? "gelu")];
    if (!act)
      throw new ConfigError(
        file,
        `unsupported hidden_act ${JSON.stringify(raw.hidden_act)} (known: ${Object.keys(BERT_ACT).join(", ")})`,
      );
    if (raw.position_embedding_type !== undefined && raw.position_embedding_type !== "absolute") {
      throw new ConfigError(
        file,
        `unsupported position_embedding_type ${JSON.stringify(raw.position_embedding_type)} (only 'absolute')`,
      );
    }
    const cfg: EncoderConfig = {
      architecture: "bert",
      vocabSize: num(["vocab_size"], { int: true, min: 1, max: BIG }),
      hiddenSize: num(["hidden_size"], { int: true, min: 1, max: 65536 }),
      numLayers: num(["num_hidden_layers"], { int: true, min: 0, max: 1024 }),
      numHeads: num(["num_attention_heads"], { int: true, min: 1, max: 1024 }),
      intermediateSize: num(["intermediate_size"], { int: true, min: 1, max: 1 << 20 }),
      maxPositions: num(["max_position_embeddings"], { int: true, min: 1, max: BIG }),
      typeVocabSize: num(["type_vocab_size"], { int: true, min: 0, max: 1024, fallback: 2 }),
      layerNormEps: num(["layer_norm_eps"], { min: 0, fallback: 1e-12 }),
      padTokenId: num(["pad_token_id"], { int: true, min: 0, fallback: 0 }),
      hiddenDropout: num(["hidden_dropout_prob"], { min: 0, max: 0.99, fallback: 0.1 }),
      attentionDropout: num(["attention_probs_dropout_prob"], { min: 0, max: 0.99, fallback: 0.1 }),
      initializerRange: num(["initializer_range"], { min: 0, fallback: 0.02 }),
      hiddenAct: act,
      raw,
    };
    if (cfg.hiddenSize % cfg.numHeads !== 0) {
      throw new ConfigError(
        file,
        `hidden_size ${cfg.hiddenSize} is not divisible by num_attention_heads ${cfg.numHeads}`,
      );
    }
    return cfg;
  }
  if (type === "nomic_bert") {
    if (bool("prenorm", false)) throw new ConfigError(file, "prenorm NomicBERT is not supported (only post-norm)");
    if (bool("causal", false)) throw new ConfigError(file, "causal NomicBERT is not supported");
    if (raw.rotary_scaling_factor) throw new ConfigError(file, "rotary_scaling_factor (dynamic NTK) is not supported");
    const mlp = String(raw.activation_function ?? "swiglu");
    const mlps: Record<string, NomicMlp> = { swiglu: "swiglu", geglu: "geglu", glu: "glu", gelu: "gelu" };
    if (!mlps[mlp])
      throw new ConfigError(
        file,
        `unsupported activation_function ${JSON.stringify(mlp)} (known: ${Object.keys(mlps).join(", ")})`,
      );
    const hidden = num(["n_embd", "hidden_size"], { int: true, min: 1, max: 65536 });
    const heads = num(["n_head", "num_attention_heads"], { int: true, min: 1, max: 1024 });
    if (hidden % heads !== 0) throw new ConfigError(file, `n_embd ${hidden} is not divisible by n_head ${heads}`);
    const inner = num(["n_inner", "intermediate_size"], { int: true, min: 1, max: 1 << 20, fallback: 4 * hidden });
    // gated MLPs round their width up to a multiple of 256, as the reference implementation does
    const intermediate = mlp === "gelu" ? inner : Math.ceil(inner / 256) * 256;
    const vocab = num(["vocab_size"], { int: true, min: 1, max: BIG });
    const multiple = num(["pad_vocab_size_multiple"], { int: true, min: 1, max: 4096, fallback: 1 });
    const fraction = num(["rotary_emb_fraction"], { min: 0, max: 1, fallback: 0 });
    if (!(fraction > 0))
      throw new ConfigError(
        file,
        "rotary_emb_fraction must be > 0 (absolute positions are not supported for nomic_bert)",
      );
    return {
      architecture: "nomic_bert",
      vocabSize: vocab,
      hiddenSize: hidden,
      numLayers: num(["n_layer", "num_hidden_layers"], { int: true, min: 0, max: 1024 }),
      numHeads: heads,
      intermediateSize: intermediate,
      maxPositions: num(["n_positions", "max_trained_positions"], { int: true, min: 1, max: BIG, fallback: 2048 }),
      typeVocabSize: num(["type_vocab_size"], { int: true, min: 0, max: 1024, fallback: 2 }),
      layerNormEps: num(["layer_norm_epsilon"], { min: 0, fallback: 1e-12 }),
      padTokenId: num(["pad_token_id"], { int: true, min: 0, fallback: 0 }),
      hiddenDropout: num(["resid_pdrop"], { min: 0, max: 0.99, fallback: 0 }),
      attentionDropout: num(["attn_pdrop"], { min: 0, max: 0.99, fallback: 0 }),
      initializerRange: num(["initializer_range"], { min: 0, fallback: 0.02 }),
      hiddenAct: "gelu",
      nomic: {
        rotaryBase: num(["rotary_emb_base"], { min: 1, fallback: 10000 }),
        rotaryFraction: fraction,
        rotaryInterleaved: bool("rotary_emb_interleaved", false),
        qkvBias: bool("qkv_proj_bias", true),
        mlpFc1Bias: bool("mlp_fc1_bias", true),
        mlpFc2Bias: bool("mlp_fc2_bias", true),
        mlp: mlps[mlp] as NomicMlp,
        paddedVocabSize: Math.ceil(vocab / multiple) * multiple,
      },
      raw,
    };
  }
  throw new ConfigError(
    file,
    `unknown model_type ${JSON.stringify(type)} (architectures ${JSON.stringify(raw.architectures ?? null)}); supported: bert, nomic_bert`,
  );
}

export function readConfig(path: string): EncoderConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new ConfigError(path, `cannot read JSON (${(e as Error).message})`);
  }
  return parseConfig(raw as Record<string, unknown>, path);
}

/** Options for a new BERT-style config (random init for the project's own base models). */
export function bertConfig(opts: {
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize?: number;
  maxPositions?: number;
  hiddenAct?: string;
  dropout?: number;
}): EncoderConfig {
  return parseConfig({
    architectures: ["BertModel"],
    model_type: "bert",
    vocab_size: opts.vocabSize,
    hidden_size: opts.hiddenSize,
    num_hidden_layers: opts.numLayers,
    num_attention_heads: opts.numHeads,
    intermediate_size: opts.intermediateSize ?? 4 * opts.hiddenSize,
    max_position_embeddings: opts.maxPositions ?? 512,
    hidden_act: opts.hiddenAct ?? "gelu",
    hidden_dropout_prob: opts.dropout ?? 0.1,
    attention_probs_dropout_prob: opts.dropout ?? 0.1,
    type_vocab_size: 2,
    layer_norm_eps: 1e-12,
    initializer_range: 0.02,
    pad_token_id: 0,
    position_embedding_type: "absolute",
  });
}
