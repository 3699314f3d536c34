/**
 * The general pair corpus for pre-training the base encoder (none of the benchmark tasks): GNU
 * info manuals and Perl's documentation as an inverse cloze task: one sentence of a paragraph is
 * the query, the rest of the paragraph the document. The Python manual is left out (the python
 * task uses it).
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { clean, type Pair, type Source } from "./source.js";

const DIR = "/usr/share/info";

/**
 * Inverse-cloze pairs from prose paragraphs: the n-th usable paragraph gives up its sentence
 * n mod (sentences) as the query (deterministic).
 */
export function clozePairs(paragraphs: string[], file: string): Pair[] {
  const out: Pair[] = [];
  for (const para of paragraphs) {
    const sentences = clean(para)
      .split(/(?<=[.!?])\s+(?=[A-Z])/)
      .filter((s) => s.split(" ").length >= 5);
    if (sentences.length < 2) continue;
    const i = out.length % sentences.length;
    out.push({
      id: `${file}#${out.length + 1}`,
      query: sentences[i] as string,
      document: sentences.filter((_, j) => j !== i).join(" "),
    });
  }
  return out;
}

/** Prose paragraphs of an info file: menus, node headers and rules are skipped. */
export function infoParagraphs(text: string): string[] {
  return text
    .split("\x1f")
    .flatMap((node) => node.split(/\n\s*\n/))
    .filter((p) => !/^\s*\*\s|^File: |^\s*[-=*]{3,}\s*$/m.test(p));
}

/** Prose paragraphs of a POD file: commands and verbatim blocks skipped, formatting codes unwrapped. */
export function podParagraphs(text: string): string[] {
  const unwrap = (s: string) => {
    let prev = "";
    let cur = s;
    while (cur !== prev) {
      prev = cur;
      cur = cur
        .replace(/[A-Z]<<+\s+([\s\S]*?)\s+>>+/g, "$1")
        .replace(/L<([^<>|]*)\|[^<>]*>/g, "$1")
        .replace(/E<gt>/g, ">")
        .replace(/E<lt>/g, "<")
        .replace(/[A-Z]<([^<>]*)>/g, "$1");
    }
    return cur;
  };
  return text
    .split(/\n\s*\n/)
    .filter((p) => !/^[=\s]/.test(p))
    .map(unwrap);
}

export const infoManuals: Source = {
  name: "info",
  description: "GNU info manuals: a sentence → the rest of its paragraph (inverse cloze)",
  packages: ["coreutils", "grep", "sed", "findutils", "gzip", "diffutils"],
  licence: "GNU Free Documentation License (GNU manuals)",
  requires: [join(DIR, "coreutils.info.gz")],
  async read() {
    const out: Pair[] = [];
    for (const f of readdirSync(DIR)
      .filter((f) => /\.info(-\d+)?(\.gz)?$/.test(f) && !f.startsWith("python"))
      .sort()) {
      const raw = readFileSync(join(DIR, f));
      const text = (f.endsWith(".gz") ? gunzipSync(raw) : raw).toString("utf8");
      out.push(...clozePairs(infoParagraphs(text), f));
    }
    return out;
  },
};

const POD_DIR = "/usr/share/perl/5.36.0/pod";

export const perlPod: Source = {
  name: "perl",
  description: "Perl documentation (perl-doc): a sentence → the rest of its paragraph (inverse cloze)",
  packages: ["perl-doc"],
  licence: "Perl's documentation: GPL-1+ or Artistic License",
  requires: [join(POD_DIR, "perlfunc.pod")],
  async read() {
    const out: Pair[] = [];
    for (const f of readdirSync(POD_DIR)
      .filter((f) => f.endsWith(".pod"))
      .sort())
      out.push(...clozePairs(podParagraphs(readFileSync(join(POD_DIR, f), "utf8")), f));
    return out;
  },
};

/** The sources of the general pre-training corpus. */
export const GENERAL_SOURCES: Source[] = [infoManuals, perlPod];
