/** The Python library reference: an object's signature is the query, its description the document. */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { clean, decodeEntities, firstWords, type Pair, type Source } from "./source.js";

const DIR = "/usr/share/doc/python3.11/html/library";

const text = (html: string, tag = " ") => clean(decodeEntities(html.replace(/<[^>]+>/g, tag).replace(/¶/g, "")));

/** Pairs from one Sphinx HTML page: each `<dt class="sig …" id=…>` and the paragraphs of its `<dd>`. */
export function parsePydocHtml(html: string): Pair[] {
  const out: Pair[] = [];
  const re = /<dt class="sig sig-object py" id="([^"]+)">([\s\S]*?)<\/dt>\s*<dd>([\s\S]*?)(?=<dt class="sig|<\/dd>)/g;
  for (let m = re.exec(html); m; m = re.exec(html)) {
    const [, id, sig, body] = m as unknown as [string, string, string, string];
    const paragraphs = [...body.matchAll(/<p>([\s\S]*?)<\/p>/g)].map((p) => text(p[1] ?? "", ""));
    const description = firstWords(paragraphs.slice(0, 3).join(" "), 200);
    const signature = text(sig, "");
    if (signature && description.split(" ").length >= 5) out.push({ id, query: signature, document: description });
  }
  return out;
}

export const pydoc: Source = {
  name: "python",
  description: "Python 3.11 library reference signature → description",
  packages: ["python3.11-doc"],
  licence: "Python Software Foundation License (Python documentation)",
  requires: [join(DIR, "os.html")],
  async read() {
    const out: Pair[] = [];
    const seen = new Set<string>();
    for (const f of readdirSync(DIR)
      .filter((f) => f.endsWith(".html"))
      .sort()) {
      for (const p of parsePydocHtml(readFileSync(join(DIR, f), "utf8"))) {
        if (seen.has(p.id)) continue;
        seen.add(p.id);
        out.push(p);
      }
    }
    return out;
  },
};
