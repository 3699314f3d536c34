/**
 * A text source of the offline benchmark: Debian-packaged text turned into (query, document)
 * pairs. Each source names the packages it needs, its licence, and reads its pairs from the
 * installed files; a missing package is an error that says how to install it.
 */
import { existsSync } from "node:fs";

export interface Pair {
  /** stable id within the source (package, synset offset, term, page, object name) */
  id: string;
  query: string;
  document: string;
}

export interface Source {
  name: string;
  /** one line: what the query is, what the document is */
  description: string;
  /** Debian packages that provide the text */
  packages: string[];
  licence: string;
  /** files that must exist (checked before reading) */
  requires: string[];
  read(): Promise<Pair[]>;
}

export function checkInstalled(s: Source): void {
  const missing = s.requires.filter((f) => !existsSync(f));
  if (missing.length) {
    throw new Error(
      `source '${s.name}' needs ${missing.join(", ")}: install it with \`apt-get install ${s.packages.join(" ")}\`` +
        (s.name === "debian" ? " (and run `apt-get update -o Acquire::Languages=en` for long descriptions)" : ""),
    );
  }
}

/** Collapses whitespace and trims. */
export function clean(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

/** The first `n` words of a text. */
export function firstWords(text: string, n: number): string {
  const words = text.split(" ");
  return words.length > n ? words.slice(0, n).join(" ") : text;
}

/** Decodes the HTML entities that appear in generated documentation. */
export function decodeEntities(s: string): string {
  return s
    .replace(/&#(\d+);/g, (_, d) => String.fromCodePoint(Number(d)))
    .replace(/&#x([0-9a-f]+);/gi, (_, h) => String.fromCodePoint(Number.parseInt(h, 16)))
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&#39;|&apos;/g, "'")
    .replace(/&nbsp;/g, " ")
    .replace(/&amp;/g, "&");
}

/**
 * Ids for the files of the benchmark (BEIR folders whose runs and qrels must also be TREC files):
 * each distinct source id with whitespace gets its inner runs of whitespace replaced by `_` and
 * those at its ends dropped (`control unit` → `control_unit`); ids without whitespace stay as they are. Unique and stable:
 * a replacement that collides with another id (`foo bar` beside `foo_bar`) gets `~2`, `~3`, …,
 * assigned in code point order of the source ids, so the same source text always gives the same ids.
 */
export function fileIds(sourceIds: Iterable<string>): Map<string, string> {
  const distinct = [...new Set(sourceIds)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const out = new Map<string, string>();
  const taken = new Set<string>();
  for (const id of distinct) {
    if (/\s/u.test(id) || id === "") continue;
    out.set(id, id);
    taken.add(id);
  }
  for (const id of distinct) {
    if (out.has(id)) continue;
    const base = id.trim().replace(/\s+/gu, "_") || "_";
    let candidate = base;
    for (let i = 2; taken.has(candidate); i++) candidate = `${base}~${i}`;
    out.set(id, candidate);
    taken.add(candidate);
  }
  return out;
}
