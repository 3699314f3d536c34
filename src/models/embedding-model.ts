/**
 * An embedding model: a BERT or NomicBERT encoder, its tokenizer, pooling (mean or CLS), L2
 * normalisation and the query/document prefixes. Loaded from and saved to plain Hugging Face
 * directories (config.json, model.safetensors or shards, tokenizer files), plus the
 * sentence-transformers files that record pooling, normalisation and prompts.
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import cliProgress from "cli-progress";
import { writeLineage } from "../lineage/record.js";
import {
  cat,
  type Device,
  type DType,
  keep,
  loadCheckpoint,
  noGrad,
  normalize,
  saveCheckpoint,
  type Tensor,
  tensor,
  tidy,
  writeAtomically,
} from "../tensor/index.js";
import { bertForward } from "./bert.js";
import { type EncoderConfig, readConfig } from "./config.js";
import { nomicForward, rotaryTables } from "./nomic.js";
import { canonicalName, initParams, paramSpecs } from "./params.js";
import { readJson, Tokenizer } from "./tokenizer.js";

export type Pooling = "mean" | "cls";
export type TextKind = "query" | "document";

export interface EncodeOptions {
  kind?: TextKind;
  batchSize?: number;
  /** Tokens per text including special tokens (default: the model's max length, at most 512). */
  maxLength?: number;
  /** Prepended to every text; overrides the model's prompt for `kind`. `false` turns prefixes off. */
  prefix?: string | false;
  /** Show a progress bar on stderr (default: for more than 1,000 texts when stderr is a terminal). */
  progress?: boolean;
  /** Called after each batch with the number of texts done. */
  onProgress?: (done: number, total: number) => void;
}

export interface Batch {
  /** [B, S] int64 token ids, padded with the pad id */
  inputIds: Tensor;
  /** [B, S] int64, 1 for real tokens */
  attentionMask: Tensor;
  /** false when every row is full length: attention then runs without a mask (and, on CUDA, can use flash kernels) */
  padded?: boolean;
}

const NOMIC_PROMPTS = { query: "search_query: ", document: "search_document: " };

function readJsonIf(path: string): Record<string, unknown> | null {
  return existsSync(path) ? readJson(path) : null;
}

export class EmbeddingModel {
  readonly config: EncoderConfig;
  readonly tokenizer: Tokenizer;
  readonly params: Map<string, Tensor>;
  readonly device: string;
  pooling: Pooling = "mean";
  normalize = true;
  prompts: Record<TextKind, string>;
  /** Dropout on (training) or off. */
  training = false;
  #rotary: { S: number; cos: Tensor; sin: Tensor } | null = null;
  /** fused/cast inference parameters, with the parameters and write versions they were made from */
  #inference: { dtype: DType | null; from: Map<string, [Tensor, number]>; params: Map<string, Tensor> } | null = null;

  constructor(config: EncoderConfig, tokenizer: Tokenizer, params: Map<string, Tensor>, device = "cpu") {
    this.config = config;
    this.tokenizer = tokenizer;
    this.params = params;
    this.device = device;
    this.prompts = config.architecture === "nomic_bert" ? { ...NOMIC_PROMPTS } : { query: "", document: "" };
    if (tokenizer.vocabSize > (config.nomic?.paddedVocabSize ?? config.vocabSize)) {
      throw new Error(
        `tokenizer has ${tokenizer.vocabSize} tokens, more than the model's vocab_size ${config.vocabSize}`,
      );
    }
  }

  /** A new model with BERT's random initialisation. */
  static create(
    config: EncoderConfig,
    tokenizer: Tokenizer,
    opts: { seed?: number; device?: Device | string } = {},
  ): EmbeddingModel {
    const device = opts.device ?? "cpu";
    const params = initParams(config, { seed: opts.seed ?? 0, device });
    for (const p of params.values()) p.requiresGrad_(true);
    return new EmbeddingModel(config, tokenizer, params, device);
  }

  /** Loads a Hugging Face model directory. */
  static load(
    dir: string,
    opts: { device?: Device | string; dtype?: DType; requiresGrad?: boolean } = {},
  ): EmbeddingModel {
    if (!existsSync(dir)) throw new Error(`${dir}: no such model directory`);
    const configPath = join(dir, "config.json");
    if (!existsSync(configPath)) throw new Error(`${dir}: no config.json (expected a Hugging Face model directory)`);
    const config = readConfig(configPath);
    const tokenizer = Tokenizer.fromDir(dir);
    const device = opts.device ?? "cpu";
    const specs = paramSpecs(config);
    const expected = new Set(specs.map((s) => s.name));
    const weightsFile = existsSync(join(dir, "model.safetensors.index.json"))
      ? join(dir, "model.safetensors.index.json")
      : join(dir, "model.safetensors");
    const raw = loadCheckpoint(dir, { device });
    const params = new Map<string, Tensor>();
    try {
      for (const [name, t] of raw) {
        const canon = canonicalName(name, expected);
        if (canon === null || params.has(canon)) {
          t.dispose();
          continue;
        }
        params.set(canon, t);
      }
      for (const s of specs) {
        const t = params.get(s.name);
        if (!t)
          throw new Error(
            `${weightsFile}: missing tensor '${s.name}' required by ${config.architecture} (${configPath})`,
          );
        if (t.shape.join() !== s.shape.join()) {
          throw new Error(
            `${weightsFile}: tensor '${s.name}' has shape [${t.shape.join(", ")}], ${configPath} implies [${s.shape.join(", ")}]`,
          );
        }
        const dtype = opts.dtype ?? "float32";
        if (t.dtype !== dtype) {
          const cast = t.to(dtype);
          t.dispose();
          params.set(s.name, cast);
        }
      }
    } catch (e) {
      for (const t of params.values()) t.dispose();
      throw e;
    }
    if (opts.requiresGrad ?? false) for (const p of params.values()) p.requiresGrad_(true);
    const model = new EmbeddingModel(config, tokenizer, params, device);
    model.#readSentenceTransformers(dir);
    return model;
  }

  #readSentenceTransformers(dir: string): void {
    const st = readJsonIf(join(dir, "config_sentence_transformers.json"));
    const prompts = st?.prompts as Record<string, unknown> | undefined;
    if (prompts) {
      if (typeof prompts.query === "string") this.prompts.query = prompts.query;
      if (typeof prompts.document === "string") this.prompts.document = prompts.document;
    }
    const pooling = readJsonIf(join(dir, "1_Pooling", "config.json"));
    if (pooling?.pooling_mode_cls_token) this.pooling = "cls";
    const modules = readJsonIf(join(dir, "modules.json"));
    if (Array.isArray(modules)) {
      this.normalize = modules.some((m) => typeof m?.type === "string" && m.type.endsWith("Normalize"));
    }
  }

  /**
   * Writes a directory that Hugging Face transformers (and sentence-transformers) load, with its
   * lineage record (`lineage.json`: the model's content id, and `parent`'s when it was derived
   * from one; `lineage`: more fields for the record, e.g. the training task).
   */
  save(
    dir: string,
    opts: { maxShardBytes?: number; parent?: string | null; lineage?: Record<string, unknown> } = {},
  ): void {
    mkdirSync(dir, { recursive: true });
    const json = (name: string, obj: unknown) =>
      writeAtomically(join(dir, name), (fd) => writeFileSync(fd, `${JSON.stringify(obj, null, 2)}\n`));
    const ordered = new Map<string, Tensor>();
    for (const s of paramSpecs(this.config)) ordered.set(s.name, this.params.get(s.name) as Tensor);
    saveCheckpoint(dir, ordered, { maxShardBytes: opts.maxShardBytes });
    json("config.json", this.config.raw);
    json("tokenizer.json", this.tokenizer.json);
    json("tokenizer_config.json", this.tokenizer.config);
    json("config_sentence_transformers.json", {
      prompts: this.prompts,
      default_prompt_name: null,
      similarity_fn_name: "cosine",
    });
    const modules = [
      { idx: 0, name: "0", path: "", type: "sentence_transformers.models.Transformer" },
      { idx: 1, name: "1", path: "1_Pooling", type: "sentence_transformers.models.Pooling" },
    ];
    if (this.normalize)
      modules.push({ idx: 2, name: "2", path: "2_Normalize", type: "sentence_transformers.models.Normalize" });
    json("modules.json", modules);
    mkdirSync(join(dir, "1_Pooling"), { recursive: true });
    json(join("1_Pooling", "config.json"), {
      word_embedding_dimension: this.config.hiddenSize,
      pooling_mode_cls_token: this.pooling === "cls",
      pooling_mode_mean_tokens: this.pooling === "mean",
      pooling_mode_max_tokens: false,
      pooling_mode_mean_sqrt_len_tokens: false,
    });
    writeLineage(dir, opts.parent ?? null, { ...opts.lineage, createdAt: new Date().toISOString() });
  }

  get dimension(): number {
    return this.config.hiddenSize;
  }

  /** Parameters in Hugging Face's order. */
  parameters(): [string, Tensor][] {
    return paramSpecs(this.config).map((s) => [s.name, this.params.get(s.name) as Tensor]);
  }

  /** Default token budget per text. */
  get maxLength(): number {
    const limit = this.config.architecture === "bert" ? this.config.maxPositions : 8192;
    return Math.min(this.tokenizer.modelMaxLength ?? 512, limit, 512);
  }

  /** The prefix for `kind` under these options. */
  prefixFor(kind: TextKind, prefix?: string | false): string {
    if (prefix === false) return "";
    return prefix ?? this.prompts[kind];
  }

  /** Token ids of texts (prefix applied), truncated. */
  tokenize(texts: string[], opts: { kind?: TextKind; prefix?: string | false; maxLength?: number } = {}): number[][] {
    const pre = this.prefixFor(opts.kind ?? "document", opts.prefix);
    const max = opts.maxLength ?? this.maxLength;
    return texts.map((t) => this.tokenizer.encode(pre + t, max));
  }

  /** Pads token id lists to the longest one. */
  batch(ids: number[][]): Batch {
    const S = Math.max(1, ...ids.map((x) => x.length));
    const flat = new BigInt64Array(ids.length * S).fill(BigInt(this.tokenizer.padId));
    const mask = new BigInt64Array(ids.length * S);
    ids.forEach((row, i) => {
      for (let j = 0; j < row.length; j++) {
        flat[i * S + j] = BigInt(row[j] as number);
        mask[i * S + j] = 1n;
      }
    });
    return {
      inputIds: tensor(flat, { shape: [ids.length, S], device: this.device }),
      attentionMask: tensor(mask, { shape: [ids.length, S], device: this.device }),
      padded: ids.some((row) => row.length < S),
    };
  }

  #rotaryFor(S: number): { cos: Tensor; sin: Tensor } {
    if (!this.#rotary || this.#rotary.S < S) {
      this.#rotary?.cos.dispose();
      this.#rotary?.sin.dispose();
      const size = Math.max(S, 512);
      const t = rotaryTables(this.config, size, this.device);
      this.#rotary = { S: size, cos: keep(t.cos), sin: keep(t.sin) };
    }
    return this.#rotary;
  }

  /** Last hidden states [B, S, H]. `padded: false` promises an all-ones mask (attention skips it). */
  forward(inputIds: Tensor, attentionMask: Tensor, params: Map<string, Tensor> = this.params, padded = true): Tensor {
    const [B, S] = inputIds.shape as [number, number];
    const keyMask = padded ? attentionMask.gt(0).view(B, 1, 1, S) : null;
    const opts = { train: this.training };
    if (this.config.architecture === "bert") {
      return bertForward(this.config, (n) => params.get(n), inputIds, keyMask, opts);
    }
    return nomicForward(this.config, (n) => params.get(n), inputIds, keyMask, opts, this.#rotaryFor(S));
  }

  /** Pooled (and, if the model normalises, L2-normalised) embeddings [B, H] of a batch. */
  embed(b: Batch, params?: Map<string, Tensor>): Tensor {
    // pooling and normalisation run in float32 whatever the encoder's compute dtype
    const h = this.forward(b.inputIds, b.attentionMask, params, b.padded ?? true).float();
    let pooled: Tensor;
    if (this.pooling === "cls") {
      pooled = h.select(1, 0);
    } else {
      const m = b.attentionMask.unsqueeze(-1).to(h.dtype);
      pooled = h.mul(m).sum(1).div(m.sum(1).clamp(1e-9));
    }
    return this.normalize ? normalize(pooled) : pooled;
  }

  /** Embeddings of texts, differentiable (for training). */
  embedTexts(
    texts: string[],
    opts: { kind?: TextKind; prefix?: string | false; maxLength?: number; params?: Map<string, Tensor> } = {},
  ): Tensor {
    return this.embed(this.batch(this.tokenize(texts, opts)), opts.params);
  }

  /**
   * The parameters cast to `dtype` through autograd, for mixed-precision training: the forward pass
   * computes in `dtype` while gradients flow back to the float32 master weights (what autocast does
   * for matmuls; here LayerNorm and softmax run in `dtype` too, pooling and the loss in float32).
   */
  castParams(dtype: DType): Map<string, Tensor> {
    return new Map([...this.params].map(([k, v]) => [k, v.to(dtype)]));
  }

  /**
   * Embeddings [N, H] (float32, on the CPU, rows in input order) of many texts, without gradients:
   * texts are sorted by token count so each batch pads as little as possible. On CUDA the encoder
   * runs in bfloat16.
   */
  encode(texts: string[], opts: EncodeOptions = {}): Tensor {
    const ids = this.tokenize(texts, { kind: opts.kind, prefix: opts.prefix, maxLength: opts.maxLength });
    return this.encodeIds(ids, opts);
  }

  /** `encode` for texts already tokenized (ids with special tokens). */
  encodeIds(ids: number[][], opts: Omit<EncodeOptions, "kind" | "prefix" | "maxLength"> = {}): Tensor {
    const batchSize = opts.batchSize ?? 32;
    if (!Number.isInteger(batchSize) || batchSize < 1)
      throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
    const order = ids
      .map((_, i) => i)
      .sort((a, b) => (ids[b] as number[]).length - (ids[a] as number[]).length || a - b);
    const showBar = opts.progress ?? (ids.length > 1000 && process.stderr.isTTY === true);
    const bar = showBar
      ? new cliProgress.SingleBar(
          {
            format: "encode {bar} {value}/{total} texts | {rate} texts/s | ETA {eta_formatted}",
            stream: process.stderr,
          },
          cliProgress.Presets.shades_classic,
        )
      : null;
    bar?.start(ids.length, 0, { rate: "0" });
    const started = Date.now();
    const wasTraining = this.training;
    this.training = false;
    const onCuda = this.device.startsWith("cuda");
    const params = this.#inferenceParams(onCuda ? "bfloat16" : null);
    const parts: Tensor[] = [];
    try {
      for (let start = 0; start < order.length; start += batchSize) {
        const idx = order.slice(start, start + batchSize);
        parts.push(
          keep(tidy(() => noGrad(() => this.embed(this.batch(idx.map((i) => ids[i] as number[])), params).to("cpu")))),
        );
        const done = Math.min(start + batchSize, order.length);
        opts.onProgress?.(done, order.length);
        bar?.update(done, { rate: (done / Math.max(1e-3, (Date.now() - started) / 1000)).toFixed(1) });
      }
    } finally {
      bar?.stop();
      this.training = wasTraining;
    }
    if (parts.length === 0) return tensor(new Float32Array(0), { shape: [0, this.dimension] });
    return tidy(() => {
      const sorted = cat(parts);
      for (const p of parts) p.dispose();
      // row r of `sorted` is text order[r]: invert the permutation
      const inverse = new BigInt64Array(order.length);
      order.forEach((textIndex, r) => {
        inverse[textIndex] = BigInt(r);
      });
      return sorted.indexSelect(0, tensor(inverse));
    });
  }

  /**
   * The inference parameters (cast, BERT's q/k/v fused), made once and reused while no parameter
   * was replaced or written in place (an optimiser step bumps the write version): rebuilding them
   * on every call cost a copy of every weight per search request.
   */
  #inferenceParams(dtype: DType | null): Map<string, Tensor> {
    const c = this.#inference;
    if (c && c.dtype === dtype && c.from.size === this.params.size) {
      let fresh = true;
      for (const [name, p] of this.params) {
        const was = c.from.get(name);
        if (!was || was[0] !== p || was[1] !== p.writeVersion) {
          fresh = false;
          break;
        }
      }
      if (fresh) return c.params;
    }
    this.#dropInference();
    const params = inferenceParams(this.config, this.params, dtype);
    this.#inference = {
      dtype,
      from: new Map([...this.params].map(([k, p]) => [k, [p, p.writeVersion]])),
      params,
    };
    return params;
  }

  #dropInference(): void {
    const c = this.#inference;
    if (!c) return;
    for (const [name, p] of c.params) if (this.params.get(name) !== p) p.dispose();
    this.#inference = null;
  }

  /** Frees the parameters. */
  dispose(): void {
    this.#dropInference();
    for (const p of this.params.values()) p.dispose();
    this.#rotary?.cos.dispose();
    this.#rotary?.sin.dispose();
  }
}

/**
 * Parameters for inference: cast to `dtype` when given, plus each BERT layer's query/key/value
 * weights fused into one `attention.self.qkv` projection (one GEMM instead of three).
 */
function inferenceParams(config: EncoderConfig, params: Map<string, Tensor>, dtype: DType | null): Map<string, Tensor> {
  return noGrad(() => {
    const out = new Map<string, Tensor>();
    for (const [k, v] of params) out.set(k, dtype && v.dtype !== dtype ? keep(v.to(dtype)) : v);
    if (config.architecture === "bert") {
      for (let i = 0; i < config.numLayers; i++) {
        const p = `encoder.layer.${i}.attention.self`;
        for (const part of ["weight", "bias"]) {
          const qkv = ["query", "key", "value"].map((m) => out.get(`${p}.${m}.${part}`) as Tensor);
          out.set(`${p}.qkv.${part}`, keep(cat(qkv, 0)));
        }
      }
    }
    return out;
  });
}
