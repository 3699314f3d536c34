/** FOLDOC, the Free On-line Dictionary of Computing: the term is the query, its definition the document. */
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { clean, type Pair, type Source } from "./source.js";

const FILE = "/usr/share/dictd/foldoc.dict.dz";

/**
 * The dictd text: an unindented line (or several: synonyms) starts an entry, indented lines are
 * its definition. Cross-reference braces, subject tags and date stamps are dropped.
 */
export function parseFoldoc(text: string): Pair[] {
  const out: Pair[] = [];
  let terms: string[] = [];
  let body: string[] = [];
  const flush = () => {
    const def = clean(
      body
        .join(" ")
        .replace(/\(\d{4}-\d{2}-\d{2}\)/g, " ")
        .replace(/<[^<>]{1,40}>/g, " ")
        .replace(/[{}]/g, ""),
    );
    const term = terms[0];
    if (
      term &&
      !term.startsWith("00-database") &&
      term.length <= 60 &&
      !/\.\s/.test(term) &&
      def.split(" ").length >= 4
    )
      out.push({ id: term, query: term, document: def });
    terms = [];
    body = [];
  };
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    if (/^\S/.test(line)) {
      if (body.length) flush();
      terms.push(line.trim());
    } else body.push(line.trim());
  }
  flush();
  return out;
}

export const foldoc: Source = {
  name: "foldoc",
  description: "FOLDOC computing term → definition",
  packages: ["dict-foldoc"],
  licence: "GNU Free Documentation License (FOLDOC, Denis Howe)",
  requires: [FILE],
  async read() {
    return parseFoldoc(gunzipSync(readFileSync(FILE)).toString("utf8"));
  },
};
