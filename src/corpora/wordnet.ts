/**
 * WordNet synsets: the gloss's definition is the query; the document is the synset's words and
 * its usage examples (synsets with a single word and no example are left out).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { clean, type Pair, type Source } from "./source.js";

const DIR = "/usr/share/wordnet";
const POS = ["noun", "verb", "adj", "adv"];

/** One data.<pos> line → a pair, or null for licence lines and synsets too thin to use. */
export function parseSynset(line: string, pos: string): Pair | null {
  if (line.startsWith("  ") || !line.includes(" | ")) return null;
  const [head, gloss] = line.split(" | ", 2) as [string, string];
  const f = head.split(" ");
  const count = Number.parseInt(f[3] ?? "", 16);
  if (!Number.isFinite(count)) return null;
  const words: string[] = [];
  for (let i = 0; i < count; i++) {
    const w = f[4 + 2 * i];
    if (w) words.push(w.replace(/\(\w+\)$/, "").replace(/_/g, " "));
  }
  const parts = gloss.split(/;\s*(?=")/);
  const definition = clean((parts[0] ?? "").replace(/;\s*$/, ""));
  const examples = parts.slice(1).map((e) => clean(e.replace(/^"|"\s*;?\s*$/g, "").replace(/"$/, "")));
  if (!definition || (words.length < 2 && examples.length === 0)) return null;
  const document = clean([...new Set(words)].join(", ") + (examples.length ? `: ${examples.join("; ")}` : ""));
  return { id: `${pos}-${f[0]}`, query: definition, document };
}

export const wordnet: Source = {
  name: "wordnet",
  description: "WordNet gloss (definition) → synonyms and usage examples",
  packages: ["wordnet-base"],
  licence: "WordNet 3.0 licence (Princeton University; free to use, copy and distribute)",
  requires: POS.map((p) => join(DIR, `data.${p}`)),
  async read() {
    const out: Pair[] = [];
    for (const pos of POS) {
      for (const line of readFileSync(join(DIR, `data.${pos}`), "latin1").split("\n")) {
        const p = parseSynset(line, pos);
        if (p) out.push(p);
      }
    }
    return out;
  },
};
