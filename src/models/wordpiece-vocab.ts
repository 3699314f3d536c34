/**
 * A WordPiece vocabulary learnt from text, for the project's own base encoders (no pretrained
 * tokenizer is available offline). Words are split as BERT's uncased basic tokenizer does
 * (lower case, accents stripped, punctuation split off); the vocabulary holds the special tokens,
 * the frequent characters (alone and as `##` continuations), the most frequent words, and the most
 * useful word starts and `##` pieces of the words left out, so WordPiece's greedy longest match
 * covers any text with few [UNK]s.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/** BERT's uncased basic tokenization: lower case, no accents, punctuation as separate tokens. */
export function basicTokens(text: string): string[] {
  return text
    .toLowerCase()
    .normalize("NFD")
    .replace(/\p{Mn}/gu, "")
    .split(/(\p{P}|\p{S})|\s+/u)
    .filter((t): t is string => t !== undefined && t !== "");
}

export function buildWordPieceVocab(texts: Iterable<string>, size: number): string[] {
  if (!Number.isInteger(size) || size < 100)
    throw new RangeError(`vocabulary size must be an integer ≥ 100, got ${size}`);
  const words = new Map<string, number>();
  for (const t of texts) for (const w of basicTokens(t)) words.set(w, (words.get(w) ?? 0) + 1);
  const chars = new Map<string, number>();
  for (const [w, f] of words) for (const c of w) chars.set(c, (chars.get(c) ?? 0) + f);
  const vocab: string[] = [...SPECIAL_TOKENS];
  const have = new Set(vocab);
  const add = (t: string) => {
    if (!have.has(t) && vocab.length < size) {
      have.add(t);
      vocab.push(t);
    }
  };
  const topChars = [...chars.entries()]
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, Math.floor(size / 4));
  for (const [c] of topChars) add(c);
  for (const [c] of topChars) add(`##${c}`);
  const byFreq = [...words.entries()]
    .filter(([w]) => w.length > 1)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  const wordBudget = vocab.length + Math.floor((size - vocab.length) * 0.7);
  let i = 0;
  for (; i < byFreq.length && vocab.length < wordBudget; i++) add((byFreq[i] as [string, number])[0]);
  // pieces of the words left out, scored by frequency × characters saved
  const pieces = new Map<string, number>();
  for (const [w, f] of byFreq.slice(i)) {
    for (let len = 2; len <= Math.min(8, w.length - 1); len++) {
      const start = w.slice(0, len);
      pieces.set(start, (pieces.get(start) ?? 0) + f * (len - 1));
    }
    for (let at = 1; at < w.length - 1; at++) {
      for (let len = 2; len <= Math.min(6, w.length - at); len++) {
        const p = `##${w.slice(at, at + len)}`;
        pieces.set(p, (pieces.get(p) ?? 0) + f * (len - 1));
      }
    }
  }
  for (const [p] of [...pieces.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))) {
    if (vocab.length >= size) break;
    add(p);
  }
  return vocab;
}

/** Writes `vocab.txt` and an uncased `tokenizer_config.json` into `dir`. */
export function writeWordPieceVocab(dir: string, vocab: string[], maxLength: number): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "vocab.txt"), `${vocab.join("\n")}\n`);
  writeFileSync(
    join(dir, "tokenizer_config.json"),
    `${JSON.stringify({ do_lower_case: true, model_max_length: maxLength, unk_token: "[UNK]", cls_token: "[CLS]", sep_token: "[SEP]", pad_token: "[PAD]", mask_token: "[MASK]" }, null, 2)}\n`,
  );
}
