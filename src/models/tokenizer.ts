/**
 * Tokenization through @huggingface/tokenizers (Hugging Face's own JS implementation) reading
 * `tokenizer.json`; a directory with only `vocab.txt` (+ `tokenizer_config.json`) gets the BERT
 * WordPiece pipeline built from it. Truncation keeps room for the special tokens the post-processor
 * adds ([CLS] … [SEP]), as Hugging Face's `truncation=True, max_length=N` does. Token type ids are 0.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer as HFTokenizer } from "@huggingface/tokenizers";

interface SpecialTemplate {
  before: number[];
  after: number[];
}

export interface TokenizedBatch {
  /** Token ids per text, truncated and with special tokens, not padded. */
  ids: number[][];
}

/** A JSON file's contents, or an error naming the file. */
export function readJson(path: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${path}: cannot read JSON (${(e as Error).message})`);
  }
}

/** A tokenizer.json equivalent to BERT's WordPiece tokenizer over `vocab.txt`. */
function wordPieceFromVocab(vocabPath: string, config: Record<string, unknown>): Record<string, unknown> {
  const lines = readFileSync(vocabPath, "utf8").split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  if (lines.length === 0) throw new Error(`${vocabPath}: empty vocabulary`);
  const vocab: Record<string, number> = {};
  lines.forEach((tok, i) => {
    const t = tok.replace(/\r$/, "");
    if (!(t in vocab)) vocab[t] = i;
  });
  const tok = (key: string, fallback: string): string =>
    typeof config[key] === "string" ? (config[key] as string) : fallback;
  const unk = tok("unk_token", "[UNK]");
  const cls = tok("cls_token", "[CLS]");
  const sep = tok("sep_token", "[SEP]");
  for (const special of [unk, cls, sep]) {
    if (!(special in vocab)) throw new Error(`${vocabPath}: special token ${special} is not in the vocabulary`);
  }
  const lower = config.do_lower_case !== false;
  const specials = ["pad_token", "unk_token", "cls_token", "sep_token", "mask_token"]
    .map((k) => config[k])
    .filter((t): t is string => typeof t === "string" && t in vocab);
  const defaults = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].filter((t) => t in vocab);
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [...new Set([...specials, ...defaults])].map((content) => ({
      id: vocab[content],
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: {
      type: "BertNormalizer",
      clean_text: true,
      handle_chinese_chars: config.tokenize_chinese_chars !== false,
      strip_accents: config.strip_accents ?? null,
      lowercase: lower,
    },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: {
      type: "TemplateProcessing",
      single: [
        { SpecialToken: { id: cls, type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: sep, type_id: 0 } },
      ],
      pair: [],
      special_tokens: {
        [cls]: { id: cls, ids: [vocab[cls]], tokens: [cls] },
        [sep]: { id: sep, ids: [vocab[sep]], tokens: [sep] },
      },
    },
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: { type: "WordPiece", unk_token: unk, continuing_subword_prefix: "##", max_input_chars_per_word: 100, vocab },
  };
}

/** The special-token ids a post-processor puts around one sequence. */
function specialTemplate(post: unknown, file: string): SpecialTemplate {
  if (post === null || post === undefined) return { before: [], after: [] };
  const p = post as Record<string, unknown>;
  if (p.type === "TemplateProcessing") {
    const single = p.single as Record<string, { id: string }>[];
    const specials = p.special_tokens as Record<string, { ids: number[] }>;
    const out: SpecialTemplate = { before: [], after: [] };
    let seen = false;
    for (const piece of single) {
      if (piece.Sequence) {
        seen = true;
        continue;
      }
      const id = piece.SpecialToken?.id;
      const ids = id !== undefined ? specials[id]?.ids : undefined;
      if (!ids) throw new Error(`${file}: post_processor names special token ${JSON.stringify(id)} without ids`);
      (seen ? out.after : out.before).push(...ids);
    }
    return out;
  }
  if (p.type === "BertProcessing" || p.type === "RobertaProcessing") {
    const cls = p.cls as [string, number];
    const sep = p.sep as [string, number];
    return { before: [cls[1]], after: [sep[1]] };
  }
  throw new Error(`${file}: unsupported post_processor type ${JSON.stringify(p.type)}`);
}

export class Tokenizer {
  readonly padId: number;
  readonly vocabSize: number;
  /** The files it was loaded from, copied when a model is saved. */
  readonly json: Record<string, unknown>;
  readonly config: Record<string, unknown>;
  readonly modelMaxLength: number | undefined;
  readonly #hf: HFTokenizer;
  readonly #special: SpecialTemplate;

  constructor(json: Record<string, unknown>, config: Record<string, unknown>, source: string) {
    this.json = json;
    this.config = config;
    try {
      this.#hf = new HFTokenizer(json, config);
    } catch (e) {
      throw new Error(`${source}: cannot build the tokenizer (${(e as Error).message})`);
    }
    this.#special = specialTemplate(json.post_processor, source);
    const pad = typeof config.pad_token === "string" ? config.pad_token : "[PAD]";
    this.padId = this.#hf.token_to_id(pad) ?? 0;
    const model = json.model as { vocab?: Record<string, number> | unknown[] } | undefined;
    const vocab = model?.vocab;
    this.vocabSize = Array.isArray(vocab) ? vocab.length : Object.keys(vocab ?? {}).length;
    const max = config.model_max_length;
    this.modelMaxLength = typeof max === "number" && max < 1e9 ? max : undefined;
  }

  /** Loads `tokenizer.json` (and `tokenizer_config.json`) from a model directory, else `vocab.txt`. */
  static fromDir(dir: string): Tokenizer {
    if (!existsSync(dir)) throw new Error(`${dir}: no such model directory`);
    const configPath = join(dir, "tokenizer_config.json");
    const config = existsSync(configPath) ? readJson(configPath) : {};
    const jsonPath = join(dir, "tokenizer.json");
    if (existsSync(jsonPath)) return new Tokenizer(readJson(jsonPath), config, jsonPath);
    const vocabPath = join(dir, "vocab.txt");
    if (existsSync(vocabPath)) return new Tokenizer(wordPieceFromVocab(vocabPath, config), config, vocabPath);
    throw new Error(`${dir}: no tokenizer.json or vocab.txt in this model directory`);
  }

  /** Number of special tokens added around one sequence. */
  get specialCount(): number {
    return this.#special.before.length + this.#special.after.length;
  }

  /** Token ids of one text with special tokens, truncated to `maxLength` tokens in all. */
  encode(text: string, maxLength?: number): number[] {
    const body = this.#hf.encode(text, { add_special_tokens: false }).ids;
    const room = maxLength === undefined ? body.length : Math.max(0, maxLength - this.specialCount);
    return [...this.#special.before, ...(body.length > room ? body.slice(0, room) : body), ...this.#special.after];
  }

  encodeBatch(texts: string[], maxLength?: number): number[][] {
    return texts.map((t) => this.encode(t, maxLength));
  }

  idToToken(id: number): string | undefined {
    return this.#hf.id_to_token(id);
  }
  tokenToId(token: string): number | undefined {
    return this.#hf.token_to_id(token);
  }
}
