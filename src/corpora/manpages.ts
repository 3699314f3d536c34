/** Linux man-pages: the NAME line is the query, the DESCRIPTION section the document. */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { gunzipSync } from "node:zlib";
import { roffSections } from "./roff.js";
import { clean, firstWords, type Pair, type Source } from "./source.js";

const PACKAGES = ["manpages", "manpages-dev"];

/** One page's pair, or null for `.so` redirects and pages without NAME or DESCRIPTION. */
export function parseManPage(source: string, id: string): Pair | null {
  if (/^\.so\s/m.test(source.slice(0, 200)) && source.split("\n").filter((l) => l.trim()).length < 4) return null;
  const s = roffSections(source);
  const name = clean(s.get("NAME") ?? "");
  const description = clean(s.get("DESCRIPTION") ?? "");
  if (!name || description.split(" ").length < 8) return null;
  return { id, query: name, document: firstWords(description, 200) };
}

function pageFiles(): string[] {
  const out = execFileSync("dpkg", ["-L", ...PACKAGES], { encoding: "utf8" });
  return out
    .split("\n")
    .filter((f) => /^\/usr\/share\/man\/man\d\/.+\.gz$/.test(f))
    .sort();
}

export const manpages: Source = {
  name: "man",
  description: "Linux man page NAME line → DESCRIPTION section",
  packages: PACKAGES,
  licence: "Linux man-pages licences (Linux-man-pages-copyleft, GPL, BSD and others; see each page)",
  requires: ["/usr/share/man/man2/open.2.gz", "/usr/share/man/man3/printf.3.gz"],
  async read() {
    const out: Pair[] = [];
    for (const file of pageFiles()) {
      let text: string;
      try {
        text = gunzipSync(readFileSync(file)).toString("utf8");
      } catch {
        continue; // a symlink to a page of another package, or a broken file
      }
      const p = parseManPage(text, basename(file, ".gz"));
      if (p) out.push(p);
    }
    return out;
  },
};
