/**
 * Debian package descriptions: the short description is the query, the long description the
 * document. Read from apt's Translation-en lists (any compression, through apt-helper).
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { clean, type Pair, type Source } from "./source.js";

const LISTS = "/var/lib/apt/lists";

export function translationFiles(dir = LISTS): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => /_i18n_Translation-en(\.[a-z0-9]+)?$/.test(f))
    .sort()
    .map((f) => join(dir, f));
}

/** Parses Translation-en text: Package, Description-md5, Description-en (continuation lines). */
export function parseTranslations(text: string): Pair[] {
  const out: Pair[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const pkg = /^Package: (.+)$/m.exec(stanza)?.[1]?.trim();
    const m = /^Description-en: (.*)\n((?: .*(?:\n|$))*)/m.exec(stanza);
    if (!pkg || !m) continue;
    const short = clean(m[1] ?? "");
    const long = clean(
      (m[2] ?? "")
        .split("\n")
        .map((l) => (l.trim() === "." ? "" : l))
        .join(" "),
    );
    if (short && long) out.push({ id: pkg, query: short, document: long });
  }
  return out;
}

export const debian: Source = {
  name: "debian",
  description: "Debian package short description → long description",
  packages: ["apt"],
  licence: "each description comes from its package (Debian main: DFSG-free licences)",
  get requires() {
    const files = translationFiles();
    return files.length ? files : [join(LISTS, "*_i18n_Translation-en*")];
  },
  async read() {
    const seen = new Set<string>();
    const out: Pair[] = [];
    for (const file of translationFiles()) {
      const text = execFileSync("/usr/lib/apt/apt-helper", ["cat-file", file], {
        encoding: "utf8",
        maxBuffer: 1 << 30,
      });
      for (const p of parseTranslations(text)) {
        if (seen.has(p.id)) continue;
        seen.add(p.id);
        out.push(p);
      }
    }
    return out;
  },
};
